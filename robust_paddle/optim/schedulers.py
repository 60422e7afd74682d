"""Learning-rate schedules with linear warm-up: ``SchedulerConfig`` -> ``paddle.optimizer.lr.LRScheduler``.

Every schedule is a closed-form function of the tick counter ``t`` (the number of ``.step()`` calls since
the start), computed by :class:`ScheduledLR`. Why not Paddle's own decay classes: several of them
(``CosineAnnealingDecay``) update recursively from the previous value, so a resumed run drifts from an
uninterrupted one, and ``LinearWarmup`` restarts the wrapped schedule after warm-up. A closed form
makes the value at tick ``t`` exact, testable against a formula, and fully restored by the
``last_epoch`` / ``last_lr`` pair that ``LRScheduler.state_dict`` already saves.

Registry entries (``SCHEDULERS``) are *shapes*: small classes whose constructor takes the keys of
``scheduler.params`` and whose ``value`` gives the post-warm-up learning rate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from paddle.optimizer.lr import LRScheduler

from robust_paddle.config import SchedulerConfig, run_epochs
from robust_paddle.errors import ConfigError
from robust_paddle.registry import SCHEDULERS

logger = logging.getLogger(__name__)


def _num(value: object, key: str, *, lo: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"scheduler.params.{key}: expected a number, got {value!r}")
    if value < lo or (lo_open and value == lo):
        raise ConfigError(f"scheduler.params.{key}: {value!r} is out of range; must be {'>' if lo_open else '>='} {lo}")
    return float(value)


def _progress(t: int, start: int, total: int) -> float:
    """Fraction of the decay period [start, total] elapsed at tick ``t``, clipped to [0, 1]."""
    return min(max((t - start) / (total - start), 0.0), 1.0)


@SCHEDULERS.register("constant")
class ConstantShape:
    """``lr = base_lr`` after warm-up (no params)."""

    def __init__(self) -> None:
        """Declared so that unknown ``scheduler.params`` keys are rejected (the shape takes none)."""

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        return base_lr


@SCHEDULERS.register("cosine")
class CosineShape:
    """Cosine annealing without restarts (Loshchilov & Hutter, SGDR, https://arxiv.org/abs/1608.03983):
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * u)) / 2`` with ``u`` the elapsed fraction of the
    post-warm-up period.

    Args:
        eta_min: the final learning rate (absolute, >= 0).
    """

    def __init__(self, eta_min: float = 0.0) -> None:
        self.eta_min = _num(eta_min, "eta_min", lo=0.0)

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        u = _progress(t, start, total)
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * u))


@SCHEDULERS.register("linear")
class LinearShape:
    """``lr = base_lr * (1 + (end_factor - 1) * u)``: straight line from ``base_lr`` to
    ``end_factor * base_lr`` over the post-warm-up period.

    Args:
        end_factor: final learning rate as a fraction of ``base_lr`` (>= 0).
    """

    def __init__(self, end_factor: float = 0.0) -> None:
        self.end_factor = _num(end_factor, "end_factor", lo=0.0)

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        return base_lr * (1.0 + (self.end_factor - 1.0) * _progress(t, start, total))


@SCHEDULERS.register("polynomial")
class PolynomialShape:
    """``lr = (base_lr - end_lr) * (1 - u) ** power + end_lr`` (Paddle's ``PolynomialDecay`` form).

    Args:
        power: exponent (> 0); 1 is a straight line.
        end_lr: the final learning rate (absolute, >= 0).
    """

    def __init__(self, power: float = 1.0, end_lr: float = 0.0) -> None:
        self.power = _num(power, "power", lo=0.0, lo_open=True)
        self.end_lr = _num(end_lr, "end_lr", lo=0.0)

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        return (base_lr - self.end_lr) * (1.0 - _progress(t, start, total)) ** self.power + self.end_lr


def _is_fraction(value: object) -> bool:
    """A number in (0, 1): an epoch-valued setting given as a fraction of the run (``config.run_epochs``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


def _epochs_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"scheduler.params.{key}: expected a whole number of epochs >= 1, got {value!r}")
    return value


@SCHEDULERS.register("step")
class StepShape:
    """``lr = base_lr * gamma ** floor(t / step_size)``; counted from the start of training.

    Args:
        step_size: epochs between decays (converted to optimizer steps when ``scheduler.by`` is "step").
        gamma: multiplicative factor (> 0).
    """

    def __init__(self, step_size: int | None = None, gamma: float = 0.1) -> None:
        if step_size is None:
            raise ConfigError("scheduler.params.step_size: required for scheduler 'step' (epochs between decays)")
        self.step_size = _epochs_int(step_size, "step_size")
        self.gamma = _num(gamma, "gamma", lo=0.0, lo_open=True)

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        return base_lr * self.gamma ** (t // (self.step_size * unit))


@SCHEDULERS.register("multistep")
class MultiStepShape:
    """``lr = base_lr * gamma ** (number of milestones <= t)``; counted from the start of training.

    Args:
        milestones: increasing epochs (converted to optimizer steps when ``scheduler.by`` is "step"), e.g.
            ``[60, 120, 160]``, or fractions of the run (``[0.33, 0.67]``); equal milestones decay twice.
        gamma: multiplicative factor (> 0).
    """

    def __init__(self, milestones: Sequence[int] | None = None, gamma: float = 0.1) -> None:
        if milestones is None:
            raise ConfigError("scheduler.params.milestones: required for scheduler 'multistep' (a list of epochs)")
        if not isinstance(milestones, (list, tuple)) or not milestones:
            raise ConfigError(f"scheduler.params.milestones: expected a non-empty list of epochs, got {milestones!r}")
        ms = [_epochs_int(m, f"milestones[{i}]") for i, m in enumerate(milestones)]
        if any(b < a for a, b in zip(ms, ms[1:])):  # equal ones (fractions of a short run) decay twice there
            raise ConfigError(f"scheduler.params.milestones: must be increasing, got {list(milestones)!r}")
        self.milestones = ms
        self.gamma = _num(gamma, "gamma", lo=0.0, lo_open=True)

    def value(self, t: int, *, base_lr: float, start: int, total: int, unit: int) -> float:
        return base_lr * self.gamma ** sum(1 for m in self.milestones if m * unit <= t)


class ScheduledLR(LRScheduler):
    """A schedule shape behind a linear warm-up, evaluated in closed form at tick ``last_epoch``.

    ``lr(t) = base_lr * (s + (1 - s) * t / W)`` for ``t < W`` (``s`` = ``warmup_start_factor``), and
    ``shape.value(t, start=W, total=T, unit=unit)`` afterwards. Paddle's name ``last_epoch`` is the tick
    counter: steps or epochs depending on ``by``.

    Args:
        shape: a ``SCHEDULERS`` entry instance.
        base_lr: the peak learning rate.
        total: T, ticks in the whole run (epochs, or epochs * steps_per_epoch).
        warmup: W, warm-up ticks (0 disables warm-up).
        warmup_start_factor: ``s`` above.
        unit: ticks per epoch (1 when ``by`` is "epoch"); converts epoch-valued params.
        by: "step" or "epoch" (informational: who calls ``step()`` and how often).
    """

    def __init__(self, shape: object, *, base_lr: float, total: int, warmup: int, warmup_start_factor: float,
                 unit: int, by: str, last_epoch: int = -1) -> None:
        self.shape = shape
        self.total = int(total)
        self.warmup = int(warmup)
        self.warmup_start_factor = float(warmup_start_factor)
        self.unit = int(unit)
        self.by = by
        self.restart_tick = 0  # tick at which the schedule last restarted (see restart)
        super().__init__(learning_rate=float(base_lr), last_epoch=last_epoch)

    def lr_at(self, t: int) -> float:
        """The learning rate at tick ``t`` (pure function of ``t`` and ``restart_tick``).

        After :meth:`restart` at tick ``r`` the whole schedule is replayed on the remaining ``T - r`` ticks:
        ``t`` counts from ``r``, the warm-up is scaled to ``round(W * (T - r) / T)`` ticks and the shape ends
        at ``T`` (step/multistep milestones count from ``r``)."""
        r = self.restart_tick
        total, warmup = self.total - r, self.warmup
        if r:
            warmup = int(round(self.warmup * total / self.total))
        t = t - r
        if t < warmup:
            s = self.warmup_start_factor
            return self.base_lr * (s + (1.0 - s) * t / warmup)
        return self.shape.value(t, base_lr=self.base_lr, start=warmup, total=total, unit=self.unit)

    def get_lr(self) -> float:
        return self.lr_at(self.last_epoch)

    def restart(self) -> None:
        """Restart the schedule at the current tick, for a freshly initialised network (e.g. after a
        warm-up that re-initialises it): the rest of the run gets the full warm-up + shape, compressed into
        the ticks that are left. Saved in ``state_dict`` (``restart_tick``), so a resumed run follows it."""
        self.restart_tick = max(0, self.last_epoch)
        self.last_lr = self.get_lr()

    def state_keys(self) -> None:
        self.keys = ["last_epoch", "last_lr", "restart_tick"]

    def set_state_dict(self, state_dict: dict) -> None:
        # checkpoints written before restarts existed have no restart_tick: the schedule never restarted
        super().set_state_dict({"restart_tick": 0, **state_dict})

    def __repr__(self) -> str:
        return (f"ScheduledLR({type(self.shape).__name__}, base_lr={self.base_lr}, total={self.total}, "
                f"warmup={self.warmup}, by={self.by!r}, t={self.last_epoch})")


def build_scheduler(cfg: SchedulerConfig, *, base_lr: float, epochs: int, steps_per_epoch: int) -> ScheduledLR:
    """Build the learning-rate schedule ``cfg.name`` with ``cfg.warmup_epochs`` of linear warm-up.

    Contract with the trainer:

    - ``cfg.by == "step"``: call ``scheduler.step()`` once after every optimizer step. The run lasts
      ``T = epochs * steps_per_epoch`` ticks; warm-up lasts ``round(warmup_epochs * steps_per_epoch)``
      ticks; ``step_size`` / ``milestones`` (given in epochs) are multiplied by ``steps_per_epoch``.
    - ``cfg.by == "epoch"``: call ``scheduler.step()`` once at the end of every epoch. ``T = epochs``;
      ``warmup_epochs`` must then be a whole number.
    - ``warmup_epochs``, ``step_size`` and each milestone may be a fraction of the run in (0, 1)
      (``config.run_epochs``): ``warmup_epochs: 0.4`` is 40% of ``epochs`` (rounded to whole epochs when
      ``by`` is "epoch" and for step sizes and milestones), so a config keeps its plan at any budget.

    The learning rate used for tick ``t`` (0-based: before the first ``step()`` call ``t = 0``) is
    ``base_lr * (s + (1 - s) * t / W)`` during warm-up (``s = warmup_start_factor``), then the shape:
    decays (cosine, linear, polynomial) run from ``base_lr`` at ``t = W`` to their end value at ``t = T``;
    step and multistep count their epochs from the start of training. The state (``last_epoch``,
    ``last_lr``) round-trips through ``state_dict()`` / ``set_state_dict()`` for resuming.

    Args:
        cfg: the ``scheduler`` config section.
        base_lr: the peak learning rate (``optimizer.lr``).
        epochs: training epochs (``train.epochs``).
        steps_per_epoch: optimizer steps per epoch (batches / ``train.accumulate_steps``).

    Raises:
        ValueError: unknown name or params, non-positive sizes, warm-up as long as the run.
    """
    for key, val in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ConfigError(f"build_scheduler: {key} must be an int >= 1, got {val!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or base_lr <= 0:
        raise ConfigError(f"build_scheduler: base_lr must be a number > 0, got {base_lr!r}")
    if cfg.by not in ("step", "epoch"):
        raise ConfigError(f"scheduler.by: {cfg.by!r} is not allowed; choose one of: step, epoch")
    params = dict(cfg.params)
    for key in ("step_size", "milestones"):  # fractions of the run -> whole epochs >= 1
        value = params.get(key)
        if isinstance(value, (list, tuple)):
            params[key] = [int(run_epochs(m, epochs=epochs, key=f"scheduler.params.{key}[{i}]", lo=1))
                           if _is_fraction(m) else m for i, m in enumerate(value)]
        elif _is_fraction(value):
            params[key] = int(run_epochs(value, epochs=epochs, key=f"scheduler.params.{key}", lo=1))
    shape = SCHEDULERS.build(cfg.name, field="scheduler.params", **params)
    unit = steps_per_epoch if cfg.by == "step" else 1
    total = epochs * unit
    if cfg.by == "epoch" and not _is_fraction(cfg.warmup_epochs) and float(cfg.warmup_epochs) != int(cfg.warmup_epochs):
        raise ConfigError(f"scheduler.warmup_epochs: {cfg.warmup_epochs!r} must be a whole number of epochs "
                         "when scheduler.by is 'epoch' (use by: step for a fractional warm-up, or give a fraction "
                         "of the run in (0, 1))")
    warmup_epochs = run_epochs(cfg.warmup_epochs, epochs=epochs, key="scheduler.warmup_epochs",
                               whole=cfg.by == "epoch")
    warmup = int(round(warmup_epochs * unit))
    if warmup >= total and cfg.warmup_epochs > 0:
        raise ConfigError(f"scheduler.warmup_epochs: {cfg.warmup_epochs!r} ({warmup_epochs:g} epochs) must be "
                         f"shorter than the run (train.epochs={epochs}); give it as a fraction of the run in "
                         "(0, 1) to keep it relative")
    sched = ScheduledLR(shape, base_lr=float(base_lr), total=total, warmup=warmup,
                        warmup_start_factor=cfg.warmup_start_factor, unit=unit, by=cfg.by)
    logger.debug("scheduler %r", sched)
    return sched
