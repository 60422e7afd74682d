"""Trainer hooks: evaluation, checkpoints, early stopping and metrics.json (the contract: ``engine.contract.Hook``)."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.engine.checkpoint import copy_checkpoint, encode_checkpoint, write_checkpoint
from robust_paddle.engine.contract import Hook
from robust_paddle.errors import ConfigError
from robust_paddle.ops import atomic_write
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


def is_better(value: float, best: float | None, *, mode: str, min_delta: float = 0.0) -> bool:
    if best is None or (isinstance(best, float) and math.isnan(best)):
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


@HOOKS.register("eval")
class EvalHook(Hook):
    """Evaluates on val and test every ``train.eval_every`` epochs (and at the last epoch)."""

    priority = 10
    name = "eval"

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.is_eval_epoch():
            trainer.evaluate_all()


@HOOKS.register("checkpoint")
class CheckpointHook(Hook):
    """Writes ``latest.pdckpt`` every epoch, ``best.pdckpt`` when the monitored metric improves, and
    ``epoch_NNN.pdckpt`` every ``train.checkpoint_every`` epochs, each atomically. The state is encoded at
    the end of the epoch; the files are written while the next epoch trains (``trainer.write_file``)."""

    priority = 50
    name = "checkpoint"

    def __init__(self) -> None:
        self.best: float | None = None
        self.best_epoch: int = -1

    def after_epoch(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        cfg = trainer.cfg.train
        ckdir = trainer.checkpoint_dir
        value = trainer.epoch_scalars.get(cfg.monitor)
        improved = value is not None and is_better(value, self.best, mode=cfg.monitor_mode)
        if improved:
            self.best, self.best_epoch = float(value), trainer.epoch
        trainer.epoch_scalars["best/" + cfg.monitor] = self.best if self.best is not None else float("nan")
        payload = encode_checkpoint(trainer.state_dict())  # includes this hook's updated state
        links = [os.path.join(ckdir, "best.pdckpt")] if improved else []
        if cfg.checkpoint_every and (trainer.epoch + 1) % cfg.checkpoint_every == 0:
            links.append(os.path.join(ckdir, f"epoch_{trainer.epoch + 1:03d}.pdckpt"))
        trainer.write_file(_write_checkpoint, payload, os.path.join(ckdir, "latest.pdckpt"), links)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch", -1)


def _write_checkpoint(payload: bytes, latest: str, links: list[str]) -> None:
    write_checkpoint(payload, latest)
    for path in links:  # the same bytes: linked, not encoded and written a second time
        copy_checkpoint(latest, path)


@HOOKS.register("early_stopping")
class EarlyStoppingHook(Hook):
    """Stops when ``train.monitor`` has not improved by ``min_delta`` for ``patience`` evaluated epochs."""

    priority = 60
    name = "early_stopping"

    def __init__(self, *, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ConfigError(f"train.early_stopping.patience must be >= 1 to enable early stopping, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.best: float | None = None
        self.bad_epochs = 0

    def after_epoch(self, trainer: Trainer) -> None:
        cfg = trainer.cfg.train
        value = trainer.epoch_scalars.get(cfg.monitor)
        if value is None:  # not an evaluation epoch
            return
        if is_better(value, self.best, mode=cfg.monitor_mode, min_delta=self.min_delta):
            self.best, self.bad_epochs = float(value), 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                logger.info("early stopping at epoch %d: %s did not improve on %.4f for %d epochs",
                            trainer.epoch + 1, cfg.monitor, self.best, self.patience)
                trainer.stop_training = True
                trainer.stopped_early_at = trainer.epoch + 1

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state.get("best"), state.get("bad_epochs", 0)


@HOOKS.register("metrics_json")
class MetricsJsonHook(Hook):
    """Writes ``metrics.json`` (final and best metrics plus the per-epoch history) after every epoch."""

    priority = 90
    name = "metrics_json"

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.is_main:  # encoded now (the history changes), written while the next epoch trains
            trainer.write_file(write_text, os.path.join(trainer.output_dir, "metrics.json"),
                               json_text(trainer.metrics_summary()))

    def after_train(self, trainer: Trainer) -> None:
        self.after_epoch(trainer)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def json_text(data: Any) -> str:
    """What :func:`write_json` writes for ``data``: JSON indented by 2, non-finite floats as null."""
    return json.dumps(_jsonable(data), indent=2)


def write_json(path: str, data: Any) -> None:
    """Write JSON atomically (non-finite floats become null)."""
    write_text(path, json_text(data))


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8).

    Raises:
        OSError: naming ``path`` (full disk, folder not writable); ``path`` keeps its old content.
    """
    try:
        with atomic_write(path) as fh:
            fh.write(text)
    except OSError as e:  # a full disk fails in write() without naming the file
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), path) from e
