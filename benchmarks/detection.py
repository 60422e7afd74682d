"""Label-issue detection against the truth: our report vs cleanlab, and noise-rate estimates.

    .venv/bin/python benchmarks/detection.py                                  # sym 20/40/60 on digits
    .venv/bin/python benchmarks/detection.py --methods standard+gce --noises sym40 --seeds 1 --epochs 20 \\
        --cv-method standard+ce

For every noise setting and seed, with the same config, model family and epoch budget:

* **ours**: one training run of the method on the whole noisy training set; its label-issue report
  (``robust_paddle.quality.report.write_report``: the trained model's probabilities + the method's clean
  probability or a loss GMM) flags issues; ``noise_rate_estimate`` is the report's default estimate
  (``quality/noise_rate.py``; every estimator's value is kept under ``noise_rate_estimators``);
* **cleanlab**: ``cleanlab.filter.find_label_issues`` (2.x defaults, ``prune_by_noise_rate``) fed K-fold
  out-of-sample probabilities (``robust_paddle.pipeline.kfold.cross_val_pred_probs``: the same method trained
  K times, or ``--cv-method``); cleanlab's noise rate is ``1 - trace`` of ``cleanlab.count.estimate_joint`` on them;
* **ours on the K-fold probabilities** (``estimation.find_label_issues``) for an apples-to-apples check.

Precision / recall / F1 of the flagged set against the samples whose noisy label differs from the clean
one. cleanlab is a benchmark-only dependency. Writes ``benchmarks/results/detection-<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402

DEFAULT_NOISES = "sym20,sym40,sym60"


def _cleanlab() -> tuple[Any, Any]:
    try:
        from cleanlab.count import estimate_joint
        from cleanlab.filter import find_label_issues
    except ImportError as e:
        raise ImportError("benchmarks/detection.py compares with cleanlab: pip install cleanlab==2.9.0 "
                          "(a benchmark-only dependency)") from e
    return find_label_issues, estimate_joint


def run_setting(base: Any, method: str, noise: str, seed: int, *, epochs: int, folds: int, workdir: str,
                dataset: str, cv_method: str) -> dict[str, Any]:
    from robust_paddle.data import build_data
    from robust_paddle.pipeline import kfold
    from robust_paddle.pipeline.run import train
    from robust_paddle.quality import estimation as E

    cl_find, cl_joint = _cleanlab()
    values = C.run_overrides(method, noise, dataset=dataset, seed=seed, epochs=epochs)
    out = C.cell_dir(workdir, method, noise, seed)
    cfg = C.build_cfg(base, {**values, "train.report": True}, out)
    t0 = time.perf_counter()
    train(cfg)
    with open(os.path.join(out, "label_issues_summary.json"), encoding="utf-8") as fh:
        rep = json.load(fh)
    t1 = time.perf_counter()
    data = build_data(cfg)
    labels, clean = np.asarray(data.train.labels), np.asarray(data.train.clean_labels)
    truth = labels != clean
    cv_spec = method if cv_method == "same" else cv_method
    cv_cfg = C.build_cfg(base, C.run_overrides(cv_spec, noise, dataset=dataset, seed=seed, epochs=epochs), out)
    probs = kfold.cross_val_pred_probs(cv_cfg, folds=folds, data=data)
    t2 = time.perf_counter()
    cl_mask = cl_find(labels, probs, n_jobs=1)  # n_jobs=1: no worker processes forked from a paddle process
    return {
        "method": method, "cv_method": cv_spec, "noise": noise, "seed": seed,
        "true_noise_rate": float(truth.mean()),
        "ours": {**rep["detection"], "noise_rate_estimate": rep["noise_rate_estimate"],
                 "noise_rate_estimators": rep["noise_rate_estimators"], "clean_prob_source": rep["clean_prob_source"]},
        "cleanlab_cv": {**E.detection_scores(cl_mask, truth),
                        "noise_rate_estimate": float(1.0 - np.trace(cl_joint(labels, probs)))},
        "ours_on_cv": {**E.detection_scores(E.find_label_issues(labels, probs), truth),
                       "noise_rate_estimate": E.estimate_noise_rate(labels, probs)},
        "cv_accuracy_vs_clean": float(np.mean(probs.argmax(1) == clean)),
        "seconds": {"ours": t1 - t0, "cross_val": t2 - t1},
    }


SOURCES = ("ours", "cleanlab_cv", "ours_on_cv")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted({(r["method"], r["noise"]) for r in runs}):
        rs = [r for r in runs if (r["method"], r["noise"]) == key]
        cell: dict[str, Any] = {"n": len(rs), "true_noise_rate": C.mean_std([r["true_noise_rate"] for r in rs])}
        for src in SOURCES:
            cell[src] = {m: C.mean_std([r[src][m] for r in rs]) for m in ("precision", "recall", "f1")}
            cell[src]["noise_rate_abs_error"] = C.mean_std(
                [abs(r[src]["noise_rate_estimate"] - r["true_noise_rate"]) for r in rs])
            cell[src]["noise_rate_estimate"] = C.mean_std([r[src]["noise_rate_estimate"] for r in rs])
        out[f"{key[0]}|{key[1]}"] = cell
    return out


def check_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, cell in summary.items():
        ours, cl = cell["ours"]["f1"][0], cell["cleanlab_cv"]["f1"][0]
        out.append({"target": f"{key}: detection F1 >= cleanlab's", "value": ours - cl, "pass": ours >= cl})
        if key.split("|")[1] in ("sym20", "sym40", "sym60"):
            err = cell["ours"]["noise_rate_abs_error"][0]
            out.append({"target": f"{key}: noise-rate estimate within 5 points", "value": err, "pass": err <= 0.05})
    return out


def format_table(summary: dict[str, Any], dataset: str) -> str:
    cols = (f"{'method | noise':<26}{'true rate':>11}" + "".join(f"{s + ' P/R/F1':>26}" for s in SOURCES)
            + "".join(f"{s + ' rate':>18}" for s in ("ours", "cleanlab_cv")))
    lines = [f"{dataset}: label-issue detection vs the truth (%, mean over seeds)", cols, "-" * len(cols)]
    for key, cell in summary.items():
        row = f"{key:<26}{100 * cell['true_noise_rate'][0]:>11.1f}"
        for src in SOURCES:
            row += f"{_prf(cell[src]):>26}"
        for src in ("ours", "cleanlab_cv"):
            row += f"{C.fmt_ms(*cell[src]['noise_rate_estimate']):>18}"
        lines.append(row)
    return "\n".join(lines)


def _prf(c: dict[str, Any]) -> str:
    return f"{100 * c['precision'][0]:.1f} / {100 * c['recall'][0]:.1f} / {100 * c['f1'][0]:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    C.add_common_args(p, config=os.path.join(C.ROOT, "configs", "_base_", "digits.yaml"), noises=DEFAULT_NOISES,
                      seeds=3, epochs=30)
    p.add_argument("--methods", default="dividemix", help="comma-separated method specs whose report is "
                   "measured (default: dividemix)")
    p.add_argument("--folds", type=int, default=5, help="K of the cross-validated probabilities (default 5)")
    p.add_argument("--cv-method", default="same", help="method spec trained K times for cleanlab's "
                   "out-of-sample probabilities; 'same' (default) = the measured method itself")
    args = p.parse_args(argv)
    _cleanlab()
    settings = (args.epochs, args.folds, args.cv_method)
    methods = C.split_list(args.methods)
    base, _, noises, out, runs = C.start(  # the --cv-method spec is checked too
        args, name="detection", methods=methods + ([] if args.cv_method == "same" else [args.cv_method]), parser=p,
        resumable=lambda old: old["runs"] if (old["meta"]["epochs"], old["meta"]["folds"],
                                              old["meta"].get("cv_method")) == settings else [])
    dataset = base.data.name
    done = {(r["method"], r["noise"], r["seed"]) for r in runs}
    meta = {"dataset": dataset, "config": args.config, "overrides": args.override, "epochs": args.epochs,
            "folds": args.folds, "cv_method": args.cv_method, "seeds": args.seeds, "methods": methods, "noises": noises,
            "environment": C.environment()}
    plan = [(m, nz, s) for s in range(args.seeds) for nz in noises for m in methods]
    with tempfile.TemporaryDirectory(prefix="bench_det_") as tmp:
        for i, (m, nz, s) in enumerate(plan):
            if (m, nz, s) in done:
                continue
            r = run_setting(base, m, nz, s, epochs=args.epochs, folds=args.folds, workdir=args.workdir or tmp,
                            dataset=dataset, cv_method=args.cv_method)
            runs.append(r)
            print(f"[{i + 1}/{len(plan)}] {m} {nz} seed {s}: F1 ours {r['ours']['f1']:.3f} cleanlab "
                  f"{r['cleanlab_cv']['f1']:.3f}; rate true {r['true_noise_rate']:.3f} ours "
                  f"{r['ours']['noise_rate_estimate']:.3f} cleanlab {r['cleanlab_cv']['noise_rate_estimate']:.3f}",
                  flush=True)
            summary = summarise(runs)
            C.save_json(out, {"meta": meta, "runs": runs, "summary": summary, "targets": check_targets(summary)})
    summary = summarise(runs)
    targets = check_targets(summary)
    C.save_json(out, {"meta": meta, "runs": runs, "summary": summary, "targets": targets})
    print(format_table(summary, dataset))
    print()
    for t in targets:
        print(f"{'PASS' if t['pass'] else 'FAIL'}  {t['target']}  ({t['value']:+.4f})")
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
