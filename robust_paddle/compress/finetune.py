"""Robust fine-tuning of compressed networks: the run's own method and loss, continued after its last epoch.

Fine-tuning during compression still sees the noisy training labels, so it must not fall back to plain
cross-entropy. :func:`finetune` puts the method whose networks were pruned or quantised in place (GCE,
Co-teaching's small-loss selection, the GMM division of DivideMix-style methods ...) into a fresh
:class:`~robust_paddle.engine.trainer.Trainer`:

* a new optimizer (``optimizer`` section) over ``method.parameters()``: pruning changed the parameter shapes
  and QAT wrapped the layers, so the checkpoint's optimizer state no longer applies;
* a new schedule (``scheduler`` section, no warm-up) from the stage's learning rate over the fine-tuning
  epochs, stepping as ``scheduler.by`` says;
* epochs numbered after the checkpoint's (``E .. E + n - 1``), so epoch-dependent methods stay past their
  warm-up and ramps (DivideMix divides with its GMM every epoch, Co-teaching keeps its final forget rate);
* float32 (``train.amp`` off): the fake-quant and pruned layers are trained in full precision;
* hooks: evaluation each epoch and ``metrics.json`` in the stage folder (no checkpoints: the compressed
  network is saved as an inference model by the stage).
"""

from __future__ import annotations

import logging
from typing import Any

from robust_paddle import config as config_mod
from robust_paddle.engine.hooks import EvalHook, MetricsJsonHook
from robust_paddle.engine.trainer import Trainer
from robust_paddle.optim import build_optimizer, build_scheduler

logger = logging.getLogger(__name__)


def finetune_lr(cfg: config_mod.Config, lr: float | None) -> float:
    """The stage's learning rate, or ``0.1 * optimizer.lr``."""
    return float(lr) if lr is not None else 0.1 * float(cfg.optimizer.lr)


def finetune(run: Any, *, start_epoch: int, epochs: int, lr: float, output_dir: str,
             meta: dict[str, Any]) -> dict[str, Any]:
    """Train ``run.method`` (networks already compressed in place) for ``epochs`` more epochs.

    Args:
        run: an ``engine.run.Run`` (its cfg, data, method and loaders are used).
        start_epoch: epochs the checkpoint had completed; fine-tuning epochs continue from there.
        epochs: fine-tuning epochs (0 returns at once).
        lr: peak learning rate of the fine-tuning schedule.
        output_dir: stage folder (``metrics.json`` with the fine-tuning history).
        meta: model metadata for the trainer (num_classes, input_shape, class names ...).

    Returns:
        ``{"epochs", "lr", "start_epoch", "final"}``; ``final`` holds the last epoch's train/val/test scalars.
    """
    if epochs == 0:
        return {"epochs": 0, "lr": lr, "start_epoch": start_epoch, "final": {}}
    cfg = run.cfg
    ft_cfg = config_mod.with_values(cfg, {"train.epochs": start_epoch + epochs, "train.amp": "none",
                                          "scheduler.warmup_epochs": 0.0})
    loaders = run.loaders
    steps = max(1, -(-len(loaders["train"]) // cfg.train.accumulate_steps))
    scheduler = build_scheduler(ft_cfg.scheduler, base_lr=lr, epochs=epochs,
                                steps_per_epoch=steps)
    optimizer = build_optimizer(cfg.optimizer, run.method.parameters(), learning_rate=scheduler)
    trainer = Trainer(ft_cfg, run.method, loaders, optimizer=optimizer, scheduler=scheduler,
                      hooks=[EvalHook(), MetricsJsonHook()], output_dir=output_dir, meta=meta, data=run.data)
    trainer.start_epoch = trainer.epoch = int(start_epoch)
    logger.info("fine-tuning %d epoch(s) with method %r and loss %r at lr %g", epochs, cfg.method.name,
                cfg.loss.name, lr)
    summary = trainer.fit()
    final = {k: v for k, v in summary["final"].items() if isinstance(v, (int, float))}
    return {"epochs": epochs, "lr": lr, "start_epoch": int(start_epoch), "final": final}
