"""The ``compress`` hook: run the config's ``slim.stages`` on the final checkpoint right after training.

Enable it with ``train.hooks: [{name: compress}]`` (options: ``checkpoint: latest | best``, ``out``: folder
relative to the run folder, default ``compressed``). It runs after every built-in hook (the checkpoint and
``metrics.json`` are written by then), on the main process only, and calls
:func:`robust_paddle.compress.command.compress_command`, so the result is exactly what ``robust-paddle compress
-c <run>/config.yaml --checkpoint <run>/checkpoints/<checkpoint>.pdckpt --out <run>/<out>`` writes.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from robust_paddle.engine.hooks import Hook
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

CHECKPOINTS = ("latest", "best")


@HOOKS.register("compress")
class CompressHook(Hook):
    """Compresses the run's ``checkpoint`` (``latest`` or ``best``) into ``<output_dir>/<out>`` after training.

    Args:
        checkpoint: which checkpoint of the run to compress.
        out: output folder, relative to the run folder (or absolute).
    """

    priority = 95
    name = "compress"

    def __init__(self, *, checkpoint: str = "latest", out: str = "compressed") -> None:
        if checkpoint not in CHECKPOINTS:
            raise ValueError(f"train.hooks compress.checkpoint: {checkpoint!r} is not allowed; choose one of: "
                             f"{', '.join(CHECKPOINTS)}")
        if not isinstance(out, str) or not out:
            raise ValueError(f"train.hooks compress.out: expected a folder name, got {out!r}")
        self.checkpoint, self.out = checkpoint, out
        self.report: dict[str, Any] | None = None

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.cfg.slim.stages:
            raise ValueError("train.hooks has the 'compress' hook but slim.stages is empty; add stages, e.g. "
                             "slim: {stages: [{name: prune, ratio: 0.3}, {name: qat}]}")

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        from robust_paddle.compress.command import compress_command

        path = os.path.join(trainer.checkpoint_dir, f"{self.checkpoint}.pdckpt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"compress hook: {path} was not written; keep the checkpoint hook enabled")
        out = self.out if os.path.isabs(self.out) else os.path.join(trainer.output_dir, self.out)
        logger.info("compressing %s into %s", path, out)
        self.report = compress_command(trainer.cfg, path, out_dir=out)
