"""The label-quality workflow end to end on digits: annotators' consensus, reviewed labels, spot-check estimates."""

import csv
import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from robust_paddle import config as config_mod
from robust_paddle.cli import main
from robust_paddle.data.crowd import simulate_crowd
from robust_paddle.errors import ConfigError
from robust_paddle.pipeline.label_workflow import estimate_command, sample_for_review_command
from robust_paddle.pipeline.run import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, "configs", "_base_", "digits.yaml")
FAST = ["train.epochs=2", "train.progress=false", "train.visualdl=false", "train.report=false",
        "train.checkpoint_every=0", "model.name=mlp"]
Y = load_digits().target


def cfg(tmp_path, name, *extra):
    return config_mod.load(BASE, [*FAST, f"output_dir={tmp_path / name}", *extra])


@pytest.fixture(scope="module")
def crowd_file(tmp_path_factory):
    crowd = simulate_crowd(Y, num_classes=10, num_annotators=12, answers_per_sample=3, seed=0)
    path = tmp_path_factory.mktemp("crowd") / "answers.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "annotator", "label"])
        w.writerows(zip(crowd.sample.tolist(), (f"ann{a}" for a in crowd.annotator), crowd.label.tolist()))
    return str(path)


def test_training_on_the_consensus_writes_annotator_outputs(tmp_path, crowd_file):
    summary = train(cfg(tmp_path, "ds", f"data.annotations={crowd_file}", "data.annotations_target=soft",
                        "data.annotations_weighting=agreement", "train.visualdl=true"))
    out = tmp_path / "ds"
    consensus = list(csv.DictReader(open(out / "consensus.csv", encoding="utf-8")))
    assert len(consensus) == Y.size and consensus[0]["num_answers"] == "3"
    labels = np.array([int(r["consensus_label"]) for r in consensus])
    assert np.mean(labels == Y) > 0.8  # 3 answers each from a crowd with spammers and confusers
    table = np.load(out / "train_labels.npy")
    assert np.array_equal(table["label"], labels[table["source_row"]])  # trained on the consensus
    annotators = list(csv.DictReader(open(out / "annotators.csv", encoding="utf-8")))
    assert len(annotators) == 12 and float(annotators[0]["accuracy"]) >= float(annotators[-1]["accuracy"])
    changed = int(np.sum(labels != Y))
    metrics = json.load(open(out / "metrics.json", encoding="utf-8"))
    assert metrics["labels"] == {"changed": changed, "annotations_method": "dawid_skene", "annotators": 12,
                                 "annotated_samples": Y.size}
    assert summary["final"]["test/acc"] > 0.5
    from tests.quality.test_visualdl import read_log  # VisualDL shows the annotator accuracies, best first

    curve = read_log(out)["scalar"]["annotators/accuracy"]
    assert [round(r.value, 4) for r in curve] == [round(float(a["accuracy"]), 4) for a in annotators]


def test_soft_targets_need_the_standard_method(tmp_path, crowd_file):
    with pytest.raises(ConfigError, match="data.annotations_target: only method 'standard'"):
        train(cfg(tmp_path, "ct", f"data.annotations={crowd_file}", "data.annotations_target=soft",
                  "method.name=co_teaching"))
    with pytest.raises(ConfigError, match="data.annotations_weighting: needs data.annotations"):
        train(cfg(tmp_path, "nw", "data.annotations_weighting=agreement"))


def test_annotation_prior_by_hand():
    from robust_paddle.pipeline.label_workflow import annotation_prior
    from robust_paddle.quality.annotators import Annotations, aggregate

    # sample 0: 3 of 3 say 1; sample 1: 2 of 3 say 0; sample 2: nobody; sample 3: 1 and 2 (tie -> 1)
    ann = Annotations.from_arrays([0, 0, 0, 1, 1, 1, 3, 3], [0, 1, 2, 0, 1, 2, 0, 1], [1, 1, 1, 0, 0, 2, 1, 2])
    cons = aggregate(ann, num_samples=4, num_classes=3, method="majority_vote")
    rows, labels = np.array([3, 0, 1, 2]), np.array([1, 1, 0, 0])
    agree = annotation_prior(cons, rows, labels, kind="agreement")
    np.testing.assert_allclose(agree, [0.5, 0.99, 2 / 3, np.nan])  # 3 of 3 is clipped to 0.99
    post = annotation_prior(cons, rows, labels, kind="posterior")
    np.testing.assert_allclose(post, [0.5, 0.99, 2 / 3, np.nan])  # majority vote: the vote shares
    reviewed = annotation_prior(cons, rows, np.array([2, 1, 2, 0]), kind="agreement",
                                overridden=np.array([False, True, False, False]))  # by source row
    np.testing.assert_allclose(reviewed, [0.01, 0.99, 1.0, np.nan])  # a label nobody gave; a reviewed label


@pytest.mark.parametrize("method,params", [("gmm_correction", ["method.params.warmup_epochs=1"]),
                                           ("co_teaching", ["method.params.forget_rate=0.2",
                                                            "method.params.num_gradual=1"])])
def test_selection_methods_take_the_annotators_prior(tmp_path, crowd_file, method, params):
    from robust_paddle.pipeline.build import build_run

    c = cfg(tmp_path, method, f"data.annotations={crowd_file}", "data.annotations_prior=agreement",
            f"method.name={method}", *params)
    run = build_run(c, output_dir=str(tmp_path / method))
    cons = run.data.label_sources.consensus
    rows = np.asarray(run.data.train.source_rows)
    np.testing.assert_allclose(run.method.ctx.clean_prior, np.clip(cons.agreement[rows], 0.01, 0.99))
    summary = train(c)
    assert summary["final"]["test/acc"] > 0.3


def test_annotation_prior_is_refused_where_nothing_selects(tmp_path, crowd_file):
    with pytest.raises(ConfigError, match=r"data.annotations_prior: method 'standard' has no clean probability or "
                                          r"small-loss selection .*co_teaching, co_teaching_plus, dividemix, "
                                          r"gmm_correction, jocor"):
        train(cfg(tmp_path, "st", f"data.annotations={crowd_file}", "data.annotations_prior=posterior"))
    with pytest.raises(ConfigError, match="data.annotations_prior: needs data.annotations"):
        train(cfg(tmp_path, "np", "data.annotations_prior=agreement", "method.name=dividemix"))


def test_reviewed_labels_change_exactly_those_samples(tmp_path):
    override = tmp_path / "reviewed.csv"
    rows = {5: (Y[5] + 1) % 10, 17: (Y[17] + 3) % 10, 40: Y[40]}  # two changes, one confirmed
    override.write_text("sample,label\n" + "".join(f"{k},{v}\n" for k, v in rows.items()), encoding="utf-8")
    train(cfg(tmp_path, "ov", f"data.labels_override={override}"))
    out = tmp_path / "ov"
    table = np.load(out / "train_labels.npy")
    expected = Y.copy()
    for k, v in rows.items():
        expected[k] = v
    assert np.array_equal(table["label"], expected[table["source_row"]])
    assert json.load(open(out / "metrics.json", encoding="utf-8"))["labels"] == {"changed": 2, "overridden": 3}


def test_spot_check_interval_covers_the_injected_rate(tmp_path):
    c = cfg(tmp_path, "sc", "data.noise.kind=symmetric", "data.noise.rate=0.3")
    sample = str(tmp_path / "to_verify.csv")
    sample_for_review_command(c, n=200, out=sample)
    rows = list(csv.DictReader(open(sample, encoding="utf-8")))
    assert len(rows) == 200
    with open(sample, "w", newline="", encoding="utf-8") as fh:  # the reviewer fills in the truth
        w = csv.writer(fh)
        w.writerow(["sample", "given_label", "given_name", "verified_label"])
        for r in rows:
            w.writerow([r["sample"], r["given_label"], r["given_name"], Y[int(r["sample"])]])
    est = estimate_command(c, verified=sample, out_dir=str(tmp_path / "est"))
    lo, hi = est["interval"]
    assert lo <= 0.3 <= hi and est["n_verified"] == 200
    assert np.allclose(np.sum(est["transition_matrix"], axis=1), 1.0)
    saved = json.load(open(tmp_path / "est" / "noise_estimate.json", encoding="utf-8"))
    assert saved["noise_rate"] == pytest.approx(est["noise_rate"])
    # the estimate feeds a small-loss method's forget rate
    from robust_paddle.methods.forget_rate import forget_rate_from_file

    assert forget_rate_from_file(str(tmp_path / "est" / "noise_estimate.json")) == pytest.approx(est["noise_rate"])
    with pytest.raises(ConfigError, match="already exists"):
        sample_for_review_command(c, n=10, out=sample)


def test_cli_verified_file_from_another_dataset_is_one_line(tmp_path, capsys):
    bad = tmp_path / "verified.csv"
    bad.write_text("sample,verified_label\n0,1\nimg/cat_001.jpg,2\n", encoding="utf-8")
    rc = main(["estimate", "-c", BASE, "-o", f"output_dir={tmp_path / 'x'}", "--verified", str(bad)])
    err = [line for line in capsys.readouterr().err.splitlines() if not line[:2].isdigit()]  # log lines start with a time
    assert rc == 2 and len(err) == 1 and err[0].startswith("robust-paddle: error:")
    assert "verified.csv:3: sample 'img/cat_001.jpg' is not in this dataset's training split" in err[0]


def test_a_review_changes_exactly_the_reviewed_labels_in_the_next_run(tmp_path):
    from robust_paddle.quality.review import apply_review, create_review_app

    first = cfg(tmp_path, "r1", "train.report=true", "data.noise.kind=symmetric", "data.noise.rate=0.3")
    train(first)
    run = str(tmp_path / "r1")
    page = create_review_app(run, reviewer="qa").test_client()
    top = page.get("/api/items?per_page=3").get_json()["items"]
    new = (top[0]["given_label"] + 1) % 10
    assert page.post("/api/decision", json={"index": top[0]["index"], "action": "change", "label": new}).status_code == 200
    assert page.post("/api/decision", json={"index": top[1]["index"], "action": "keep"}).status_code == 200
    assert page.post("/api/decision", json={"index": top[2]["index"], "action": "unsure"}).status_code == 200
    labels_file = str(tmp_path / "reviewed.csv")
    assert apply_review(run, labels_file)["changed"] == 1
    train(cfg(tmp_path, "r2", "data.noise.kind=symmetric", "data.noise.rate=0.3", f"data.labels_override={labels_file}"))
    before, after = np.load(tmp_path / "r1" / "train_labels.npy"), np.load(tmp_path / "r2" / "train_labels.npy")
    assert np.array_equal(before["source_row"], after["source_row"])
    diff = np.flatnonzero(before["label"] != after["label"])
    assert diff.tolist() == [top[0]["index"]] and after["label"][diff[0]] == new
    assert json.load(open(tmp_path / "r2" / "metrics.json", encoding="utf-8"))["labels"]["overridden"] == 2


def test_the_reports_estimate_is_combined_with_the_spot_check(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "label_issues_summary.json").write_text(json.dumps(
        {"noise_rate_estimate": 0.28, "noise_rate_estimator": "loss_gmm", "noise_rate_interval": [0.2, 0.36]}))
    c = cfg(tmp_path, "cmb", "data.noise.kind=symmetric", "data.noise.rate=0.3")
    sample = str(tmp_path / "v.csv")
    sample_for_review_command(c, n=100, out=sample)
    rows = list(csv.DictReader(open(sample, encoding="utf-8")))
    with open(sample, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "verified_label"])
        w.writerows([r["sample"], Y[int(r["sample"])]] for r in rows)
    est = estimate_command(c, verified=sample, run_dir=str(run), out_dir=str(tmp_path / "e"))
    assert est["model_estimate"] == {"noise_rate": 0.28, "interval": [0.2, 0.36], "estimator": "loss_gmm"}
    lo, hi = est["combined"]["interval"]
    assert lo < est["combined"]["noise_rate"] < hi and hi - lo < min(0.16, est["interval"][1] - est["interval"][0])
