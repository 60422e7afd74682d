"""``robust-paddle demo``: the clean-label oracle, CE and the robust methods on noisy digits, side by side."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from robust_paddle import config as config_mod

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
)

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "quickstart.yaml")


def run_demo(*, config_path: str | None = None, overrides: list[str] | tuple[str, ...] = (),
             out_dir: str | None = None, methods: list[str] | None = None) -> list[dict[str, Any]]:
    """Train every demo row and print a table of test accuracy; returns the rows.

    Args:
        config_path: base config (default ``configs/quickstart.yaml``).
        overrides: ``-o`` overrides applied to every row (e.g. ``train.epochs=10``).
        out_dir: parent folder of the per-row runs (default ``output/demo-<time>``).
        methods: subset of row names to run.
    """
    from robust_paddle.engine.run import train

    names = [n for n, _ in DEMO_ROWS]
    if methods is not None:
        unknown = sorted(set(methods) - set(names))
        if unknown:
            raise ValueError(f"--methods: unknown demo row(s) {', '.join(unknown)}; choose from: {', '.join(names)}")
    path = config_path or DEFAULT_CONFIG
    base = config_mod.load(path, list(overrides))
    out_dir = out_dir or os.path.join("output", time.strftime("demo-%Y%m%d-%H%M%S"))
    rows = []
    for name, values in DEMO_ROWS:
        if methods is not None and name not in methods:
            continue
        cfg = config_mod.with_values(base, {**values, "output_dir": os.path.join(out_dir, name),
                                            "train.progress": False})
        start = time.perf_counter()
        summary = train(cfg)
        final, best = summary["final"], summary["best"] or {}
        rows.append({"method": name, "test_acc": final.get("test/acc"), "best_val_acc": best.get("val/acc"),
                     "test_acc_at_best_val": best.get("test/acc"), "seconds": time.perf_counter() - start,
                     "run": cfg.output_dir})
        logger.info("demo %s: test acc %.4f", name, final.get("test/acc", float("nan")))
    print(format_table(rows, noise=f"{base.data.noise.kind} {base.data.noise.rate:.0%}", dataset=base.data.name))
    return rows


def format_table(rows: list[dict[str, Any]], *, noise: str, dataset: str) -> str:
    head = f"{dataset}, label noise {noise} (test labels are clean)\n"
    cols = f"{'method':<16} {'test acc':>9} {'test@best val':>14} {'time (s)':>9}"
    lines = [head + cols, "-" * len(cols)]
    for r in rows:
        fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else "-"  # noqa: E731
        lines.append(f"{r['method']:<16} {fmt(r['test_acc']):>9} {fmt(r['test_acc_at_best_val']):>14} {r['seconds']:>9.1f}")
    return "\n".join(lines)
