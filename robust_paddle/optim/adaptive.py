"""NAdam and RAdam for Paddle 2.6, written with Paddle tensor ops (dygraph).

Why hand-written: ``paddle.optimizer`` in Paddle 2.6.2 has Adam, AdamW and Adamax but neither NAdam nor
RAdam (both arrive in Paddle 3.0). The update rules below follow the papers and PyTorch's reference
implementations (``torch.optim.NAdam`` / ``torch.optim.RAdam``) and are tested step by step against a
NumPy reference in ``tests/optim/test_optimizers.py``.

Both subclass :class:`paddle.optimizer.Optimizer`, so parameter groups, ``grad_clip``, learning-rate
schedulers, ``state_dict`` / ``set_state_dict``, ``paddle.amp.GradScaler`` (skipped steps on inf/nan) and
AMP-O2 master weights (``multi_precision``) behave as with Paddle's own optimizers. ``weight_decay`` is
the classic coupled L2 penalty added to the gradient (PyTorch's default for these two optimizers).
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from typing import Any

import paddle
from paddle.optimizer import Optimizer
from paddle.optimizer.lr import LRScheduler

from robust_paddle.errors import ConfigError

logger = logging.getLogger(__name__)


def _check_betas(betas: Sequence[float], epsilon: float, owner: str) -> tuple[float, float]:
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in betas):
        raise ConfigError(f"{owner}: betas must be two numbers in [0, 1), got {betas!r}")
    b1, b2 = float(betas[0]), float(betas[1])
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ConfigError(f"{owner}: betas must be two numbers in [0, 1), got {betas!r}")
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or epsilon < 0:
        raise ConfigError(f"{owner}: epsilon must be a number >= 0, got {epsilon!r}")
    return b1, b2


class _TensorOpOptimizer(Optimizer, metaclass=abc.ABCMeta):
    """Plumbing shared by optimizers whose update is a few Paddle tensor ops (dygraph only).

    Subclasses set ``_moment_names`` (tensors shaped like the parameter, zero-initialised),
    ``_scalar_accs`` (``name -> initial value`` for per-parameter ``[1]`` float64 tensors: bias corrections
    such as RAdam's ``rho_t`` cancel catastrophically in float32) and implement
    ``_update(param, grad, lr, accs) -> new_param``, which also writes new accumulator values in place.
    """

    _moment_names: tuple[str, ...] = ()
    _scalar_accs: dict[str, float] = {}

    def __init__(
        self,
        learning_rate: float | LRScheduler,
        parameters: list[Any],
        weight_decay: float | None,
        grad_clip: paddle.nn.ClipGradByGlobalNorm | None,
        multi_precision: bool,
        name: str | None,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            parameters=parameters,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            name=name,
        )
        self._multi_precision = multi_precision
        self._master_weights = {}

    def _uses_master(self, param: paddle.Tensor) -> bool:
        return bool(self._multi_precision) and self._is_dtype_fp16_or_bf16(param.dtype)

    def _create_accumulators(self, block: Any, parameters: Any) -> None:
        if isinstance(parameters, dict):
            parameters = parameters["params"]
        for p in parameters:
            if p.name in self._already_create_accumulater:
                continue
            target = self._create_master_weight(p) if self._uses_master(p) else p
            for acc in self._moment_names:
                self._add_accumulator(acc, target)
            for acc, fill in self._scalar_accs.items():
                self._add_accumulator(acc, target, dtype="float64", fill_value=fill, shape=[1])
            self._already_create_accumulater.add(p.name)

    def _append_optimize_op(self, block: Any, param_and_grad: Any) -> None:
        if isinstance(param_and_grad, dict):
            param_and_grad = param_and_grad["params"]
        param, grad = param_and_grad
        target = self._master_weights[param.name] if self._uses_master(param) else param
        accs = {n: self._get_accumulator_master(n, param) for n in (*self._moment_names, *self._scalar_accs)}
        lr = self._create_param_lr(param_and_grad)
        with paddle.no_grad():
            new = self._update(target, grad.astype(target.dtype), lr.astype(target.dtype), accs)
            paddle.assign(new, output=target)
            if target is not param:
                paddle.assign(new.astype(param.dtype), output=param)

    @abc.abstractmethod
    def _update(
        self, param: paddle.Tensor, grad: paddle.Tensor, lr: paddle.Tensor, accs: dict[str, paddle.Tensor]
    ) -> paddle.Tensor:
        """Return the new parameter value; write the new accumulator values into ``accs`` in place."""


class NAdam(_TensorOpOptimizer):
    r"""Adam with Nesterov momentum (Dozat, 2016), with PyTorch's momentum-decay schedule.

    Paper: "Incorporating Nesterov Momentum into Adam", ICLR 2016 workshop,
    https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ

    For step :math:`t = 1, 2, \dots` with :math:`\mu_t = \beta_1 (1 - 0.5 \cdot 0.96^{t\psi})`:

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\\
        \hat v_t = v_t / (1-\beta_2^t),\quad \Pi_t = \prod_{i\le t}\mu_i,\\
        \theta_t = \theta_{t-1} - \eta\,\frac{(1-\mu_t)/(1-\Pi_t)\, g_t
                   + \mu_{t+1}/(1-\Pi_t\mu_{t+1})\, m_t}{\sqrt{\hat v_t} + \epsilon}

    Args:
        learning_rate: float or LRScheduler.
        parameters: parameters or parameter groups (list of dicts with ``params`` and ``weight_decay``).
        betas: (beta1, beta2), each in [0, 1).
        epsilon: added to the denominator.
        momentum_decay: :math:`\psi` above (PyTorch default 4e-3).
        weight_decay: coupled L2 coefficient (added to the gradient).
        grad_clip: e.g. ``paddle.nn.ClipGradByGlobalNorm``.
        multi_precision: keep float32 master weights for float16/bfloat16 parameters (AMP O2).
    """

    _moment_names = ("moment1", "moment2")
    _scalar_accs = {"beta2_pow": 1.0, "decay_pow": 1.0, "mu_product": 1.0}

    def __init__(
        self,
        learning_rate: float | LRScheduler = 0.002,
        parameters: list[Any] | None = None,
        *,
        betas: Sequence[float] = (0.9, 0.999),
        epsilon: float = 1e-8,
        momentum_decay: float = 4e-3,
        weight_decay: float | None = None,
        grad_clip: paddle.nn.ClipGradByGlobalNorm | None = None,
        multi_precision: bool = False,
        name: str | None = None,
    ) -> None:
        self._beta1, self._beta2 = _check_betas(betas, epsilon, "NAdam")
        if not isinstance(momentum_decay, (int, float)) or isinstance(momentum_decay, bool) or momentum_decay < 0:
            raise ConfigError(f"NAdam: momentum_decay must be a number >= 0, got {momentum_decay!r}")
        self._epsilon = float(epsilon)
        self._decay_base = 0.96 ** float(momentum_decay)
        self.type = "nadam"
        super().__init__(learning_rate, parameters, weight_decay, grad_clip, multi_precision, name)

    def _update(self, param, grad, lr, accs):
        b1, b2 = self._beta1, self._beta2
        m, v = accs["moment1"], accs["moment2"]
        paddle.assign(accs["beta2_pow"] * b2, output=accs["beta2_pow"])
        paddle.assign(accs["decay_pow"] * self._decay_base, output=accs["decay_pow"])
        mu_t = b1 * (1.0 - 0.5 * accs["decay_pow"])
        mu_next = b1 * (1.0 - 0.5 * accs["decay_pow"] * self._decay_base)
        paddle.assign(accs["mu_product"] * mu_t, output=accs["mu_product"])
        mu_prod = accs["mu_product"]
        paddle.assign(b1 * m + (1.0 - b1) * grad, output=m)
        paddle.assign(b2 * v + (1.0 - b2) * grad * grad, output=v)
        dt = param.dtype
        denom = paddle.sqrt(v / (1.0 - accs["beta2_pow"]).astype(dt)) + self._epsilon
        coef_g = ((1.0 - mu_t) / (1.0 - mu_prod)).astype(dt)
        coef_m = (mu_next / (1.0 - mu_prod * mu_next)).astype(dt)
        return param - lr * (coef_g * grad + coef_m * m) / denom


class RAdam(_TensorOpOptimizer):
    r"""Rectified Adam (Liu et al., 2020): Adam whose adaptive step is switched on once the variance of
    the adaptive learning rate is tractable, and rectified by :math:`r_t` until then.

    Paper: "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020,
    https://arxiv.org/abs/1908.03265

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1-\beta_2^t)`:

    .. math::
        \hat m_t = m_t / (1-\beta_1^t),\qquad
        \theta_t = \theta_{t-1} - \eta \hat m_t \cdot
        \begin{cases} r_t \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\ 1 & \text{else}\end{cases}

    where :math:`r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}`.

    Args:
        learning_rate: float or LRScheduler.
        parameters: parameters or parameter groups (list of dicts with ``params`` and ``weight_decay``).
        betas: (beta1, beta2), each in [0, 1).
        epsilon: added to the denominator.
        weight_decay: coupled L2 coefficient (added to the gradient).
        grad_clip: e.g. ``paddle.nn.ClipGradByGlobalNorm``.
        multi_precision: keep float32 master weights for float16/bfloat16 parameters (AMP O2).
    """

    _moment_names = ("moment1", "moment2")
    _scalar_accs = {"beta1_pow": 1.0, "beta2_pow": 1.0, "step": 0.0}

    def __init__(
        self,
        learning_rate: float | LRScheduler = 0.001,
        parameters: list[Any] | None = None,
        *,
        betas: Sequence[float] = (0.9, 0.999),
        epsilon: float = 1e-8,
        weight_decay: float | None = None,
        grad_clip: paddle.nn.ClipGradByGlobalNorm | None = None,
        multi_precision: bool = False,
        name: str | None = None,
    ) -> None:
        self._beta1, self._beta2 = _check_betas(betas, epsilon, "RAdam")
        self._epsilon = float(epsilon)
        self._rho_inf = 2.0 / (1.0 - self._beta2) - 1.0
        self.type = "radam"
        super().__init__(learning_rate, parameters, weight_decay, grad_clip, multi_precision, name)

    def _update(self, param, grad, lr, accs):
        b1, b2, rho_inf = self._beta1, self._beta2, self._rho_inf
        m, v = accs["moment1"], accs["moment2"]
        paddle.assign(accs["beta1_pow"] * b1, output=accs["beta1_pow"])
        paddle.assign(accs["beta2_pow"] * b2, output=accs["beta2_pow"])
        paddle.assign(accs["step"] + 1.0, output=accs["step"])
        paddle.assign(b1 * m + (1.0 - b1) * grad, output=m)
        paddle.assign(b2 * v + (1.0 - b2) * grad * grad, output=v)
        dt = param.dtype
        m_hat = m / (1.0 - accs["beta1_pow"]).astype(dt)
        if self._rho_inf <= 5.0:  # beta2 <= 2/3: rho_t <= rho_inf <= 5 at every step, never adaptive
            return param - lr * m_hat
        bc2 = 1.0 - accs["beta2_pow"]
        rho_t = rho_inf - 2.0 * accs["step"] * accs["beta2_pow"] / bc2
        # No Python branch on tensor values: both branches are computed and paddle.where picks one; rho is
        # clipped inside the square root so the unused branch stays finite.
        rho_c = paddle.maximum(rho_t, paddle.full_like(rho_t, 5.0))
        rect = paddle.sqrt((rho_c - 4.0) * (rho_c - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_c))
        adaptive = (rect * paddle.sqrt(bc2)).astype(dt) / (paddle.sqrt(v) + self._epsilon)
        return param - lr * paddle.where(rho_t > 5.0, m_hat * adaptive, m_hat)
