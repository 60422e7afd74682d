"""Starting weights and fine-tuning schedule of a run: ``model.pretrained`` / ``model.download``,
``train.init_from`` (warm start), ``model.freeze_epochs`` and ``optimizer.backbone_lr_mult``.

* ``model.pretrained``: every network of the method is loaded from the file, partially (see
  ``robust_paddle.models.pretrained``); the key table goes to ``<run>/pretrained_keys.txt``. Two-network
  methods start both networks from the same backbone; their heads are re-initialised independently.
* ``train.init_from``: a previous run (folder or checkpoint) of the same classes; its networks are loaded
  strictly (every key, every shape), nothing else: the optimizer, the schedule, the epoch counter and the
  method's per-sample state start afresh -- continue training on new or corrected data. ``--resume``, by
  contrast, restores everything and continues the same run.
* ``model.freeze_epochs``: for the first E epochs only the classifier head trains (the backbone's parameters
  get no gradient; batch-norm statistics still update); then everything.
* ``optimizer.backbone_lr_mult``: the backbone's learning rate is ``lr * mult`` (Paddle's per-parameter
  ``optimize_attr['learning_rate']``, which every optimizer here honours), the head's ``lr``; both are logged
  each epoch as ``lr/backbone`` and ``lr/head`` (VisualDL scalars).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import paddle

from robust_paddle.engine.hooks import Hook
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.models.pretrained import load_pretrained, save_reports, split_parameters, zoo_weights

logger = logging.getLogger(__name__)


def init_weights(cfg: Any, method: Any, data: Any, *, out_dir: str | None) -> list:
    """Load the run's starting weights into ``method.networks`` (nothing when none is configured).

    Returns:
        the :class:`~robust_paddle.models.pretrained.LoadReport` list (``model.pretrained``), else [].

    Raises:
        ConfigError: ``train.init_from`` together with ``model.pretrained`` / ``model.download``.
        CheckpointError, FileNotFoundError: unreadable or mismatching weights (names the file).
    """
    m, init_from = cfg.model, cfg.train.init_from
    if init_from and (m.pretrained or m.download):
        raise ConfigError("train.init_from and model.pretrained/model.download both set the starting weights; "
                          "keep one (init_from continues a trained model of the same classes)")
    if m.pretrained and m.download:
        raise ConfigError(f"model.pretrained={m.pretrained!r} and model.download=true: set one of them")
    if init_from:
        warm_start(method, init_from, data)
        return []
    if not (m.pretrained or m.download):
        return []
    path = m.pretrained or zoo_weights(m.name)
    reports = [load_pretrained(net, path, network=name) for name, net in method.networks.items()]
    if out_dir is not None:
        save_reports(reports, out_dir)
    return reports


def warm_start(method: Any, path: str, data: Any) -> str:
    """Load every network of ``method`` strictly from the checkpoint (or run folder) ``path``.

    Raises:
        CheckpointError: other classes, a missing network, missing/extra keys or other shapes.
    """
    from robust_paddle.engine.checkpoint import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"train.init_from: checkpoint not found: {path}")
    state = load_checkpoint(path)
    names = [str(c) for c in state["meta"].get("class_names") or []]
    if int(state["meta"]["num_classes"]) != int(data.num_classes) or (names and names != list(map(str, data.class_names))):
        raise CheckpointError(f"train.init_from {path}: its classes {names or state['meta']['num_classes']} differ "
                              f"from this data's {list(data.class_names)}; warm start needs the same classes "
                              "(use model.pretrained to start a new head)")
    for name, net in method.networks.items():
        if name not in state["networks"]:
            raise CheckpointError(f"train.init_from {path}: no network {name!r} in it (has: "
                                  f"{', '.join(state['networks'])}); was it trained with another method?")
        saved = {k: np.asarray(v) for k, v in state["networks"][name].items()}
        target = net.state_dict()
        missing, extra = sorted(set(target) - set(saved)), sorted(set(saved) - set(target))
        shapes = [f"{k} {list(saved[k].shape)} vs {list(target[k].shape)}" for k in target
                  if k in saved and list(saved[k].shape) != [int(s) for s in target[k].shape]]
        if missing or extra or shapes:
            raise CheckpointError(f"train.init_from {path}: network {name!r} does not match model "
                                  f"{type(net).__name__}: missing {missing[:4]}, unexpected {extra[:4]}, shapes "
                                  f"{shapes[:4]}")
        net.set_state_dict({k: paddle.to_tensor(v) for k, v in saved.items()})
    logger.info("train.init_from: networks %s from %s (epoch %s); new optimizer and schedule",
                ", ".join(method.networks), path, state.get("epoch"))
    return path


class FinetuneHook(Hook):
    """Freezes the backbones for the first ``freeze_epochs`` epochs and logs ``lr/backbone``, ``lr/head``."""

    priority = 3
    name = "finetune"
    toggles_trainable = True  # a frozen backbone is unfrozen mid-run (see engine.distributed.wrap_networks)

    def __init__(self, backbone: list[paddle.Tensor], *, freeze_epochs: int, lr_mult: float) -> None:
        self.backbone, self.freeze_epochs, self.lr_mult = backbone, int(freeze_epochs), float(lr_mult)
        self.trainable = [not p.stop_gradient for p in backbone]

    def frozen(self, epoch: int) -> bool:
        return epoch < self.freeze_epochs

    def before_epoch(self, trainer: Any) -> None:
        frozen = self.frozen(trainer.epoch)
        for p, trainable in zip(self.backbone, self.trainable):
            p.stop_gradient = frozen or not trainable
        if trainer.epoch == self.freeze_epochs and self.freeze_epochs:
            logger.info("epoch %d: backbone unfrozen", trainer.epoch + 1)

    def after_epoch(self, trainer: Any) -> None:
        lr = trainer.current_lr()
        trainer.epoch_scalars["lr/head"] = lr
        trainer.epoch_scalars["lr/backbone"] = 0.0 if self.frozen(trainer.epoch) else lr * self.lr_mult

    def after_train(self, trainer: Any) -> None:
        for p, trainable in zip(self.backbone, self.trainable):
            p.stop_gradient = not trainable


def finetune_hooks(cfg: Any, method: Any) -> list[Hook]:
    """Apply ``optimizer.backbone_lr_mult`` to the backbone parameters (call before the optimizer is built)
    and return the :class:`FinetuneHook` when freezing or a multiplier is configured, else []."""
    freeze, mult = cfg.model.freeze_epochs, cfg.optimizer.backbone_lr_mult
    if not freeze and mult == 1.0:
        return []
    if freeze >= cfg.train.epochs:
        raise ConfigError(f"model.freeze_epochs={freeze} freezes the backbone for the whole run "
                          f"(train.epochs={cfg.train.epochs}); choose fewer epochs")
    backbone: list[paddle.Tensor] = []
    for net in method.networks.values():
        b, _ = split_parameters(net)
        backbone += b
    for p in backbone:
        p.optimize_attr["learning_rate"] = float(mult)
    return [FinetuneHook(backbone, freeze_epochs=freeze, lr_mult=mult)]
