"""Checkpoint I/O: the safetensors + JSON format (format 2) against ``paddle.save`` pickles (format 1).

The state is what the trainer saves for a resnet18_cifar run (networks, SGD momentum, scheduler, history,
config): 11.2 M parameters at the default width. Save and load alternate between the formats, ``--reps``
rounds each, so both share the machine's load; the table gives the median seconds and the file size.

    .venv/bin/python benchmarks/checkpoint_io.py            # ~1 min on 2 shared vCPUs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np

from robust_paddle.engine.checkpoint import load_checkpoint, save_checkpoint
from robust_paddle.models import build_model

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "checkpoint_io.json")


def make_state(width: int) -> dict:
    import paddle  # after robust_paddle (its zlib preload must come first)

    net = build_model("resnet18_cifar", num_classes=10, input_shape=(3, 32, 32), width=width)
    opt = paddle.optimizer.Momentum(learning_rate=0.1, parameters=net.parameters())
    loss = net(paddle.randn([2, 3, 32, 32])).mean()
    loss.backward()
    opt.step()
    return {"format": 1, "epoch": 3, "global_step": 300, "networks": {"net": net.state_dict()},
            "optimizer": opt.state_dict(), "scheduler": {"last_epoch": 300, "last_lr": 0.05},
            "method": {"divisions": {0: np.arange(50_000) % 2 == 0}},
            "history": [{"epoch": i, "val/acc": 0.5} for i in range(3)], "config": {"seed": 42},
            "meta": {"num_classes": 10}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    import paddle

    state = make_state(args.width)
    n_params = sum(int(np.prod(v.shape)) for v in state["networks"]["net"].values())
    times: dict[str, list[float]] = {k: [] for k in ("save safetensors", "save pickle", "load safetensors",
                                                     "load pickle (weights-only)", "load pickle (paddle.load)")}
    with tempfile.TemporaryDirectory() as tmp:
        st, pk = os.path.join(tmp, "a.pdckpt"), os.path.join(tmp, "b.pdckpt")
        for _ in range(args.reps):
            for name, fn in (("save safetensors", lambda: save_checkpoint(state, st)),
                             ("save pickle", lambda: paddle.save(state, pk)),
                             ("load safetensors", lambda: load_checkpoint(st)),
                             ("load pickle (weights-only)", lambda: load_checkpoint(pk)),
                             ("load pickle (paddle.load)", lambda: paddle.load(pk))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        sizes = {"safetensors": os.path.getsize(st), "pickle": os.path.getsize(pk)}
    rows = {k: statistics.median(v) for k, v in times.items()}
    print(f"resnet18_cifar width {args.width}: {n_params / 1e6:.1f} M parameters; files: safetensors "
          f"{sizes['safetensors'] / 1e6:.1f} MB, pickle {sizes['pickle'] / 1e6:.1f} MB; load average "
          f"{os.getloadavg()[0]:.1f}")
    print("| operation | median s |\n|---|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:.3f} |")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as fh:
        json.dump({"params": n_params, "width": args.width, "reps": args.reps, "sizes_bytes": sizes,
                   "median_s": rows, "all_s": times, "loadavg": os.getloadavg()}, fh, indent=2)


if __name__ == "__main__":
    main()
