"""Weight averaging hooks: an exponential moving average (EMA) and stochastic weight averaging (SWA).

* :class:`EMAHook` keeps ``shadow = d * shadow + (1 - d) * weights`` after every optimizer step (every
  float entry of each network's ``state_dict``, batch-norm statistics included, kept in float32) and
  swaps the shadow in while the trainer evaluates (``train.ema.eval``). Its checkpoint state is
  ``{"shadow": {network name: state_dict}, "num_updates": n}``; export reads
  ``state["hooks"]["ema"]["shadow"]``.
* :class:`SWAHook` averages the weights at the end of the last epochs (or of each cycle of a cyclic
  learning rate), then recomputes batch-norm statistics for the averaged weights with one pass over the
  train loader (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
  Generalization", https://arxiv.org/abs/1803.05407).

Paddle 2.6 has no counterpart of ``torch.optim.swa_utils`` (``AveragedModel``, ``SWALR``, ``update_bn``),
so the running mean, the SWA learning rate and :func:`update_bn` are written here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import paddle

from robust_paddle.engine.hooks import Hook
from robust_paddle.errors import ConfigError
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

_FLOATS = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


def ema_decay(num_updates: int, *, decay: float, warmup: bool) -> float:
    """Decay of the update that follows ``num_updates`` earlier ones: ``min(decay, (1+n)/(10+n))`` with
    warm-up (so early, poorly trained weights fade quickly), else ``decay``."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates)) if warmup else decay


def _copy_state(net: paddle.nn.Layer) -> dict[str, paddle.Tensor]:
    """A detached copy of ``net.state_dict()``; float entries in float32."""
    return {k: (v.astype("float32") if v.dtype in _FLOATS else v).detach().clone()
            for k, v in net.state_dict().items()}


def _weights_changed(trainer: Any) -> None:
    """Tell the trainer its networks hold other weights now (its cached training-set pass is stale)."""
    if hasattr(trainer, "weights_changed"):
        trainer.weights_changed()


def _load_state(net: paddle.nn.Layer, state: dict[str, Any]) -> None:
    """Load ``state`` into ``net`` casting each entry to the dtype the network holds (AMP O2: fp16)."""
    current = net.state_dict()
    missing = sorted(set(current) - set(state))
    if missing:
        raise ConfigError(f"averaged weights lack entries {missing[:5]} of the network; they were taken from "
                         "another model")
    net.set_state_dict({k: (state[k] if isinstance(state[k], paddle.Tensor) else paddle.to_tensor(state[k]))
                        .astype(v.dtype) for k, v in current.items()})


@HOOKS.register("ema")
class EMAHook(Hook):
    """Exponential moving average of every network's weights (``train.ema``).

    After each optimizer step, for every float entry ``w`` of each network's ``state_dict``:
    ``shadow = d * shadow + (1 - d) * w`` with ``d = ema_decay(n, decay, warmup)`` and ``n`` the
    number of earlier updates; non-float entries are copied.

    Args:
        decay: in [0, 1]; 0.999 averages over roughly the last 1000 steps.
        warmup: use ``min(decay, (1+n)/(10+n))``.
        eval: evaluate (val/test, calibration) with the EMA weights; the training weights are restored after.
    """

    priority = 5  # before eval (10) so the shadow is swapped in first; it is restored in after_eval
    name = "ema"

    def __init__(self, *, decay: float = 0.999, warmup: bool = True, eval: bool = True) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise ConfigError(f"train.ema.decay must be a number in [0, 1], got {decay!r}")
        self.decay, self.warmup, self.eval = float(decay), bool(warmup), bool(eval)
        self.shadow: dict[str, dict[str, paddle.Tensor]] | None = None
        self.num_updates = 0
        self._backup: dict[str, dict[str, paddle.Tensor]] | None = None

    def before_train(self, trainer: Trainer) -> None:
        if self.shadow is None:  # a resumed run has already restored its shadow
            self.shadow = {name: _copy_state(net) for name, net in trainer.method.networks.items()}

    @paddle.no_grad()
    def update(self, networks: dict[str, paddle.nn.Layer]) -> None:
        """Fold the networks' current weights into the shadow (one EMA step)."""
        if self.shadow is None:
            self.shadow = {name: _copy_state(net) for name, net in networks.items()}
        d = ema_decay(self.num_updates, decay=self.decay, warmup=self.warmup)
        for name, net in networks.items():
            shadow = self.shadow[name]
            for k, v in net.state_dict().items():
                if v.dtype in _FLOATS:
                    shadow[k] = shadow[k] * d + v.astype("float32") * (1.0 - d)
                else:
                    shadow[k] = v.detach().clone()
        self.num_updates += 1

    def after_step(self, trainer: Trainer, terms: dict[str, float]) -> None:
        self.update(trainer.method.networks)

    def before_eval(self, trainer: Trainer) -> None:
        if self.eval and self.shadow is not None and self._backup is None:
            nets = trainer.method.networks
            self._backup = {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
                            for name, net in nets.items()}
            for name, net in nets.items():
                _load_state(net, self.shadow[name])
            _weights_changed(trainer)

    def after_eval(self, trainer: Trainer) -> None:
        if self._backup is not None:
            for name, net in trainer.method.networks.items():
                net.set_state_dict(self._backup[name])
            self._backup = None
            _weights_changed(trainer)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        self.after_eval(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"shadow": self.shadow, "num_updates": self.num_updates}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        self.shadow = state.get("shadow")
        self.num_updates = int(state.get("num_updates", 0))


# ------------------------------------------------------------------------------------------------- SWA
def _batch_norms(net: paddle.nn.Layer) -> list[paddle.nn.Layer]:
    bn_types = (paddle.nn.layer.norm._BatchNormBase, paddle.nn.BatchNorm)
    return [m for m in net.sublayers(include_self=True) if isinstance(m, bn_types)]


@paddle.no_grad()
def update_bn(loader: Iterable, networks: dict[str, paddle.nn.Layer] | paddle.nn.Layer) -> int:
    """Recompute batch-norm running statistics of ``networks`` with one pass over ``loader``.

    Averaged weights need statistics of their own: this sets each BN layer's statistics to the equally
    weighted mean of the per-batch statistics (Paddle's update is ``running = m * running + (1 - m) *
    batch``, so batch ``k`` uses momentum ``(k - 1) / k``), like ``torch.optim.swa_utils.update_bn``.

    Args:
        loader: yields batches whose first element is the input ``x [B, ...]``.
        networks: a Layer or ``{name: Layer}``.

    Returns:
        The number of batches seen (0 when no network has batch norm; the loader is then not read).
    """
    nets = list(networks.values()) if isinstance(networks, dict) else [networks]
    bns = [bn for net in nets for bn in _batch_norms(net)]
    if not bns:
        return 0
    momenta = [bn._momentum for bn in bns]
    modes = [net.training for net in nets]
    for net in nets:
        net.train()
    k = 0
    try:
        for batch in loader:
            k += 1
            for bn in bns:
                bn._momentum = (k - 1.0) / k
            for net in nets:
                net(batch[0])
    finally:
        for bn, m in zip(bns, momenta):
            bn._momentum = m
        for net, mode in zip(nets, modes):
            net.train() if mode else net.eval()
    return k


@HOOKS.register("swa")
class SWAHook(Hook):
    """Stochastic weight averaging (``train.swa``), https://arxiv.org/abs/1803.05407.

    From epoch ``start_epoch`` (1-based; 0 = the last quarter of the run) the trainable parameters are
    averaged with a running mean ``avg += (w - avg) / (n + 1)``:

    * ``cycle_epochs = 0``: at the end of every epoch; the learning rate is held at ``lr`` when
      ``lr > 0`` (the SWA learning rate), otherwise the configured schedule continues;
    * ``cycle_epochs = c >= 1``: a cyclic learning rate falls linearly from ``lr`` to ``lr_min`` over each
      cycle of ``c`` epochs (per optimizer step, ``lr_i = (1 - t) lr + t lr_min``, ``t = i / steps``) and
      the weights are averaged at the end of each cycle, where the rate is lowest.

    At the end of training the averaged weights are loaded, batch-norm statistics are recomputed on the
    train loader (:func:`update_bn`), the SWA model is evaluated (``swa/<split>/acc``,
    ``swa/<split>/macro_f1`` in metrics.json) and saved as ``checkpoints/swa.pdckpt``; the networks keep
    the SWA weights afterwards. The learning rate is overridden by setting the scheduler's ``last_lr``
    after each of its steps (Paddle has no ``SWALR``).
    """

    priority = 40  # after_train: before calibration (70), VisualDL (80) and metrics.json (90)
    name = "swa"

    def __init__(self, *, start_epoch: int = 0, lr: float = 0.0, lr_min: float = 0.0, cycle_epochs: int = 0,
                 update_bn: bool = True) -> None:
        for key, v in (("start_epoch", start_epoch), ("cycle_epochs", cycle_epochs)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"train.swa.{key} must be an int >= 0, got {v!r}")
        for key, v in (("lr", lr), ("lr_min", lr_min)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"train.swa.{key} must be a number >= 0, got {v!r}")
        if cycle_epochs and lr <= 0:
            raise ConfigError(f"train.swa.cycle_epochs={cycle_epochs} needs a cyclic upper rate train.swa.lr > 0, "
                             f"got lr={lr!r}")
        if cycle_epochs and lr_min > lr:
            raise ConfigError(f"train.swa.lr_min ({lr_min}) must not exceed train.swa.lr ({lr})")
        self.start_epoch, self.lr, self.lr_min = start_epoch, float(lr), float(lr_min)
        self.cycle_epochs, self.bn = cycle_epochs, bool(update_bn)
        self.average: dict[str, dict[str, paddle.Tensor]] | None = None
        self.num_averaged = 0
        self._epoch_start_step = 0
        self._steps_per_epoch = 1

    def first_epoch(self, epochs: int) -> int:
        """The 1-based first epoch of the SWA phase."""
        return self.start_epoch or max(1, epochs - max(1, epochs // 4) + 1)

    def _in_phase(self, trainer: Trainer) -> bool:
        return trainer.epoch + 1 >= self.first_epoch(trainer.cfg.train.epochs)

    def lr_at(self, step_in_cycle: int, steps_per_cycle: int) -> float:
        """Learning rate of the ``step_in_cycle``-th (0-based) optimizer step of the SWA phase."""
        if not self.cycle_epochs:
            return self.lr
        t = (step_in_cycle % steps_per_cycle + 1) / steps_per_cycle
        return (1.0 - t) * self.lr + t * self.lr_min

    def _set_lr(self, trainer: Trainer, steps_done_in_epoch: int) -> None:
        if self.lr <= 0 or not self._in_phase(trainer):
            return
        ep_in_phase = trainer.epoch + 1 - self.first_epoch(trainer.cfg.train.epochs)
        cycle = max(self.cycle_epochs, 1)
        step = (ep_in_phase % cycle) * self._steps_per_epoch + steps_done_in_epoch
        lr = self.lr_at(step, cycle * self._steps_per_epoch)
        if trainer.scheduler is not None:
            trainer.scheduler.last_lr = lr
        else:
            trainer.optimizer.set_lr(lr)

    def before_train(self, trainer: Trainer) -> None:
        epochs = trainer.cfg.train.epochs
        if self.first_epoch(epochs) > epochs:
            raise ConfigError(f"train.swa.start_epoch={self.start_epoch} is after the last epoch ({epochs}); "
                             f"choose 1..{epochs}, or 0 for the last quarter")
        n = len(trainer.loaders["train"])
        self._steps_per_epoch = max(1, -(-n // trainer.cfg.train.accumulate_steps))

    def before_epoch(self, trainer: Trainer) -> None:
        self._epoch_start_step = trainer.global_step
        self._set_lr(trainer, 0)

    def after_step(self, trainer: Trainer, terms: dict[str, float]) -> None:
        self._set_lr(trainer, trainer.global_step - self._epoch_start_step)

    @paddle.no_grad()
    def update(self, networks: dict[str, paddle.nn.Layer]) -> None:
        """Fold the networks' current trainable parameters into the running average."""
        n = self.num_averaged
        if self.average is None:
            self.average = {name: {} for name in networks}
        for name, net in networks.items():
            avg = self.average[name]
            for k, p in net.named_parameters():
                if p.stop_gradient:
                    continue
                w = p.astype("float32")
                avg[k] = w.clone() if k not in avg else avg[k] + (w - avg[k]) / (n + 1.0)
        self.num_averaged = n + 1

    def after_epoch(self, trainer: Trainer) -> None:
        if not self._in_phase(trainer):
            return
        ep_in_phase = trainer.epoch + 1 - self.first_epoch(trainer.cfg.train.epochs)
        if self.cycle_epochs and (ep_in_phase + 1) % self.cycle_epochs:
            return
        self.update(trainer.method.networks)
        trainer.epoch_scalars["swa/num_averaged"] = self.num_averaged

    def apply(self, networks: dict[str, paddle.nn.Layer]) -> None:
        """Load the averaged parameters into ``networks`` (other entries, e.g. BN statistics, are kept)."""
        if self.average is None:
            raise ConfigError("SWA has averaged no weights yet (the SWA phase has not started)")
        with paddle.no_grad():
            for name, net in networks.items():
                for k, p in net.named_parameters():
                    if k in self.average[name]:
                        p.set_value(self.average[name][k].astype(p.dtype))

    def after_train(self, trainer: Trainer) -> None:
        if self.average is None:
            logger.warning("SWA: no weights were averaged (training stopped before the SWA phase)")
            return
        self.apply(trainer.method.networks)
        _weights_changed(trainer)
        if self.bn:
            update_bn(trainer.loaders["train"], trainer.method.networks)
            if getattr(trainer, "distributed", False):  # each rank saw its shard: keep rank 0's statistics
                from robust_paddle.engine.distributed import broadcast_buffers

                broadcast_buffers(trainer.method.networks)
        for split in ("val", "test"):
            if trainer.loaders.get(split) is not None:
                res = trainer.evaluate(split)
                trainer.epoch_scalars[f"swa/{split}/acc"] = res["acc"]
                trainer.epoch_scalars[f"swa/{split}/macro_f1"] = res["macro_f1"]
                trainer.eval_details[f"swa/{split}"] = res
        if trainer.is_main:
            path = trainer.save(trainer.state_dict(), os.path.join(trainer.checkpoint_dir, "swa.pdckpt"))
            logger.info("SWA over %d snapshots: %s", self.num_averaged, path)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average, "num_averaged": self.num_averaged}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        self.average = state.get("average")
        self.num_averaged = int(state.get("num_averaged", 0))
