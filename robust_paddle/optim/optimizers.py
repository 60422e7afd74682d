"""Optimizer factory: ``OptimizerConfig`` -> ``paddle.optimizer.Optimizer``.

Registry entries (``OPTIMIZERS``) are builder functions ``fn(parameters, common, **params)`` where
``common`` carries the typed config fields every optimizer shares (learning rate, weight decay, momentum,
nesterov, gradient clipping) and ``params`` are the optimizer-specific keys of ``optimizer.params``
(``betas``, ``epsilon``, ``rho`` ...), checked against the builder's signature.

Weight decay is set per tensor through Paddle's ``param.regularizer`` (coupled L2) rather than with
Paddle parameter groups, because Paddle applies ``grad_clip`` to each group separately: with groups,
``ClipGradByGlobalNorm`` would bound each group's norm instead of the global one. AdamW (decoupled
decay) selects its decayed tensors with ``apply_decay_param_fun`` instead.

Paddle 2.6.2 provides SGD, Momentum, RMSProp, Adam, AdamW and Adamax; NAdam and RAdam are Paddle's own on
Paddle 3.x (``paddle.optimizer.NAdam`` / ``RAdam``) and hand-written in :mod:`robust_paddle.optim.adaptive`
on 2.6 (``_compat.native_optimizer`` picks). Both follow the same update rules and are tested against the
same NumPy references.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paddle
from paddle.optimizer import Optimizer
from paddle.optimizer.lr import LRScheduler
from paddle.regularizer import L2Decay

from robust_paddle import _compat
from robust_paddle.config import OptimizerConfig
from robust_paddle.errors import ConfigError
from robust_paddle.optim.adaptive import NAdam, RAdam
from robust_paddle.registry import OPTIMIZERS, accepted_kwargs

logger = logging.getLogger(__name__)

_COMMON_ARGS = ("parameters", "common")


@dataclass(frozen=True)
class OptimizerCommon:
    """Fields of :class:`~robust_paddle.config.OptimizerConfig` shared by every builder."""

    learning_rate: float | LRScheduler
    weight_decay: float
    decay_names: frozenset[str]  # tensors that are decayed (see split_decay_params)
    momentum: float
    nesterov: bool
    grad_clip: paddle.nn.ClipGradByGlobalNorm | None


# ------------------------------------------------------------------------------------------ value checks
def _number(value: Any, key: str, *, lo: float | None = None, hi: float | None = None, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"optimizer.params.{key}: expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and (value > hi or (hi_open and value == hi))):
        bound = f"in [{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ConfigError(f"optimizer.params.{key}: {value!r} is out of range; must be {bound}")
    return float(value)


def _betas(value: Any) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"optimizer.params.betas: expected [beta1, beta2], got {value!r}")
    return (_number(value[0], "betas[0]", lo=0.0, hi=1.0, hi_open=True),
            _number(value[1], "betas[1]", lo=0.0, hi=1.0, hi_open=True))


def _reject_nesterov(common: OptimizerCommon, name: str) -> None:
    if common.nesterov:
        raise ConfigError(f"optimizer.nesterov: true is only supported by 'sgd' (got optimizer '{name}'); "
                         "use 'nadam' for Adam with Nesterov momentum")


# ------------------------------------------------------------------------------------------------ builders
@OPTIMIZERS.register("sgd")
def build_sgd(parameters: list, common: OptimizerCommon) -> Optimizer:
    """SGD with (optionally Nesterov) momentum; ``momentum: 0`` gives plain SGD.

    Nesterov: Sutskever et al., "On the importance of initialization and momentum in deep learning",
    ICML 2013. Update: ``v = mu*v + g``; ``p -= lr*(g + mu*v)`` (Nesterov) or ``p -= lr*v``.
    """
    if common.momentum == 0.0:
        if common.nesterov:
            raise ConfigError("optimizer.nesterov: true needs optimizer.momentum > 0, got momentum 0")
        return paddle.optimizer.SGD(learning_rate=common.learning_rate, parameters=parameters,
                                    weight_decay=None, grad_clip=common.grad_clip)
    return paddle.optimizer.Momentum(learning_rate=common.learning_rate, momentum=common.momentum,
                                     parameters=parameters, use_nesterov=common.nesterov,
                                     weight_decay=None, grad_clip=common.grad_clip)


@OPTIMIZERS.register("rmsprop")
def build_rmsprop(parameters: list, common: OptimizerCommon, *, rho: float = 0.95, epsilon: float = 1e-6,
                  centered: bool = False) -> Optimizer:
    """RMSProp (Tieleman & Hinton, 2012, Coursera lecture 6.5) with ``optimizer.momentum``.

    Defaults are Paddle's (``rho`` 0.95, ``epsilon`` 1e-6, added inside the square root).
    """
    _reject_nesterov(common, "rmsprop")
    if not isinstance(centered, bool):
        raise ConfigError(f"optimizer.params.centered: expected true/false, got {centered!r}")
    return paddle.optimizer.RMSProp(
        learning_rate=common.learning_rate, rho=_number(rho, "rho", lo=0.0, hi=1.0, hi_open=True),
        epsilon=_number(epsilon, "epsilon", lo=0.0), momentum=common.momentum, centered=centered,
        parameters=parameters, weight_decay=None, grad_clip=common.grad_clip)


@OPTIMIZERS.register("adam")
def build_adam(parameters: list, common: OptimizerCommon, *, betas: Sequence[float] = (0.9, 0.999),
               epsilon: float = 1e-8) -> Optimizer:
    """Adam (Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980); weight decay is coupled L2."""
    _reject_nesterov(common, "adam")
    b1, b2 = _betas(betas)
    return paddle.optimizer.Adam(learning_rate=common.learning_rate, beta1=b1, beta2=b2,
                                 epsilon=_number(epsilon, "epsilon", lo=0.0), parameters=parameters,
                                 weight_decay=None, grad_clip=common.grad_clip)


@OPTIMIZERS.register("adamax")
def build_adamax(parameters: list, common: OptimizerCommon, *, betas: Sequence[float] = (0.9, 0.999),
                 epsilon: float = 1e-8) -> Optimizer:
    """Adamax, the infinity-norm variant of Adam (Kingma & Ba, 2015, https://arxiv.org/abs/1412.6980)."""
    _reject_nesterov(common, "adamax")
    b1, b2 = _betas(betas)
    return paddle.optimizer.Adamax(learning_rate=common.learning_rate, beta1=b1, beta2=b2,
                                   epsilon=_number(epsilon, "epsilon", lo=0.0), parameters=parameters,
                                   weight_decay=None, grad_clip=common.grad_clip)


@OPTIMIZERS.register("adamw")
def build_adamw(parameters: list, common: OptimizerCommon, *, betas: Sequence[float] = (0.9, 0.999),
                epsilon: float = 1e-8) -> Optimizer:
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter, 2019, https://arxiv.org/abs/1711.05101).

    ``optimizer.weight_decay`` is the decoupled coefficient (``p -= lr * wd * p`` besides the Adam step),
    applied to the tensors in ``common.decay_names``.
    """
    _reject_nesterov(common, "adamw")
    b1, b2 = _betas(betas)
    for p in parameters:
        p.regularizer = None  # AdamW decays inside its kernel; no coupled L2 on top
    return paddle.optimizer.AdamW(learning_rate=common.learning_rate, beta1=b1, beta2=b2,
                                  epsilon=_number(epsilon, "epsilon", lo=0.0), parameters=parameters,
                                  weight_decay=common.weight_decay, grad_clip=common.grad_clip,
                                  apply_decay_param_fun=common.decay_names.__contains__)


@OPTIMIZERS.register("nadam")
def build_nadam(parameters: list, common: OptimizerCommon, *, betas: Sequence[float] = (0.9, 0.999),
                epsilon: float = 1e-8, momentum_decay: float = 4e-3) -> Optimizer:
    """NAdam (Dozat, 2016, https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ); see :class:`NAdam`."""
    _reject_nesterov(common, "nadam")
    return make_nadam(common.learning_rate, parameters, betas=_betas(betas),
                      epsilon=_number(epsilon, "epsilon", lo=0.0),
                      momentum_decay=_number(momentum_decay, "momentum_decay", lo=0.0), grad_clip=common.grad_clip)


@OPTIMIZERS.register("radam")
def build_radam(parameters: list, common: OptimizerCommon, *, betas: Sequence[float] = (0.9, 0.999),
                epsilon: float = 1e-8) -> Optimizer:
    """RAdam (Liu et al., 2020, https://arxiv.org/abs/1908.03265); see :class:`RAdam`."""
    _reject_nesterov(common, "radam")
    return make_radam(common.learning_rate, parameters, betas=_betas(betas),
                      epsilon=_number(epsilon, "epsilon", lo=0.0), grad_clip=common.grad_clip)


def make_nadam(learning_rate: float | LRScheduler, parameters: list, *, betas: Sequence[float] = (0.9, 0.999),
               epsilon: float = 1e-8, momentum_decay: float = 4e-3,
               grad_clip: paddle.nn.ClipGradByGlobalNorm | None = None, multi_precision: bool = False) -> Optimizer:
    """NAdam: ``paddle.optimizer.NAdam`` where Paddle has it (3.x), else the hand-written :class:`NAdam`.

    Weight decay is not passed: it is set per tensor (``param.regularizer``, coupled L2), which both honour.
    ``multi_precision`` (float32 master weights for float16 parameters) is set by ``paddle.amp.decorate``
    (AMP O2) on either optimizer; the argument here is for direct use of the hand-written one.
    """
    native = _compat.native_optimizer("NAdam")
    if native is not None:
        return native(learning_rate=learning_rate, beta1=betas[0], beta2=betas[1], epsilon=epsilon,
                      momentum_decay=momentum_decay, parameters=parameters, grad_clip=grad_clip)
    return NAdam(learning_rate=learning_rate, parameters=parameters, betas=betas, epsilon=epsilon,
                 momentum_decay=momentum_decay, weight_decay=None, grad_clip=grad_clip,
                 multi_precision=multi_precision)


def make_radam(learning_rate: float | LRScheduler, parameters: list, *, betas: Sequence[float] = (0.9, 0.999),
               epsilon: float = 1e-8, grad_clip: paddle.nn.ClipGradByGlobalNorm | None = None,
               multi_precision: bool = False) -> Optimizer:
    """RAdam: ``paddle.optimizer.RAdam`` where Paddle has it (3.x), else the hand-written :class:`RAdam`."""
    native = _compat.native_optimizer("RAdam")
    if native is not None:
        return native(learning_rate=learning_rate, beta1=betas[0], beta2=betas[1], epsilon=epsilon,
                      parameters=parameters, grad_clip=grad_clip)
    return RAdam(learning_rate=learning_rate, parameters=parameters, betas=betas, epsilon=epsilon,
                 weight_decay=None, grad_clip=grad_clip, multi_precision=multi_precision)


# ------------------------------------------------------------------------------------------ public factory
def build_grad_clip(max_norm: float) -> paddle.nn.ClipGradByGlobalNorm | None:
    """Global-norm gradient clipping for an optimizer's ``grad_clip``; ``None`` when ``max_norm`` is 0.

    Args:
        max_norm: the largest allowed L2 norm of all gradients together (``train.grad_clip``); 0 disables.
    """
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or max_norm < 0:
        raise ConfigError(f"train.grad_clip: expected a number >= 0 (0 disables clipping), got {max_norm!r}")
    return paddle.nn.ClipGradByGlobalNorm(clip_norm=float(max_norm)) if max_norm > 0 else None


def split_decay_params(parameters: Sequence[paddle.Tensor], *,
                       no_decay_norm_bias: bool) -> tuple[list[paddle.Tensor], list[paddle.Tensor]]:
    """Split tensors into (decayed, not decayed): with ``no_decay_norm_bias``, tensors with ``ndim <= 1``
    (biases, norm-layer scales and shifts, BN running statistics) are not decayed. A tensor whose
    ``no_weight_decay`` attribute is True (e.g. a method's learned transition matrix, which decay would pull
    toward uniform) is never decayed.

    Args:
        parameters: the model's tensors (duplicates, e.g. shared weights, are kept once).
    """
    unique = list({id(p): p for p in parameters}.values())

    def decayed(p: paddle.Tensor) -> bool:
        return not getattr(p, "no_weight_decay", False) and (not no_decay_norm_bias or len(p.shape) > 1)

    return [p for p in unique if decayed(p)], [p for p in unique if not decayed(p)]


def build_optimizer(cfg: OptimizerConfig, parameters: Sequence[paddle.Tensor], *,
                    learning_rate: float | LRScheduler,
                    grad_clip: paddle.nn.ClipGradByGlobalNorm | None = None) -> Optimizer:
    """Build the optimizer ``cfg.name`` over ``parameters``.

    Weight decay: every build sets ``regularizer`` on each tensor afresh: ``L2Decay(weight_decay)`` on
    the decayed ones, ``None`` on the others (see :func:`split_decay_params`); AdamW decays the same
    tensors, decoupled. Gradient clipping sees all gradients together (a true global norm).

    Args:
        cfg: the ``optimizer`` config section (``lr`` is not read here: pass ``learning_rate``).
        parameters: the trainable tensors, e.g. ``model.parameters()``.
        learning_rate: a float or a ``paddle.optimizer.lr.LRScheduler`` (see ``build_scheduler``).
        grad_clip: e.g. :func:`build_grad_clip` (``train.grad_clip``).

    Raises:
        ValueError: unknown ``optimizer.name``, unknown or invalid ``optimizer.params`` keys, no parameters.
    """
    builder = OPTIMIZERS.get(cfg.name)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, LRScheduler)):
        raise ConfigError(f"learning_rate: expected a float or a paddle LRScheduler, got {type(learning_rate).__name__}")
    if isinstance(learning_rate, (int, float)):
        if learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be > 0, got {learning_rate!r}")
        learning_rate = float(learning_rate)
    names, _ = accepted_kwargs(builder)
    allowed = [n for n in names if n not in _COMMON_ARGS]
    params = dict(cfg.params)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"optimizer.params: unknown key(s) {', '.join(unknown)} for optimizer '{cfg.name}'; "
                         f"allowed: {', '.join(allowed) or '(none)'} (learning rate, weight decay, momentum "
                         "and nesterov are optimizer.lr / weight_decay / momentum / nesterov)")
    params_list = list(parameters)
    if not params_list:
        raise ConfigError("build_optimizer: parameters is empty; pass model.parameters()")
    decay, no_decay = split_decay_params(params_list, no_decay_norm_bias=cfg.no_decay_norm_bias)
    common = OptimizerCommon(learning_rate=learning_rate, weight_decay=float(cfg.weight_decay),
                             decay_names=frozenset(p.name for p in decay), momentum=float(cfg.momentum),
                             nesterov=bool(cfg.nesterov), grad_clip=grad_clip)
    for p in decay:  # coupled L2; the optimizer itself gets weight_decay=None (build_adamw resets these)
        p.regularizer = L2Decay(float(cfg.weight_decay)) if cfg.weight_decay > 0 else None
    for p in no_decay:
        p.regularizer = None
    opt = builder(decay + no_decay, common, **params)
    logger.debug("optimizer %s: %d decayed / %d not decayed tensors, weight_decay=%s", cfg.name, len(decay),
                 len(no_decay), cfg.weight_decay)
    return opt
