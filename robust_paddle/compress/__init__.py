"""Model compression with PaddleSlim: filter pruning, quantisation-aware training and post-training
quantisation, each with robust fine-tuning where it trains, an exported Paddle Inference model and a
before/after report. See ``docs/compression.md``.

``robust-paddle compress -c CFG --checkpoint P --out DIR`` calls ``pipeline.commands.compress_command``
(which hands the loaded run to :func:`compress_run`); the ``compress`` hook (``train.hooks: [{name:
compress}]``, also in ``pipeline.commands``) runs the same stages right after training.

Only :mod:`robust_paddle.compress.spec` (no paddle, no paddleslim) is imported with this package, because the
config validates ``slim.stages`` through it; the stage runners load on first use (PEP 562 ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

from robust_paddle.compress.spec import (
    PRUNERS,
    PruneStage,
    PTQStage,
    QATStage,
    Stage,
    parse_stage,
    parse_stages,
)

#: public name -> submodule that defines it
_LAZY = {"compress_run": "command", "prepare_compress": "command", "CompressionCheckError": "command",
         "REPORT_FILE": "command", "prune_network": "prune", "build_qat": "quant", "quantize_post_static": "quant",
         "finetune": "finetune", "measure_model": "measure",
         "import_paddleslim": "backend"}

__all__ = ["PRUNERS", "PruneStage", "PTQStage", "QATStage", "Stage", "parse_stage", "parse_stages", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"robust_paddle.compress.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'robust_paddle.compress' has no attribute {name!r}")
