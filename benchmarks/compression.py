"""Compression on noisy labels: prune-30%, QAT, PTQ and prune+QAT of one robustly trained model.

    .venv/bin/python benchmarks/compression.py                                  # noisy digits (sym40, GCE)
    .venv/bin/python benchmarks/compression.py --dataset mnist -o data.subset=5000 --epochs 10
    .venv/bin/python benchmarks/compression.py --scenarios prune30,ptq --finetune-epochs 3

1. Train one run from the base config (``-c``, default ``configs/quickstart.yaml``: digits, 40% symmetric
   noise, GCE) with ``--method`` and ``--noise``.
2. Compress its final checkpoint once per scenario with ``robust_paddle.pipeline.commands.compress_command`` (each writes
   its own ``compress_report.json``): ``prune30`` = L1-norm filter pruning to a 30% FLOPs target from the
   sensitivity analysis (kept channels aligned to ``--align``) + ``--finetune-epochs`` epochs with the run's
   method and loss; ``qat`` = QAT int8 + ``--qat-epochs``; ``ptq`` = post-training int8 on 256 training
   images; ``prune30+qat`` = both.
3. Time every final model and the fp32 input side by side (Paddle Inference CPU predictors as deployed, int8
   programs with oneDNN int8 kernels, ``--threads`` threads): the models take turns in blocks of 20 calls so
   they share the machine's background load; wall-clock median and process-CPU-time median per call.
4. Print the table, check issue 5's targets against the fp32 input model and write
   ``benchmarks/results/compression-<dataset>.json``:

   * prune30: >= 30% of the FLOPs removed with <= 1 point test-accuracy loss after fine-tuning;
   * int8 (qat, ptq): weights file <= 0.3x the fp32 one with <= 1 point loss;
   * int8 CPU latency no worse than fp32 (batch 1 and 64, median call).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first: zlib shim)

SCENARIOS = ("prune30", "qat", "ptq", "prune30+qat")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", default=os.path.join(C.ROOT, "configs", "quickstart.yaml"),
                   help="base config (default: configs/quickstart.yaml)")
    p.add_argument("--dataset", default=None, help="data.name override, e.g. mnist")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override (repeatable), e.g. data.subset=5000")
    p.add_argument("--method", default="standard+gce", help="method spec of the trained run (default standard+gce)")
    p.add_argument("--noise", default="sym40", help="noise spec (default sym40)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    p.add_argument("--finetune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5)")
    p.add_argument("--qat-epochs", type=int, default=3, help="QAT fine-tuning epochs (default 3)")
    p.add_argument("--align", type=int, default=8, help="pruned channel counts rounded to a multiple (default 8)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per predictor (default 1)")
    p.add_argument("--rounds", type=int, default=10, help="latency: rounds of 20 calls per model (default 10)")
    p.add_argument("--int8-op-sets", default="", metavar="OPS;OPS",
                   help="also time each int8 model with only these op types quantised by oneDNN, e.g. "
                   "'conv2d;conv2d,fc' (rows '<scenario>[conv2d]'; not used for the targets)")
    p.add_argument("--workdir", default=None, help="folder for the run and compressions (default: a temp folder); "
                   "a rerun with the same folder reuses its run and compressions and only re-times them")
    p.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/compression-<dataset>.json)")
    args = p.parse_args(argv)
    bad = [s for s in C.split_list(args.scenarios) if s not in SCENARIOS]
    if bad:
        p.error(f"--scenarios: unknown {', '.join(map(repr, bad))}; choose from {', '.join(SCENARIOS)}")
    try:  # a bad override, noise or method spec stops here, not after the training run
        base = C.load_base(args)
        C.parse_noise(args.noise)
        C.check_spec(args.method, noises=[args.noise], dataset=base.data.name, epochs=args.epochs, base=base)
    except ValueError as e:  # ConfigError too
        p.error(str(e))
    return args


def stages_for(scenario: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    prune = {"name": "prune", "pruner": "l1norm", "flops_target": 0.3, "align": args.align,
             "finetune_epochs": args.finetune_epochs, "max_acc_drop": 1.0}
    qat = {"name": "qat", "finetune_epochs": args.qat_epochs, "max_acc_drop": 1.0}
    ptq = {"name": "ptq", "calibration_samples": 256, "max_acc_drop": 1.0}
    return {"prune30": [prune], "qat": [qat], "ptq": [ptq], "prune30+qat": [prune, qat]}[scenario]


def side_by_side_latency(models: dict[str, tuple], *, batch: np.ndarray, threads: int,
                         rounds: int, block: int = 20) -> dict[str, dict[str, float]]:
    """Median wall and CPU milliseconds per call of each model (``name -> (prefix, int8[, int8_ops])``),
    timed in alternating blocks."""
    from robust_paddle.deploy.predictor import PaddlePredictor

    preds = {name: PaddlePredictor(spec[0], int8=spec[1], threads=threads, int8_ops=spec[2] if len(spec) > 2 else None)
             for name, spec in models.items()}
    for p in preds.values():
        for _ in range(5):
            p(batch)
    wall: dict[str, list[float]] = {n: [] for n in preds}
    cpu: dict[str, list[float]] = {n: [] for n in preds}
    for _ in range(rounds):
        for name, p in preds.items():
            for _ in range(block):
                w0, c0 = time.perf_counter(), time.process_time()
                p(batch)
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return {n: {"wall_ms": float(np.median(wall[n]) * 1e3), "cpu_ms": float(np.median(cpu[n]) * 1e3),
                "int8_kernels": preds[n].int8_kernels} for n in preds}


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    fp32 = results["fp32"]
    checks = []
    for name, r in results["scenarios"].items():
        drop = 100 * (fp32["test_acc"] - r["test_acc"])
        if name.startswith("prune30"):
            removed = 1 - r["flops"] / fp32["flops"]
            checks.append({"scenario": name, "target": ">= 30% FLOPs removed, <= 1 pt test-accuracy loss",
                           "value": f"{100 * removed:.1f}% FLOPs removed, {drop:+.2f} pt loss",
                           "met": removed >= 0.30 - 1e-9 and drop <= 1.0})
        if r["int8"]:
            ratio = r["params_bytes"] / fp32["params_bytes"]
            if name in ("qat", "ptq"):
                checks.append({"scenario": name, "target": "weights file <= 0.3x fp32, <= 1 pt test-accuracy loss",
                               "value": f"{ratio:.3f}x, {drop:+.2f} pt loss", "met": ratio <= 0.3 and drop <= 1.0})
            for b, lat in r["latency"].items():
                base = fp32["latency"][b]
                checks.append({"scenario": name, "target": f"int8 latency <= fp32 at batch {b} (median call)",
                               "value": f"{lat['wall_ms']:.3f} vs {base['wall_ms']:.3f} ms wall, "
                                        f"{lat['cpu_ms']:.3f} vs {base['cpu_ms']:.3f} ms CPU",
                               "met": lat["wall_ms"] <= base["wall_ms"]})
    return checks


def print_table(results: dict[str, Any]) -> None:
    rows = [("fp32 (input)", results["fp32"])] + list(results["scenarios"].items())
    batches = list(results["fp32"]["latency"])
    head = ["model", "params", "FLOPs", "weights KiB", *[f"b{b} ms (cpu)" for b in batches], "test acc",
            "train acc clean", "train acc noisy"]
    print(" | ".join(head))
    for name, r in rows:
        lat = [f"{r['latency'][b]['wall_ms']:.3f} ({r['latency'][b]['cpu_ms']:.3f})" for b in batches]
        print(" | ".join([name, f"{r['params']:,}", f"{r['flops']:,}", f"{r['params_bytes'] / 1024:.1f}", *lat,
                          f"{100 * r['test_acc']:.2f}", f"{100 * r.get('train_acc_clean', float('nan')):.2f}",
                          f"{100 * r.get('train_acc_noisy', float('nan')):.2f}"]))
    for name, lat in (results.get("int8_op_sets") or {}).items():
        print(" | ".join([name, "", "", "", *[f"{lat[b]['wall_ms']:.3f} ({lat[b]['cpu_ms']:.3f})" for b in batches],
                          "", "", ""]))
    print()
    for c in results["targets"]:
        print(f"[{'met' if c['met'] else 'MISSED'}] {c['scenario']}: {c['target']}: {c['value']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from robust_paddle import config as config_mod
    from robust_paddle.compress.measure import latency_batch
    from robust_paddle.pipeline.build import load_run
    from robust_paddle.pipeline.commands import compress_command
    from robust_paddle.pipeline.run import train

    base = C.load_base(argparse.Namespace(config=args.config, override=args.override, dataset=args.dataset))
    dataset = base.data.name
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-compression-")
    run_dir = os.path.join(workdir, "run")
    values = C.run_overrides(args.method, args.noise, dataset=dataset, seed=args.seed, epochs=args.epochs)
    values.update({"train.calibration": False, "slim.threads": args.threads, "slim.latency_iters": 20})
    cfg = C.build_cfg(base, values, run_dir)
    ckpt = os.path.join(run_dir, "checkpoints", "latest.pdckpt")
    t0 = time.perf_counter()
    trained = not os.path.exists(ckpt)
    if trained:
        train(cfg)
    results: dict[str, Any] = {"environment": C.environment(), "dataset": dataset, "method": args.method,
                               "noise": args.noise, "epochs": args.epochs, "rounds": args.rounds,
                               "train_seconds": time.perf_counter() - t0 if trained else None,
                               "scenarios": {}, "reports": {}}
    models: dict[str, tuple[str, bool]] = {}
    for scenario in C.split_list(args.scenarios):
        out = os.path.join(workdir, scenario.replace("+", "_"))
        t0 = time.perf_counter()
        path = os.path.join(out, "compress_report.json")
        reused = os.path.exists(path)
        if reused:  # a rerun with the same --workdir re-times the models it already has
            with open(path, encoding="utf-8") as fh:
                report = json.load(fh)
        else:
            scfg = config_mod.with_values(cfg, {"slim.stages": stages_for(scenario, args)})
            report = compress_command(scfg, ckpt, out_dir=out, print_table=True)
            print()
        results["reports"][scenario] = {"path": path, "reused": reused,
                                        "seconds": None if reused else time.perf_counter() - t0,
                                        "stages": [{k: s[k] for k in ("name", "summary", "details", "checks")}
                                                   for s in report["stages"]]}
        final = report["final"]["stats"]
        results["scenarios"][scenario] = dict(final)
        models[scenario] = (os.path.join(report["final"]["dir"], "inference"), final["int8"])
        if "fp32" not in results:
            results["fp32"] = dict(report["input"]["stats"])
            models = {"fp32": (os.path.join(report["input"]["dir"], "inference"), False), **models}
    op_sets = [tuple(o.strip() for o in part.split(",") if o.strip()) for part in args.int8_op_sets.split(";")
               if part.strip()]
    for name, (prefix, int8) in list(models.items()):
        for ops in op_sets if int8 else ():
            models[f"{name}[{','.join(ops)}]"] = (prefix, True, ops)
    run = load_run(cfg, ckpt)
    for b in (1, 64):
        lat = side_by_side_latency(models, batch=latency_batch(run.loaders["test"], b), threads=args.threads,
                                   rounds=args.rounds)
        for name, r in lat.items():
            if "[" in name:
                results.setdefault("int8_op_sets", {}).setdefault(name, {})[str(b)] = r
                continue
            row = results["fp32"] if name == "fp32" else results["scenarios"][name]
            row.setdefault("latency", {})[str(b)] = r
    results["targets"] = check_targets(results)
    print_table(results)
    out = args.out or os.path.join(C.RESULTS, f"compression-{dataset}.json")
    C.save_json(out, results)
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
