"""Review round trip: a local web page to check the most suspect labels, and turning its decisions into labels.

``robust-paddle review --run DIR`` serves a page (Flask app, waitress server, bound to 127.0.0.1 by default)
listing the run's ``label_issues.csv`` in its order (most suspect first) with a thumbnail (image sources) or
the text (text sources), the given and suggested labels, a class filter and paging. Each sample gets one of
``keep`` (the given label is right), ``change`` (to a chosen class) or ``unsure``. Keyboard: ``k`` keep,
``u`` unsure, ``s`` change to the suggested label, digits ``0``-``9`` change to that class, ``j``/``n`` next
sample, ``p`` previous, ``]``/``[`` next / previous page.

Every decision is appended to ``<run>/review.jsonl`` as it is made (one JSON object per line, flushed and
``fsync``-ed before the page is answered), so a refresh or a killed server loses nothing; the last decision
for a sample wins. The server writes nothing else and takes no path from a request.

``robust-paddle apply-review --run DIR --out LABELS.csv`` writes the verified labels (``keep`` and ``change``
decisions; ``unsure`` ones are left out) as ``sample,label`` rows that ``data.labels_override`` reads, merged
with the override the run itself was trained with (new decisions win), and an audit ``LABELS.audit.csv``
(sample, source_row, from, to, action, reviewer, time).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_paddle.data.table import read_table
from robust_paddle.errors import ConfigError, DataError, MissingDependencyError

__all__ = ["ACTIONS", "REVIEW_FILE", "ReviewStore", "apply_review", "create_review_app", "load_issues"]

logger = logging.getLogger(__name__)

REVIEW_FILE = "review.jsonl"
ISSUES_FILE = "label_issues.csv"
ACTIONS = ("keep", "change", "unsure")
MAX_BODY = 16 * 1024  # a decision is a few dozen bytes
MAX_PER_PAGE = 200


def sample_name(row: dict[str, Any]) -> str:
    """How label files name a report row: its ``id``, else its ``path``, else its ``source_row``
    (the rule of :func:`robust_paddle.data.label_sources.sample_keys`)."""
    for key in ("id", "path", "source_row"):
        v = row.get(key)
        if v not in (None, ""):
            return str(v)
    return str(row["index"])


def load_issues(run_dir: str) -> list[dict[str, Any]]:
    """The rows of ``<run_dir>/label_issues.csv`` in file order, numbers parsed.

    Raises:
        DataError: no report in the folder (run ``robust-paddle report`` first) or a malformed row.
    """
    path = os.path.join(run_dir, ISSUES_FILE)
    if not os.path.isfile(path):
        raise DataError(f"{run_dir}: no {ISSUES_FILE}; write the label-issue report first "
                        f"(robust-paddle report -c {os.path.join(run_dir, 'config.yaml')} --checkpoint {run_dir})")
    rows = []
    for r in read_table(path, required=("index", "given_label", "suggested_label"), what="review"):
        v = dict(r.values)
        try:
            for k in ("index", "source_row", "given_label", "suggested_label", "is_issue", "true_label"):
                if v.get(k) not in (None, ""):
                    v[k] = int(v[k])
            for k in ("clean_prob", "quality_score", "loss"):
                if v.get(k) not in (None, ""):
                    v[k] = float(v[k])
        except ValueError as e:
            raise DataError(f"review: {path}:{r.line}: {e}") from None
        v["sample"] = sample_name(v)
        rows.append(v)
    return rows


class ReviewStore:
    """Append-only ``review.jsonl``: one decision per line, durable before :meth:`append` returns."""

    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, REVIEW_FILE)
        self._lock = threading.Lock()

    def load(self) -> dict[int, dict[str, Any]]:
        """``{index: last decision}``; a torn last line (a server killed mid-write) is skipped with a warning."""
        out: dict[int, dict[str, Any]] = {}
        if not os.path.exists(self.path):
            return out
        with open(self.path, "rb") as fh:
            lines = fh.read().split(b"\n")
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                d = json.loads(raw.decode("utf-8"))
                out[int(d["index"])] = d
            except (ValueError, KeyError, TypeError):
                if n == len(lines) or (n == len(lines) - 1 and not lines[-1]):
                    logger.warning("%s:%d: an incomplete last decision is ignored", self.path, n)
                    continue
                raise DataError(f"{self.path}:{n}: not a review decision") from None
        return out

    def append(self, decision: dict[str, Any]) -> None:
        data = (json.dumps(decision, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


def _thumbnail_png(x: np.ndarray, mean: Sequence[float], std: Sequence[float], *, size: int = 96) -> bytes | None:
    """PNG bytes of a normalised CHW image tensor (undoing mean/std), or None for non-image samples."""
    from PIL import Image

    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 3 or a.shape[0] not in (1, 3):
        return None
    a = a * np.asarray(std, np.float32)[:, None, None] + np.asarray(mean, np.float32)[:, None, None]
    lo, hi = float(a.min()), float(a.max())
    if hi > 1.5 or lo < -0.5:  # not in [0, 1] units: stretch for display
        a = (a - lo) / max(hi - lo, 1e-6)
    img = np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    scale = max(1, size // max(im.size))
    im = im.resize((im.size[0] * scale, im.size[1] * scale), Image.NEAREST) if scale > 1 else im
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def create_review_app(run_dir: str, *, reviewer: str = "", data: Any = None) -> Any:
    """The review web app for a run folder.

    Args:
        run_dir: a run folder holding ``label_issues.csv`` and ``config.yaml``.
        reviewer: name recorded with each decision.
        data: a prebuilt DataBundle for thumbnails (default: built from the run's config on first use).

    Raises:
        DataError: no report in ``run_dir``. ImportError: Flask is missing.
    """
    try:
        from flask import Flask, Response, jsonify, request
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("the review page needs Flask and waitress: pip install -e .[serve]") from e
    from robust_paddle.quality.review_page import PAGE

    rows = load_issues(run_dir)
    by_index = {r["index"]: r for r in rows}
    store = ReviewStore(run_dir)
    decisions = store.load()
    class_names = _class_names(run_dir, rows)
    state: dict[str, Any] = {"data": data}
    data_lock = threading.Lock()
    app = Flask("robust_paddle.review")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY

    def bad(msg: str, status: int = 400) -> Any:
        return jsonify({"error": msg}), status

    @app.get("/")
    def page() -> Any:
        return Response(PAGE, mimetype="text/html")

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "ok", "samples": len(rows), "decisions": len(decisions)})

    @app.get("/api/items")
    def items() -> Any:
        try:
            page_no = int(request.args.get("page", "1"))
            per_page = int(request.args.get("per_page", "24"))
            cls = request.args.get("class", "")
            cls_i = int(cls) if cls != "" else None
        except ValueError:
            return bad("page, per_page and class must be integers")
        status = request.args.get("status", "all")
        if page_no < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            return bad(f"page must be >= 1 and per_page in [1, {MAX_PER_PAGE}]")
        if status not in ("all", "open", "done"):
            return bad("status must be one of all, open, done")
        sel = [r for r in rows if (cls_i is None or r["given_label"] == cls_i)
               and (status == "all" or (status == "done") == (r["index"] in decisions))]
        start = (page_no - 1) * per_page
        out = [{**r, "decision": decisions.get(r["index"])} for r in sel[start:start + per_page]]
        return jsonify({"total": len(sel), "page": page_no, "per_page": per_page, "items": out,
                        "class_names": class_names, "decided": len(decisions), "samples": len(rows)})

    @app.get("/api/thumb/<int:index>")
    def thumb(index: int) -> Any:
        if index not in by_index:
            return bad(f"no sample with index {index}", 404)
        with data_lock:
            if state["data"] is None:
                state["data"] = _build_data(run_dir)
        d = state["data"]
        png = _thumbnail_png(d.train_eval[index][0], d.mean, d.std)
        if png is None:
            return bad("this dataset has no images", 404)
        return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/decision")
    def decide() -> Any:
        from robust_paddle.data.table import MAX_JSON_DEPTH, json_depth

        raw = request.get_data(cache=False)
        text = raw.decode("utf-8", errors="replace")
        if json_depth(text) > MAX_JSON_DEPTH:
            return bad("request JSON is nested too deeply")
        try:
            body = json.loads(text)
        except ValueError:
            return bad("body must be a JSON object {\"index\": int, \"action\": keep|change|unsure, \"label\": int}")
        if not isinstance(body, dict):
            return bad("body must be a JSON object")
        unknown = sorted(set(body) - {"index", "action", "label"})
        if unknown:
            return bad(f"unknown field(s) {unknown}; allowed: index, action, label")
        index, action = body.get("index"), body.get("action")
        if isinstance(index, bool) or not isinstance(index, int) or index not in by_index:
            return bad(f"index {index!r} is not a sample of this report")
        if action not in ACTIONS:
            return bad(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        row = by_index[index]
        label = body.get("label")
        if action == "change":
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(class_names):
                return bad(f"action change needs label in [0, {len(class_names)}), got {label!r}")
        elif label is not None:
            return bad(f"label is only taken with action change, not {action}")
        else:
            label = row["given_label"] if action == "keep" else None
        dec = {"index": index, "source_row": row.get("source_row"), "sample": row["sample"], "action": action,
               "from": row["given_label"], "label": label, "reviewer": reviewer,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        store.append(dec)
        decisions[index] = dec
        return jsonify({"ok": True, "decision": dec, "decided": len(decisions)})

    return app


def _class_names(run_dir: str, rows: list[dict[str, Any]]) -> list[str]:
    summary = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(summary):
        with open(summary, encoding="utf-8") as fh:
            names = json.load(fh).get("class_names")
        if names:
            return [str(n) for n in names]
    c = 1 + max(max(r["given_label"], r["suggested_label"]) for r in rows)
    named = {r["given_label"]: r.get("given_name") for r in rows}
    return [str(named.get(i) or i) for i in range(c)]


def _build_data(run_dir: str) -> Any:
    from robust_paddle import config as config_mod
    from robust_paddle.data import build_data

    return build_data(config_mod.load(os.path.join(run_dir, "config.yaml")))


def apply_review(run_dir: str, out_path: str) -> dict[str, Any]:
    """Write the verified labels of a review (see the module docstring); returns a summary.

    Raises:
        DataError: no decisions in the run folder. ConfigError: ``out_path`` is ``review.jsonl`` itself or has
            an extension other than .csv.
    """
    if os.path.splitext(out_path)[1].lower() != ".csv":
        raise ConfigError(f"--out {out_path!r}: write the reviewed labels as a .csv file")
    store = ReviewStore(run_dir)
    if os.path.abspath(out_path) == os.path.abspath(store.path):
        raise ConfigError(f"--out {out_path!r} is the review log itself; choose another file")
    decisions = store.load()
    if not decisions:
        raise DataError(f"{run_dir}: no review decisions in {REVIEW_FILE}; review first (robust-paddle review --run "
                        f"{run_dir})")
    merged: dict[str, int] = {}
    previous = _previous_override(run_dir)
    if previous:
        merged.update({str(r.values["sample"]): int(r.values["label"]) for r in read_table(previous)
                       if "sample" in r.values})
    audit = []
    for dec in sorted(decisions.values(), key=lambda d: d["index"]):
        if dec["action"] == "unsure":
            continue
        merged[str(dec["sample"])] = int(dec["label"])
        audit.append(dec)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    from robust_paddle.ops import atomic_write

    with atomic_write(out_path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "label"])
        w.writerows(sorted(merged.items()))
    audit_path = os.path.splitext(out_path)[0] + ".audit.csv"
    with atomic_write(audit_path, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "source_row", "from", "to", "action", "reviewer", "time"])
        for d in audit:
            w.writerow([d["sample"], d.get("source_row"), d["from"], d["label"], d["action"], d.get("reviewer", ""),
                        d.get("time", "")])
    changed = sum(1 for d in audit if d["action"] == "change" and d["label"] != d["from"])
    return {"labels": out_path, "audit": audit_path, "verified": len(audit), "changed": changed,
            "unsure": sum(1 for d in decisions.values() if d["action"] == "unsure"),
            "carried_over": len(merged) - len(audit) if previous else 0}


def _previous_override(run_dir: str) -> str | None:
    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        return None
    from robust_paddle import config as config_mod

    prev = config_mod.load(cfg_path).data.labels_override
    return prev if prev and os.path.isfile(prev) else None
