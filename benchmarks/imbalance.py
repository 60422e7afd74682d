"""Class imbalance under label noise: minority-class recall and macro-F1 of imbalance remedies, with CE and GCE.

    .venv/bin/python benchmarks/imbalance.py                        # 3 seeds, 40 epochs, 10:1, 20% sym noise
    .venv/bin/python benchmarks/imbalance.py --seeds 1 --epochs 10  # quick look

Data: sklearn digits. A stratified 30% is held out as a balanced, clean test set; from the rest, class
``c`` keeps ``n_max * ratio^(-c / (C - 1))`` samples (a long tail from ``n_max`` down to ``n_max / ratio``
for class 9, Cui et al. 2019, https://arxiv.org/abs/1901.05555), written to an ``.npz`` the ``npz`` source
reads. Symmetric label noise (``--noise``) is injected into the training labels by the usual
``data.noise`` path, so the class counts the remedies see are the noisy ones.

Rows are remedies, columns the base loss (CE or GCE, q = 0.7, Zhang & Sabuncu 2018):

* ``none``: the plain loss;
* ``class weights``: ``loss.class_weighting: inverse`` (1 / n_c, normalised);
* ``focal``: focal modulation ``(1 - p_y)^2`` (Lin et al. 2017, https://arxiv.org/abs/1708.02002) of the
  loss: ``focal`` for CE, and for GCE ``(1 - p_y)^2 (1 - p_y^q) / q`` (``focal_gce``, defined here);
* ``weighted sampler``: ``data.sampler: weighted`` (classes drawn equally often);
* ``dividemix`` / ``dividemix_per_class`` / ``dividemix_balanced``: the digits DivideMix preset; with
  ``division: per_class`` (one loss mixture per class, no quota: an ablation); with ``class_balance: 1`` (UNICON's uniform selection, Karim et al. 2022, arXiv 2203.14542: every
  class keeps its ``min(n_c, labelled count / C)`` most probably clean samples by per-class loss mixtures);
* ``promix_global`` / ``promix``: the digits ProMix preset with ``class_balance: 0`` (the same number of smallest
  losses over the whole set) and as shipped (the paper's class-wise selection, the same per-class quota);
  method rows run in the CE column only.

Reported on the test set at the last epoch: macro-F1, accuracy, the mean recall of the 3 rarest classes
(``minority recall``) and the recall of the rarest class, as ``mean ± std`` over seeds. Prints a table and
writes ``benchmarks/results/imbalance-digits.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first: zlib shim before paddle)
from robust_paddle.losses.base import LossParams, RobustLoss  # noqa: E402
from robust_paddle.registry import LOSSES  # noqa: E402
from robust_paddle.schema import param  # noqa: E402

if TYPE_CHECKING:
    import paddle

REMEDIES = ("none", "class_weights", "focal", "weighted_sampler", "dividemix", "dividemix_per_class",
            "dividemix_balanced", "promix_global", "promix")
#: remedies that are whole methods: their own losses, so only the ``ce`` column is run for them
METHOD_REMEDIES = ("dividemix", "dividemix_per_class", "dividemix_balanced", "promix_global", "promix")
#: ``method.params`` the method remedies set over the method's digits preset
METHOD_PARAMS: dict[str, dict[str, Any]] = {"dividemix_per_class": {"division": "per_class"},
                                            "dividemix_balanced": {"class_balance": 1.0},
                                            "promix_global": {"class_balance": 0.0}}
BASES = ("ce", "gce")
N_MINORITY = 3


@LOSSES.register("focal_gce")
class FocalGCELoss(RobustLoss):
    """Focal-modulated GCE ``(1 - p_y)^gamma (1 - p_y^q) / q`` (soft targets: summed over ``t_k``); benchmark-only.

    Args:
        gamma: focusing parameter >= 0. q: GCE exponent in (0, 1].
    """

    loss_name = "focal_gce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        gamma: float = param(2.0, min=0.0, doc="focusing parameter")
        q: float = param(0.7, min=0.0, max=1.0, min_open=True, doc="GCE exponent")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None, gamma: float = 2.0, q: float = 0.7) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.gamma, self.q = float(gamma), float(q)  # checked by the registry against Params

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        import paddle
        import paddle.nn.functional as F

        log_p = F.log_softmax(logits, axis=1)
        modulation = paddle.clip(1.0 - log_p.exp(), min=1e-12) ** self.gamma
        return (target * modulation * (-paddle.expm1(self.q * log_p) / self.q)).sum(axis=1)


def make_dataset(path: str, *, ratio: float, seed: int = 0, test_fraction: float = 0.3) -> dict[str, Any]:
    """Write the long-tailed digits ``.npz`` (balanced test set) and return its class counts."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    pool, test = train_test_split(np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    n_max = min(int(np.sum(y[pool] == c)) for c in range(n_classes))
    keep, counts = [], []
    for c in range(n_classes):
        n_c = max(1, int(round(n_max * ratio ** (-c / (n_classes - 1)))))
        idx = pool[y[pool] == c]
        keep.append(rng.choice(idx, size=n_c, replace=False))
        counts.append(n_c)
    train = np.sort(np.concatenate(keep))
    np.savez(path, x=x[train], y=y[train], x_test=x[test], y_test=y[test],
             class_names=np.array([str(c) for c in range(n_classes)]))
    return {"train_counts": counts, "test_size": int(len(test))}


def run_overrides(remedy: str, base: str) -> dict[str, Any]:
    values: dict[str, Any] = {"loss.name": base, "loss.params": {"q": 0.7} if base == "gce" else {}}
    if remedy == "class_weights":
        values["loss.class_weighting"] = "inverse"
    elif remedy == "focal":
        values.update({"loss.name": "focal" if base == "ce" else "focal_gce",
                       "loss.params": {"gamma": 2.0} if base == "ce" else {"gamma": 2.0, "q": 0.7}})
    elif remedy == "weighted_sampler":
        values["data.sampler"] = "weighted"
    elif remedy in METHOD_REMEDIES:  # the method's digits preset, with the remedy's class_balance
        method = remedy.split("_")[0]
        values = {**C.method_preset(method, "digits"), "loss.name": "ce", "loss.params": {}}
        params = dict(values.get("method.params") or {})
        values["method.params"] = {**params, **METHOD_PARAMS.get(remedy, {})}
    return values


def run_one(base_cfg: Any, remedy: str, loss: str, seed: int, epochs: int, noise: float, workdir: str,
            minority: list[int]) -> dict[str, Any]:
    from robust_paddle.pipeline.run import train

    values = {"seed": seed, "train.epochs": epochs, "data.noise.kind": "symmetric" if noise > 0 else "none",
              "data.noise.rate": noise, "train.calibration": False, **C.QUIET, **run_overrides(remedy, loss)}
    cfg = C.build_cfg(base_cfg, values, os.path.join(workdir, f"{remedy}-{loss}-s{seed}"))
    start = time.perf_counter()
    summary = train(cfg)
    test = summary["eval"]["test"]
    recall = np.asarray(test["per_class_recall"])
    return {"remedy": remedy, "loss": loss, "seed": seed, "test_acc": test["acc"], "macro_f1": test["macro_f1"],
            "minority_recall": float(recall[minority].mean()), "rarest_recall": float(recall[minority[-1]]),
            "per_class_recall": recall.tolist(), "seconds": time.perf_counter() - start}


def table(runs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    cells: dict[str, Any] = {}
    lines = [f"{'remedy':<20}{'loss':<6}{'macro-F1 %':>15}{'minority recall %':>20}{'rarest recall %':>18}"
             f"{'accuracy %':>15}"]
    for remedy in REMEDIES:
        for loss in BASES:
            rs = [r for r in runs if r["remedy"] == remedy and r["loss"] == loss]
            if not rs:
                continue
            cell = {k: C.mean_std([r[k] for r in rs]) for k in ("macro_f1", "minority_recall", "rarest_recall",
                                                                  "test_acc")}
            cells[f"{remedy}|{loss}"] = {k: {"mean": m, "std": s} for k, (m, s) in cell.items()} | {"n": len(rs)}
            lines.append(f"{remedy:<20}{loss:<6}{C.fmt_ms(*cell['macro_f1']):>15}"
                         f"{C.fmt_ms(*cell['minority_recall']):>20}{C.fmt_ms(*cell['rarest_recall']):>18}"
                         f"{C.fmt_ms(*cell['test_acc']):>15}")
    return "\n".join(lines), cells


def merge(paths: list[str], out: str) -> int:
    """Combine results files of the same setting (one process per remedy or seed) into one table and JSON."""
    parts = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            parts.append(json.load(fh))
    keys = ("ratio", "noise", "epochs", "data", "minority_classes")
    for path, part in zip(paths[1:], parts[1:]):
        for k in keys:
            if part.get(k) != parts[0].get(k):
                raise SystemExit(f"--merge: {path} has {k}={part.get(k)!r}, {paths[0]} has {parts[0].get(k)!r}; "
                                 "only runs of the same setting combine")
    runs = [r for part in parts for r in part["runs"]]
    text, cells = table(runs)
    seeds = sorted({r["seed"] for r in runs})
    C.save_json(out, {"benchmark": "imbalance", **{k: parts[0][k] for k in keys}, "seeds": seeds, "cells": cells,
                      "runs": runs, "merged_from": [os.path.basename(p) for p in paths],
                      "environments": [part.get("environment") for part in parts]})
    print(f"digits, {parts[0]['ratio']:g}:1 long tail, {parts[0]['noise']:.0%} symmetric noise, "
          f"{parts[0]['epochs']} epochs, seeds {seeds}; minority = classes {parts[0]['minority_classes']}\n")
    print(text)
    print(f"\nwritten {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratio", type=float, default=10.0, help="largest / smallest class count (default 10)")
    p.add_argument("--noise", type=float, default=0.2, help="symmetric label-noise rate (default 0.2)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..n-1 (default 3)")
    p.add_argument("--epochs", type=int, default=40, help="epochs per run (default 40)")
    p.add_argument("--remedies", default=",".join(REMEDIES), help=f"subset of {','.join(REMEDIES)}")
    p.add_argument("--losses", default=",".join(BASES), help="subset of ce,gce")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run, e.g. model.name=mlp")
    p.add_argument("--workdir", default=None, help="folder for the runs (default: a temp folder)")
    p.add_argument("--out", default=os.path.join(C.RESULTS, "imbalance-digits.json"), help="results JSON")
    p.add_argument("--merge", default=None, metavar="JSON,JSON,...",
                   help="run nothing: combine the runs of these results files (same ratio, noise, epochs), e.g. of "
                        "one process per remedy, into one table and --out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.merge:
        return merge(C.split_list(args.merge), args.out)
    remedies, losses = C.split_list(args.remedies), C.split_list(args.losses)
    for r in remedies:
        if r not in REMEDIES:
            p.error(f"--remedies: {r!r} is not one of {', '.join(REMEDIES)}")
    for b in losses:
        if b not in BASES:
            p.error(f"--losses: {b!r} is not one of {', '.join(BASES)}")
    workdir = args.workdir or tempfile.mkdtemp(prefix="robust_paddle_imbalance_")
    os.makedirs(workdir, exist_ok=True)
    npz = os.path.join(workdir, "digits_longtail.npz")
    data_info = make_dataset(npz, ratio=args.ratio)
    counts = np.asarray(data_info["train_counts"])
    minority = [int(c) for c in np.argsort(counts, kind="stable")[:N_MINORITY][::-1]]  # rarest last
    base = C.config_mod.load(os.path.join(C.ROOT, "configs", "_base_", "digits.yaml"),
                             ["data.name=npz", f"data.path={npz}", "data.test_split=0.0"] + args.override)
    runs = []
    for seed in range(args.seeds):
        for remedy in remedies:
            for loss in losses:
                if remedy in METHOD_REMEDIES and loss != "ce":
                    continue
                runs.append(run_one(base, remedy, loss, seed, args.epochs, args.noise, workdir, minority)
                            | {"uptime": C.uptime()})
                r = runs[-1]
                print(f"  {remedy:<16} {loss:<4} seed {seed}: macro-F1 {r['macro_f1']:.3f}, minority recall "
                      f"{r['minority_recall']:.3f} ({r['seconds']:.0f}s)", flush=True)
                text, cells = table(runs)
                C.save_json(args.out, {"benchmark": "imbalance", "ratio": args.ratio, "noise": args.noise,
                                       "epochs": args.epochs, "seeds": args.seeds, "data": data_info,
                                       "minority_classes": minority, "cells": cells, "runs": runs,
                                       "environment": C.environment()})
    print(f"\ndigits, {args.ratio:g}:1 long tail (train counts {counts.tolist()}), {args.noise:.0%} symmetric "
          f"noise, {args.epochs} epochs, {args.seeds} seed(s); minority = classes {minority}\n")
    print(text)
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
