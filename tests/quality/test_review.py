"""quality/review.py: the review page's HTTP API, durable decisions, and apply-review."""

import csv
import json
import os

import numpy as np
import pytest

from robust_paddle.errors import ConfigError, DataError
from robust_paddle.quality.review import (
    REVIEW_FILE,
    ReviewStore,
    apply_review,
    create_review_app,
    load_issues,
)

FIELDS = ["index", "source_row", "given_label", "given_name", "suggested_label", "suggested_name", "clean_prob",
          "quality_score", "loss", "is_issue"]


def make_run(tmp_path, n=30, *, override=None):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "label_issues.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(FIELDS)
        for i in range(n):  # already ranked: most suspect first
            g, s = i % 3, (i + 1) % 3
            w.writerow([i, 100 + i, g, f"c{g}", s, f"c{s}", 0.01 * i, 0.5, 1.0, int(i < 10)])
    (run / "metrics.json").write_text(json.dumps({"class_names": ["c0", "c1", "c2"]}))
    if override is not None:
        (run / "config.yaml").write_text(f"data:\n  labels_override: {override}\n")
    return str(run)


@pytest.fixture
def client(tmp_path):
    run = make_run(tmp_path)
    app = create_review_app(run, reviewer="ann")
    return run, app.test_client()


def test_page_and_items_with_filter_and_paging(client):
    run, c = client
    page = c.get("/")
    assert page.status_code == 200 and b"Label review" in page.data and b"<script" in page.data
    d = c.get("/api/items?page=2&per_page=4").get_json()
    assert d["total"] == 30 and [it["index"] for it in d["items"]] == [4, 5, 6, 7]
    assert d["items"][0]["sample"] == "104" and d["class_names"] == ["c0", "c1", "c2"]
    d = c.get("/api/items?class=1&per_page=100").get_json()
    assert [it["index"] for it in d["items"]] == [i for i in range(30) if i % 3 == 1]
    assert c.get("/api/items?per_page=1000").status_code == 400


def test_decisions_are_validated_saved_and_reloaded(client):
    run, c = client
    ok = c.post("/api/decision", json={"index": 4, "action": "change", "label": 2})
    assert ok.status_code == 200 and ok.get_json()["decision"]["label"] == 2
    assert c.post("/api/decision", json={"index": 5, "action": "keep"}).status_code == 200
    assert c.post("/api/decision", json={"index": 6, "action": "unsure"}).status_code == 200
    assert c.post("/api/decision", json={"index": 4, "action": "keep"}).status_code == 200  # last one wins
    lines = open(os.path.join(run, REVIEW_FILE), encoding="utf-8").read().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["reviewer"] == "ann"
    loaded = ReviewStore(run).load()
    assert {k: v["action"] for k, v in loaded.items()} == {4: "keep", 5: "keep", 6: "unsure"}
    again = create_review_app(run).test_client()  # a restarted server shows what was decided
    items = again.get("/api/items?per_page=10").get_json()["items"]
    assert items[4]["decision"]["action"] == "keep" and items[7]["decision"] is None
    assert again.get("/api/items?status=done").get_json()["total"] == 3


@pytest.mark.parametrize("body,message", [
    ({"index": 999, "action": "keep"}, "index 999 is not a sample"),
    ({"index": True, "action": "keep"}, "index True is not a sample"),
    ({"index": 1, "action": "delete"}, "action 'delete' is not one of keep, change, unsure"),
    ({"index": 1, "action": "change"}, r"action change needs label in \[0, 3\)"),
    ({"index": 1, "action": "change", "label": 3}, r"action change needs label in \[0, 3\)"),
    ({"index": 1, "action": "keep", "label": 1}, "label is only taken with action change"),
    ({"index": 1, "action": "keep", "path": "/etc/passwd"}, r"unknown field\(s\) \['path'\]"),
    ([1, 2], "body must be a JSON object"),
])
def test_bad_decisions_are_refused_and_nothing_is_written(client, body, message):
    import re

    run, c = client
    r = c.post("/api/decision", json=body)
    assert r.status_code == 400 and re.search(message, r.get_json()["error"])
    assert not os.path.exists(os.path.join(run, REVIEW_FILE))


def test_deep_and_huge_bodies_are_refused(client):
    run, c = client
    deep = "[" * 10000 + "]" * 10000
    r = c.post("/api/decision", data=deep[:15000], content_type="application/json")
    assert r.status_code == 400 and "nested too deeply" in r.get_json()["error"]
    assert c.post("/api/decision", data=b"x" * 100_000, content_type="application/json").status_code == 413


def test_torn_last_line_is_ignored(tmp_path):
    run = make_run(tmp_path)
    store = ReviewStore(run)
    store.append({"index": 1, "action": "keep", "sample": "101", "from": 1, "label": 1})
    with open(store.path, "ab") as fh:
        fh.write(b'{"index": 2, "act')  # the server was killed mid-write
    assert list(store.load()) == [1]


def test_apply_review_writes_labels_audit_and_keeps_earlier_rounds(tmp_path):
    prev = tmp_path / "round1.csv"
    prev.write_text("sample,label\n120,0\n104,1\n", encoding="utf-8")
    run = make_run(tmp_path, override=str(prev))
    store = ReviewStore(run)
    for dec in ({"index": 4, "action": "change", "label": 2}, {"index": 5, "action": "keep", "label": 2},
                {"index": 6, "action": "unsure", "label": None}):
        store.append({**dec, "sample": str(100 + dec["index"]), "source_row": 100 + dec["index"],
                      "from": dec["index"] % 3, "reviewer": "ann", "time": "t"})
    out = str(tmp_path / "labels" / "round2.csv")
    s = apply_review(run, out)
    assert (s["verified"], s["changed"], s["unsure"], s["carried_over"]) == (2, 1, 1, 1)
    rows = list(csv.reader(open(out, encoding="utf-8")))
    assert rows == [["sample", "label"], ["104", "2"], ["105", "2"], ["120", "0"]]
    audit = list(csv.DictReader(open(out.replace(".csv", ".audit.csv"), encoding="utf-8")))
    assert [(a["sample"], a["from"], a["to"], a["action"]) for a in audit] == [("104", "1", "2", "change"),
                                                                               ("105", "2", "2", "keep")]


def test_apply_review_refuses_bad_targets(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(DataError, match="no review decisions"):
        apply_review(run, str(tmp_path / "x.csv"))
    with pytest.raises(ConfigError, match=r"write the reviewed labels as a \.csv file"):
        apply_review(run, str(tmp_path / "x.json"))


def test_no_report_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no label_issues.csv; write the label-issue report first"):
        load_issues(str(tmp_path))


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium package is not installed")
def test_page_renders_cards_with_thumbnails_in_headless_chromium(tmp_path):
    import subprocess

    from robust_paddle.deploy.serve import ServerHandle

    run = make_run(tmp_path)
    with open(os.path.join(run, "config.yaml"), "w", encoding="utf-8") as fh:
        fh.write("data:\n  name: digits\n")  # thumbnails come from the run's own data
    app = create_review_app(run, reviewer="ann")
    handle = ServerHandle(app, host="127.0.0.1", port=0).start()
    try:
        shot = tmp_path / "page.png"
        args = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--virtual-time-budget=8000", "--window-size=1200,900"]
        dom = subprocess.run([*args, "--dump-dom", handle.url + "/"], capture_output=True, text=True, timeout=90)
        subprocess.run([*args, f"--screenshot={shot}", handle.url + "/"], capture_output=True, timeout=90)
    finally:
        handle.close()
    html = dom.stdout
    assert html.count('class="card') == 24  # the first page, filled in by the page's script
    assert "given <b>c0</b>" in html and "0 of 30 reviewed" in html
    assert 'src="/api/thumb/0"' in html
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (900, 1200) and img.std() > 10  # not a blank page


def test_thumbnail_is_a_png_of_the_sample(tmp_path):
    import io

    from PIL import Image

    from robust_paddle import config as config_mod
    from robust_paddle.data import build_data

    run = make_run(tmp_path)
    with open(os.path.join(run, "config.yaml"), "w", encoding="utf-8") as fh:
        fh.write("data:\n  name: digits\n")
    c = create_review_app(run).test_client()
    r = c.get("/api/thumb/3")
    assert r.status_code == 200 and r.mimetype == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.data)).convert("L"), dtype=float)
    data = build_data(config_mod.load(os.path.join(run, "config.yaml")))
    x = data.train_eval[3][0][0] * data.std[0] + data.mean[0]  # the sample in [0, 1] units, 8x8
    assert img.shape == (96, 96)
    assert np.abs(img[::12, ::12] - np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)).max() <= 1
    assert c.get("/api/thumb/999").status_code == 404
