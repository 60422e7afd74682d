"""Data-parallel training throughput: samples/s with 1 vs N processes under ``paddle.distributed.launch``.

    .venv/bin/python benchmarks/distributed.py                      # CPU (gloo): 1 and 2 processes
    .venv/bin/python benchmarks/distributed.py --devices 0,1,2,3    # GPUs (NCCL): 1, 2 and 4 GPUs
    .venv/bin/python benchmarks/distributed.py --methods standard --epochs 2 -o model.name=mlp   # quick look

Every cell launches the real training path (``engine.run.build_run(distributed=True)``: DataParallel
networks, sharded global batches, gathered per-sample passes) through Paddle's launcher, with one extra
hook that times each epoch on rank 0; evaluation, checkpoints, VisualDL and the report are off so only
training is timed. ``data.batch_size`` is the global batch, so every cell trains on the same batches.

Columns (the first epoch is left out as warm-up; medians over the other epochs):

* ``train samples/s``: training samples / time of the epoch's optimizer steps (forward, backward,
  all-reduce, update);
* ``epoch samples/s``: the same over the whole epoch including the method's per-epoch passes (DivideMix's
  GMM division: a sharded loss pass, an all-gather and the mixture fit);
* ``speedup``: over 1 process of the same method.

On CPU each process runs ``--threads`` OpenMP threads (default 1: one core per process, the scaling a
process adds when there are free cores; ``--threads 0`` splits ``cpu_count`` evenly so every cell uses the
same cores). Results: ``benchmarks/results/distributed-<cpu|gpu>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first: zlib shim before paddle)

#: cheap, comparable runs: no evaluation, checkpoints, VisualDL, report or calibration
QUIET = ["train.progress=false", "train.visualdl=false", "train.report=false", "train.calibration=false",
         "train.checkpoint_every=0", "train.eval_every=1000"]
#: method -> (config, overrides) of a benchmark cell
METHODS = {
    "standard": ("configs/quickstart.yaml", []),
    "dividemix": ("configs/dividemix/digits.yaml", ["method.params.warmup_epochs=1"]),
}


# ------------------------------------------------------------------------------------------- worker
def worker(cfg_path: str, overrides: list[str], result: str) -> None:
    """Run inside each launched process: train with a timing hook; rank 0 writes ``result``."""
    from robust_paddle import config as config_mod
    from robust_paddle.engine import distributed as dist
    from robust_paddle.pipeline.build import build_run

    cfg = config_mod.load(cfg_path, overrides)
    distributed = dist.init(cpu=cfg.train.device == "cpu")
    timer = C.epoch_timer()
    run = build_run(cfg, output_dir=cfg.output_dir, hooks=[timer], distributed=distributed)
    run.trainer.fit()
    if dist.is_main():
        C.save_json(result, {"world_size": dist.world_size(), "n_train": len(run.data.train),
                             "batches": len(run.loaders["train"]), "epochs": timer.rows,
                             "device": run.trainer.method.parameters()[0].place.__str__()})


# ------------------------------------------------------------------------------------------- driver
def launch(nprocs: int, cfg_path: str, overrides: list[str], *, workdir: str, threads: int,
           devices: list[str] | None) -> dict[str, Any]:
    """One benchmark cell through ``python -m paddle.distributed.launch``; returns the worker's result."""
    tag = f"{os.path.basename(os.path.dirname(cfg_path))}-{nprocs}-{time.time_ns()}"
    result, log_dir = os.path.join(workdir, f"{tag}.json"), os.path.join(workdir, f"{tag}-log")
    where = ["--devices", ",".join(devices[:nprocs])] if devices else ["--nproc_per_node", str(nprocs)]
    cmd = [sys.executable, "-m", "paddle.distributed.launch", *where, "--log_dir", log_dir,
           os.path.abspath(__file__), "--worker", result, "-c", cfg_path]
    for o in overrides + [f"output_dir={os.path.join(workdir, tag)}"]:
        cmd += ["-o", o]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(result):
        tail = "".join(open(os.path.join(log_dir, f), encoding="utf-8", errors="replace").read()[-2000:]
                       for f in sorted(os.listdir(log_dir)) if f.startswith("workerlog")) if os.path.isdir(log_dir) else ""
        raise RuntimeError(f"launch of {nprocs} process(es) failed ({proc.returncode}):\n{proc.stderr[-2000:]}\n{tail}")
    with open(result, encoding="utf-8") as fh:
        return json.load(fh)


def summarize(res: dict[str, Any]) -> dict[str, float]:
    rows = res["epochs"][1:] or res["epochs"]  # the first epoch warms up (allocations, the first GMM fit)
    n = res["n_train"]
    return {"train_samples_per_s": n / statistics.median(r["train_s"] for r in rows),
            "epoch_samples_per_s": n / statistics.median(r["epoch_s"] for r in rows),
            "timed_epochs": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", metavar="RESULT_JSON", help=argparse.SUPPRESS)
    p.add_argument("-c", "--config", help=argparse.SUPPRESS)
    p.add_argument("--methods", default="standard,dividemix", help=f"subset of {', '.join(METHODS)}")
    p.add_argument("--procs", default="1,2", help="process counts (default 1,2)")
    p.add_argument("--devices", default=None, help="GPU ids, e.g. 0,1: one process per GPU (NCCL)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per cell; the first is not timed (default 4)")
    p.add_argument("--batch-size", type=int, default=128, help="global batch (default 128)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads per process (default 1; 0 = cpu_count // processes)")
    p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every cell, e.g. model.name=mlp")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/distributed-<cpu|gpu>.json)")
    args = p.parse_args(argv)
    bad = [m for m in C.split_list(args.methods) if m not in METHODS]
    if bad:  # before the first launch
        p.error(f"--methods: unknown {', '.join(map(repr, bad))}; choose from {', '.join(METHODS)}")
    if args.worker:
        worker(args.config, args.override, args.worker)
        return 0

    devices = C.split_list(args.devices) if args.devices else None
    procs = [int(v) for v in C.split_list(args.procs)]
    if devices and max(procs) > len(devices):
        raise SystemExit(f"--procs {args.procs} asks for more processes than --devices {args.devices}")
    kind = "gpu" if devices else "cpu"
    base = [*QUIET, f"train.epochs={args.epochs}", f"data.batch_size={args.batch_size}", f"train.device={kind}"]
    cells, rows = [], []
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as workdir:
        for method in C.split_list(args.methods):
            cfg_rel, extra = METHODS[method]
            one = None
            for n in procs:
                threads = args.threads or max(1, (os.cpu_count() or 1) // n)  # 0: split the cores
                res = launch(n, os.path.join(C.ROOT, cfg_rel), base + extra + args.override, workdir=workdir,
                             threads=threads, devices=devices)
                s = summarize(res)
                one = s if n == procs[0] else one
                cell = {"method": method, "processes": n, "threads_per_process": threads, **s,
                        "speedup": s["train_samples_per_s"] / one["train_samples_per_s"],
                        "epoch_speedup": s["epoch_samples_per_s"] / one["epoch_samples_per_s"], "raw": res}
                cells.append(cell)
                rows.append(f"| {method} | {n} | {threads} | {s['train_samples_per_s']:,.0f} | "
                            f"{s['epoch_samples_per_s']:,.0f} | {cell['speedup']:.2f}x | {cell['epoch_speedup']:.2f}x |")
                print(rows[-1], flush=True)
    print("\n| method | processes | threads/process | train samples/s | epoch samples/s | speedup | epoch speedup |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    out = args.out or os.path.join(C.RESULTS, f"distributed-{kind}.json")
    C.save_json(out, {"environment": C.environment(), "args": vars(args), "overrides": base + args.override,
                      "cells": cells})
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
