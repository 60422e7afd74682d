"""VisualDL logging hook. VisualDL is imported only when the hook is used."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.engine.hooks import Hook
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


def _log_writer(logdir: str) -> Any:
    try:
        from visualdl import LogWriter
    except ImportError as e:  # pragma: no cover - visualdl is a core dependency
        raise ImportError("VisualDL logging needs visualdl: pip install visualdl==2.5.3 "
                          "(or set train.visualdl=false)") from e
    return LogWriter(logdir=logdir)


@HOOKS.register("visualdl")
class VisualDLHook(Hook):
    """Writes scalars (every loss term, learning rate, metrics) and histograms to ``<run>/vdl``.

    Step scalars go under ``train_step/<term>`` every ``train.log_every`` optimizer steps; epoch scalars
    (``train/<term>`` epoch means, ``val/*``, ``test/*``, method scalars such as ``select/precision``)
    at each epoch end; ``trainer.epoch_histograms`` as histograms; the final metrics as hparams.
    """

    priority = 80
    name = "visualdl"

    def __init__(self) -> None:
        self.writer: Any = None

    def before_train(self, trainer: Trainer) -> None:
        if trainer.is_main:
            self.writer = _log_writer(os.path.join(trainer.output_dir, "vdl"))

    def after_step(self, trainer: Trainer, terms: dict[str, float]) -> None:
        if self.writer is None or trainer.global_step % trainer.cfg.train.log_every:
            return
        for k, v in terms.items():
            self.writer.add_scalar(tag=f"train_step/{k}", value=float(v), step=trainer.global_step)
        self.writer.add_scalar(tag="train_step/lr", value=trainer.current_lr(), step=trainer.global_step)

    def after_epoch(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        step = trainer.epoch + 1
        for k, v in trainer.epoch_scalars.items():
            if k != "epoch" and v is not None and np.isfinite(v):
                self.writer.add_scalar(tag=k, value=float(v), step=step)
        for k, values in trainer.epoch_histograms.items():
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if values.size:
                self.writer.add_histogram(tag=k, values=values, step=step, buckets=30)
        self.writer.flush()

    def after_train(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        cfg = trainer.cfg
        hparams = {"method": cfg.method.name, "loss": cfg.loss.name, "model": cfg.model.name,
                   "noise": f"{cfg.data.noise.kind}-{cfg.data.noise.rate}", "lr": cfg.optimizer.lr,
                   "epochs": cfg.train.epochs, "seed": cfg.seed}
        final = {k: float(v) for k, v in trainer.last_eval_scalars().items() if np.isfinite(v)}
        if final:
            self.writer.add_hparams(hparams_dict=hparams, metrics_list=sorted(final))
            for k, v in final.items():  # hparams metrics are read from the scalar of the same tag
                self.writer.add_scalar(tag=k, value=v, step=trainer.epoch + 1)
        self.close()

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
