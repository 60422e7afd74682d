"""Entry points of the label-quality workflow: draw a sample to verify, estimate noise from it, review the
most suspect labels in a browser and turn the review into labels for the next run.

``robust-paddle sample-for-review``, ``estimate``, ``review`` and ``apply-review`` call these; the statistics
live in :mod:`robust_paddle.quality.spot_check`, the page in :mod:`robust_paddle.quality.review`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from typing import Any

import numpy as np

from robust_paddle.config import Config
from robust_paddle.data import build_data
from robust_paddle.data.table import read_table
from robust_paddle.data.textfile import where
from robust_paddle.errors import ConfigError, DataError
from robust_paddle.ops import atomic_write
from robust_paddle.quality.annotators import SAMPLE_COLUMNS, parse_label
from robust_paddle.quality.spot_check import (
    combine_estimates,
    sample_for_review,
    samples_needed,
    spot_check_estimate,
)

logger = logging.getLogger(__name__)

ESTIMATE_FILE = "noise_estimate.json"
VERIFIED_COLUMNS = ("verified_label", "label")


def train_sample_names(ds: Any) -> list[str]:
    """Name of each training sample (by training index) in label files: id, else path, else source row."""
    if getattr(ds, "ids", None) is not None:
        return [str(v) for v in np.asarray(ds.ids).tolist()]
    if getattr(ds, "paths", None) is not None:
        return [str(p) for p in ds.paths]
    return [str(int(r)) for r in ds.source_rows]


PRIOR_FLOOR = 0.01  # an annotator-based prior never says "certainly right / wrong"; reviewed labels get 1


def annotation_prior(cons: Any, rows: np.ndarray, labels: np.ndarray, *, kind: str,
                     overridden: np.ndarray | None = None) -> np.ndarray:
    """[M] prior probability that each training label is right, from the annotators' consensus.

    ``kind``: ``"agreement"`` = the share of the sample's answers equal to its label (the training label is the
    consensus label, so this is :attr:`Consensus.agreement`); ``"posterior"`` = the consensus posterior of the
    label, ``P(true = label | answers)``. Clipped to ``[PRIOR_FLOOR, 1 - PRIOR_FLOOR]``; a reviewed label
    (``overridden``) gets 1 and a sample nobody answered NaN (no prior).

    Args:
        cons: the :class:`~robust_paddle.quality.annotators.Consensus` (arrays by source row).
        rows: [M] source row of each training sample. labels: [M] its training label.
        kind: ``"agreement"`` or ``"posterior"``.
        overridden: [source rows] bool, True where ``data.labels_override`` set the label, or None.
    """
    rows = np.asarray(rows, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    answered = cons.labels[rows] >= 0
    if kind == "agreement":
        value = np.where(labels == cons.labels[rows], cons.agreement[rows], 0.0)
    else:
        value = cons.posterior[rows, labels]
    prior = np.where(answered, np.clip(value, PRIOR_FLOOR, 1.0 - PRIOR_FLOOR), np.nan)
    if overridden is not None:
        prior[np.asarray(overridden, dtype=bool)[rows]] = 1.0
    return prior


def annotation_targets(cfg: Config, data: Any) -> dict[str, np.ndarray | None]:
    """``{"soft_targets": [N, C] | None, "sample_weights": [N] | None, "clean_prior": [N] | None}`` for the
    MethodContext, from the annotators' consensus (``data.annotations_target: soft``,
    ``data.annotations_weighting: agreement``, ``data.annotations_prior``), rows in training-split order.

    Raises:
        ConfigError: an option set without ``data.annotations``; soft targets or weights with a method other than
            ``standard`` (the others select or relabel samples by their hard labels and would ignore them); a
            prior with a method that has no clean probability or selection to start from.
    """
    from robust_paddle.registry import METHODS

    d = cfg.data
    out: dict[str, np.ndarray | None] = {"soft_targets": None, "sample_weights": None, "clean_prior": None}
    wanted = [k for k, v in (("annotations_target", d.annotations_target != "hard"),
                             ("annotations_weighting", d.annotations_weighting != "none"),
                             ("annotations_prior", d.annotations_prior != "none")) if v]
    if not wanted:
        return out
    if not d.annotations:
        raise ConfigError(f"data.{wanted[0]}: needs data.annotations (the annotators' answers)")
    standard_only = [k for k in wanted if k != "annotations_prior"]
    if standard_only and cfg.method.name != "standard":
        raise ConfigError(f"data.{standard_only[0]}: only method 'standard' trains on the consensus posterior or "
                          f"agreement weights; method {cfg.method.name!r} uses hard labels (set "
                          f"data.{standard_only[0]} back to its default)")
    if d.annotations_prior != "none" and not getattr(METHODS.get(cfg.method.name), "uses_clean_prior", False):
        users = sorted(n for n in METHODS.names() if getattr(METHODS.get(n), "uses_clean_prior", False))
        raise ConfigError(f"data.annotations_prior: method {cfg.method.name!r} has no clean probability or "
                          f"small-loss selection to start from the annotators' prior; use one of {', '.join(users)}"
                          " (for 'standard', data.annotations_weighting: agreement weights the loss instead)")
    ls = data.label_sources
    cons = ls.consensus
    rows = np.asarray(data.train.source_rows, dtype=np.int64)
    labels = np.asarray(data.train.labels, dtype=np.int64)
    if d.annotations_target == "soft":
        post = cons.posterior[rows]
        hard = np.eye(data.num_classes)[labels]
        unanswered = post.sum(axis=1) == 0  # no answers: the file's label as a one-hot target
        out["soft_targets"] = np.where(unanswered[:, None], hard, post)
    if d.annotations_weighting == "agreement":
        agree = cons.agreement[rows]
        out["sample_weights"] = np.where(np.isnan(agree), 1.0, agree)
    if d.annotations_prior != "none":
        out["clean_prior"] = annotation_prior(cons, rows, labels, kind=d.annotations_prior, overridden=ls.overridden)
    return out


def label_source_summary(data: Any) -> dict[str, Any] | None:
    """What the run's labels came from, for metrics.json: ``{"source", "changed", ...}`` or None."""
    ls = getattr(data, "label_sources", None)
    if ls is None:
        return None
    out: dict[str, Any] = {"changed": int(ls.changed)}
    if ls.consensus is not None:
        out["annotations_method"] = ls.consensus.method
        out["annotators"] = len(ls.consensus.annotator_names)
        out["annotated_samples"] = int((ls.consensus.labels >= 0).sum())
    if ls.overridden is not None:
        out["overridden"] = int(ls.overridden.sum())
    return out


def write_label_source_outputs(cfg: Config, data: Any, out_dir: str) -> list[str]:
    """``consensus.csv``, ``annotators.csv`` and ``annotators.json`` in the run folder when the run used
    ``data.annotations``; returns the paths written."""
    ls = getattr(data, "label_sources", None)
    if ls is None or ls.consensus is None:
        return []
    from robust_paddle.quality.annotators import write_annotator_outputs

    return write_annotator_outputs(ls.consensus, out_dir, sample_names=ls.sample_names, file_labels=ls.file_labels,
                                   class_names=list(data.class_names))


def sample_for_review_command(cfg: Config, *, n: int, out: str, seed: int | None = None) -> dict[str, Any]:
    """Write ``out`` (.csv): ``sample, given_label, given_name, verified_label`` (empty, for the reviewer) for a
    stratified random sample of ``n`` training samples (:func:`~robust_paddle.quality.spot_check.sample_for_review`).

    Raises:
        ConfigError: ``out`` is not a .csv file, ``n`` outside [1, N], or ``out`` already exists (a filled-in
            sample is never overwritten).
    """
    if os.path.splitext(out)[1].lower() != ".csv":
        raise ConfigError(f"--out {out!r}: the sample is written as a .csv file")
    if os.path.exists(out):
        raise ConfigError(f"--out {out!r} already exists; it may hold verified labels: choose another file")
    data = build_data(cfg)
    labels = np.asarray(data.train.labels, dtype=np.int64)
    if not 1 <= n <= labels.size:
        raise ConfigError(f"--n {n}: choose between 1 and the {labels.size} training samples")
    idx = sample_for_review(labels, n, seed=cfg.seed if seed is None else seed, num_classes=data.num_classes)
    names = train_sample_names(data.train)
    with atomic_write(out, newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sample", "given_label", "given_name", "verified_label"])
        for i in idx:
            w.writerow([names[i], int(labels[i]), data.class_names[labels[i]], ""])
    logger.info("wrote %d samples to verify to %s (stratified by given label, seed %s)", n, out,
                cfg.seed if seed is None else seed)
    return {"out": out, "n": int(n)}


def read_verified(path: str, *, keys: dict[str, int], num_classes: int, class_names: list[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(positions [M], verified labels [M])`` from a verified file; rows with an empty verified label are
    skipped (not yet checked).

    Raises:
        DataError: unknown samples (a file from another dataset), labels outside the classes, one sample
            verified twice with different labels, no sample or label column; each names ``file:line``.
    """
    rows = read_table(path, what="--verified")
    if not rows:
        raise DataError(f"--verified: {path} has no rows")
    first = rows[0].values
    s_col = next((c for c in SAMPLE_COLUMNS if c in first), None)
    l_col = next((c for c in VERIFIED_COLUMNS if c in first), None)
    if s_col is None or l_col is None:
        raise DataError(f"--verified: {where(path, rows[0].line)}: needs a sample column ({' / '.join(SAMPLE_COLUMNS)}) "
                        f"and a verified label column ({' / '.join(VERIFIED_COLUMNS)}); columns: {', '.join(first)}")
    index = {str(nm): i for i, nm in enumerate(class_names)}
    got: dict[int, tuple[int, int]] = {}
    unknown = 0
    for r in rows:
        at = f"--verified: {where(path, r.line)}"
        key = str(r.get(s_col, "")).strip()
        if key not in keys:
            unknown += 1
            if unknown == 1:
                first_unknown = f"{at}: sample {key!r} is not in this dataset's training split"
            continue
        val = r.get(l_col)
        if val is None or str(val).strip() == "":
            continue
        lab = parse_label(val, class_index=index, num_classes=num_classes, at=at)
        s = keys[key]
        if s in got and got[s][1] != lab:
            raise DataError(f"{at}: sample {key!r} verified as {lab} here but as {got[s][1]} on line {got[s][0]}")
        got[s] = (r.line, lab)
    if unknown:
        raise DataError(f"{first_unknown} ({unknown} of {len(rows)} rows name unknown samples: a file from another "
                        "dataset or split?)")
    if not got:
        raise DataError(f"--verified: {path}: no row has a verified label yet; fill in the {l_col} column")
    pos = np.fromiter(got.keys(), dtype=np.int64, count=len(got))
    lab = np.fromiter((v[1] for v in got.values()), dtype=np.int64, count=len(got))
    return pos, lab


def _model_estimate(run_dir: str) -> tuple[float, float | None, float | None, str]:
    """(rate, low, high, estimator) of the run's label-issue report (interval None when it has none)."""
    path = os.path.join(run_dir, "label_issues_summary.json")
    if not os.path.isfile(path):
        raise DataError(f"--run {run_dir}: no label_issues_summary.json; write the report first (robust-paddle report)")
    with open(path, encoding="utf-8") as fh:
        s = json.load(fh)
    nr = s.get("noise_rate")
    if isinstance(nr, dict) and "estimate" in nr:
        lo, hi = (nr.get("interval") or [None, None])[:2]
        return float(nr["estimate"]), lo, hi, str(nr.get("estimator", "report"))
    if "noise_rate_estimate" in s:  # the report's one estimate, its estimator and its interval
        lo, hi = (s.get("noise_rate_interval") or [None, None])[:2]
        return float(s["noise_rate_estimate"]), lo, hi, str(s.get("noise_rate_estimator", "report"))
    raise DataError(f"--run {run_dir}: {path} has no noise-rate estimate")


def estimate_command(cfg: Config, *, verified: str, run_dir: str | None = None, width: float = 0.05,
                     out_dir: str | None = None, alpha: float = 0.5) -> dict[str, Any]:
    """Noise estimate from a verified sample (see :mod:`robust_paddle.quality.spot_check`); writes
    ``<out_dir>/noise_estimate.json`` (default: ``cfg.output_dir``) and returns it.

    The file's ``noise_rate`` is accepted by ``method.params.forget_rate`` and its ``transition_matrix`` by
    ``forward_correction``'s ``transition`` (both given the file's path).
    """
    if not 0 < width <= 1:
        raise ConfigError(f"--width {width}: the wanted interval width must be in (0, 1]")
    data = build_data(cfg)
    ds = data.train
    names = train_sample_names(ds)
    keys = {k: i for i, k in enumerate(names)}
    root = cfg.data.root
    if root and getattr(ds, "paths", None) is not None:
        for i, p in enumerate(ds.paths):
            keys.setdefault(os.path.relpath(p, root), i)
    labels = np.asarray(ds.labels, dtype=np.int64)
    pos, ver = read_verified(verified, keys=keys, num_classes=data.num_classes, class_names=list(data.class_names))
    est = spot_check_estimate(labels[pos], ver, num_classes=data.num_classes,
                              class_counts=np.bincount(labels, minlength=data.num_classes), alpha=alpha)
    est["class_names"] = list(data.class_names)
    est["wanted_width"] = width
    need = samples_needed(est["noise_rate"], width)
    est["samples_needed"] = need
    est["more_samples_needed"] = max(0, need - est["n_verified"])
    if run_dir:
        rate, lo, hi, name = _model_estimate(run_dir)
        est["model_estimate"] = {"noise_rate": rate, "interval": None if lo is None else [lo, hi], "estimator": name}
        if lo is not None and hi is not None:
            est["combined"] = combine_estimates((est["noise_rate"], *est["interval"]), (rate, lo, hi))
    out_dir = out_dir or cfg.output_dir
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, ESTIMATE_FILE)
    with atomic_write(path) as fh:
        json.dump(est, fh, indent=2)
    lo, hi = est["interval"]
    logger.info("spot check: %d verified, %d wrong -> noise rate %.3f (95%% interval %.3f-%.3f); %d more samples "
                "for a %.3f-wide interval; wrote %s", est["n_verified"], est["n_wrong"], est["noise_rate"], lo, hi,
                est["more_samples_needed"], width, path)
    est["path"] = path
    return est


def review_command(run_dir: str, *, host: str = "127.0.0.1", port: int = 8050, reviewer: str = "") -> None:
    """Serve the review page for ``run_dir`` until interrupted."""
    from robust_paddle.deploy.serve import ServerHandle
    from robust_paddle.quality.review import MAX_BODY, create_review_app

    if not os.path.isdir(run_dir):
        raise ConfigError(f"--run {run_dir!r} is not a folder")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {port!r}")
    app = create_review_app(run_dir, reviewer=reviewer or os.environ.get("USER", ""))
    handle = ServerHandle(app, host=host, port=port, threads=4, max_body_bytes=MAX_BODY)
    # stdout, not only the log: with --port 0 this line is how a caller learns the port
    print(f"review page at {handle.url}/ (decisions go to {os.path.join(run_dir, 'review.jsonl')}; Ctrl-C stops)",
          flush=True)
    try:
        handle.serve_forever()
    finally:
        handle.close()


def apply_review_command(run_dir: str, *, out: str) -> dict[str, Any]:
    from robust_paddle.quality.review import apply_review

    summary = apply_review(run_dir, out)
    logger.info("wrote %d verified labels (%d changed, %d unsure left out) to %s; audit %s; train on them with "
                "-o data.labels_override=%s", summary["verified"], summary["changed"], summary["unsure"], out,
                summary["audit"], out)
    return summary


__all__ = ["apply_review_command", "estimate_command", "read_verified", "review_command", "sample_for_review_command",
           "train_sample_names"]
