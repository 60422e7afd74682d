"""Noise-rate estimators against the truth: which one the label-issue report should state.

    .venv/bin/python benchmarks/noise_rate.py                         # digits grid (about 15 min, 2 cores)
    .venv/bin/python benchmarks/noise_rate.py --methods standard+gce --noises sym40 --seeds 1 --epochs 10

For every method, noise setting and seed: one training run on the noisy digits with the method's shipped
preset, then its label-issue report (``quality/report.py``), which computes every estimator of
``quality/noise_rate.py`` from the final model plus the default estimator's bootstrap interval. Recorded per
estimator: the absolute error against the realised noise rate of the training split; per run: whether the
default estimator's interval covers the truth. The table prints the mean absolute error of each estimator
per cell and over the grid; ``noise_rate.DEFAULT_ESTIMATOR`` should be the grid's best. Writes
``benchmarks/results/noise_rate-<dataset>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402

DEFAULT_METHODS = "standard+ce,standard+gce,gmm_correction,dividemix"
DEFAULT_NOISES = "sym20,sym40,pair45"


def run_setting(base: Any, method: str, noise: str, seed: int, *, epochs: int, workdir: str,
                dataset: str) -> dict[str, Any]:
    from robust_paddle.pipeline.run import train

    values = C.run_overrides(method, noise, dataset=dataset, seed=seed, epochs=epochs)
    out = C.cell_dir(workdir, method, noise, seed)
    cfg = C.build_cfg(base, {**values, "train.report": True}, out)
    summary = train(cfg)
    with open(os.path.join(out, "label_issues_summary.json"), encoding="utf-8") as fh:
        rep = json.load(fh)
    truth = rep["true_noise_rate"]
    lo, hi = rep["noise_rate_interval"]
    return {"method": method, "noise": noise, "seed": seed, "true_noise_rate": truth,
            "test_acc": summary.get("final", {}).get("test/acc"),
            "estimates": rep["noise_rate_estimators"],
            "abs_error": {k: abs(v - truth) for k, v in rep["noise_rate_estimators"].items()},
            "default": rep["noise_rate_estimator"], "interval": [lo, hi], "covered": lo <= truth <= hi}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    names = sorted({k for r in runs for k in r["abs_error"]})
    for key in sorted({(r["method"], r["noise"]) for r in runs}):
        rs = [r for r in runs if (r["method"], r["noise"]) == key]
        cells[f"{key[0]}|{key[1]}"] = {
            "n": len(rs), "true_noise_rate": C.mean_std([r["true_noise_rate"] for r in rs]),
            "abs_error": {k: C.mean_std([r["abs_error"][k] for r in rs if k in r["abs_error"]]) for k in names},
            "covered": sum(r["covered"] for r in rs)}
    grid = {k: C.mean_std([r["abs_error"][k] for r in runs if k in r["abs_error"]])[0] for k in names}
    return {"cells": cells, "grid_mean_abs_error": grid, "best": min(grid, key=grid.get) if grid else None,
            "covered": sum(r["covered"] for r in runs), "runs": len(runs)}


def format_table(summary: dict[str, Any], dataset: str) -> str:
    names = list(summary["grid_mean_abs_error"])
    w = max([28, *(len(k) + 2 for k in summary["cells"])])  # a spec with a :key=value tail may be longer
    cols = f"{'method | noise':<{w}}{'true rate':>10}" + "".join(f"{n:>17}" for n in names) + f"{'CI covers':>11}"
    lines = [f"{dataset}: noise-rate estimators, mean absolute error (points, over seeds)", cols, "-" * len(cols)]
    for key, cell in summary["cells"].items():
        row = f"{key:<{w}}{100 * cell['true_noise_rate'][0]:>10.1f}"
        row += "".join(f"{100 * cell['abs_error'][n][0]:>17.1f}" for n in names)
        covers = f"{cell['covered']}/{cell['n']}"
        lines.append(row + f"{covers:>11}")
    lines.append(f"{'grid':<{w}}{'':>10}" + "".join(f"{100 * summary['grid_mean_abs_error'][n]:>17.1f}" for n in names)
                 + f"{str(summary['covered']) + '/' + str(summary['runs']):>11}")
    lines.append(f"best estimator on this grid: {summary['best']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    C.add_common_args(p, config=os.path.join(C.ROOT, "configs", "_base_", "digits.yaml"), noises=DEFAULT_NOISES,
                      seeds=2, epochs=20)
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated method specs (default: "
                   f"{DEFAULT_METHODS})")
    args = p.parse_args(argv)
    base, methods, noises, out, runs = C.start(
        args, name="noise_rate", methods=C.split_list(args.methods), parser=p,
        resumable=lambda old: old["runs"] if old["meta"]["epochs"] == args.epochs else [])
    from robust_paddle.quality.noise_rate import DEFAULT_ESTIMATOR

    dataset = base.data.name
    done = {(r["method"], r["noise"], r["seed"]) for r in runs}
    meta = {"dataset": dataset, "config": args.config, "overrides": args.override, "epochs": args.epochs,
            "seeds": args.seeds, "methods": methods, "noises": noises, "default_estimator": DEFAULT_ESTIMATOR,
            "uptime": os.popen("uptime").read().strip(), "environment": C.environment()}
    plan = [(m, nz, s) for s in range(args.seeds) for nz in noises for m in methods]
    with tempfile.TemporaryDirectory(prefix="bench_rate_") as tmp:
        for i, (m, nz, s) in enumerate(plan):
            if (m, nz, s) in done:
                continue
            r = run_setting(base, m, nz, s, epochs=args.epochs, workdir=args.workdir or tmp, dataset=dataset)
            runs.append(r)
            print(f"[{i + 1}/{len(plan)}] {m} {nz} seed {s}: true {r['true_noise_rate']:.3f} "
                  + " ".join(f"{k} {v:.3f}" for k, v in r["estimates"].items())
                  + f"; interval {r['interval'][0]:.3f}-{r['interval'][1]:.3f} covered={r['covered']}", flush=True)
            C.save_json(out, {"meta": meta, "runs": runs, "summary": summarise(runs)})
    summary = summarise(runs)
    meta["uptime_end"] = os.popen("uptime").read().strip()
    C.save_json(out, {"meta": meta, "runs": runs, "summary": summary})
    print(format_table(summary, dataset))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
