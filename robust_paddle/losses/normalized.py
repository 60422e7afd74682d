"""Active-passive losses built on normalized cross-entropy (NCE + RCE, NCE + MAE).

Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels", ICML 2020,
https://arxiv.org/abs/2006.13554.
"""

from __future__ import annotations

import abc
import dataclasses

import paddle
import paddle.nn.functional as F

from robust_paddle.losses import functional as LF
from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.losses.symmetric import check_alpha_beta
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param


def normalized_cross_entropy(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """``[N]``: ``NCE = (-sum_k t_k log p_k) / (-sum_k log p_k)``, always in ``[0, 1]``.

    The denominator is at least ``C log C > 0``, so the ratio is well defined.
    """
    log_p = F.log_softmax(logits, axis=-1)
    return (target * log_p).sum(axis=-1) / log_p.sum(axis=-1)


class _NormalizedLoss(RobustLoss):
    """``alpha * NCE + beta * passive`` (Ma et al. 2020, https://arxiv.org/abs/2006.13554)."""

    @abc.abstractmethod
    def _passive(self, probs: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        """Implemented by each concrete loss."""

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        loss = self.alpha * normalized_cross_entropy(logits, target)
        if self.beta > 0:
            loss = loss + self.beta * self._passive(F.softmax(logits, axis=-1), target)
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}, beta={self.beta:g}"


@LOSSES.register("nce_rce")
class NCEAndRCELoss(_NormalizedLoss):
    """``alpha * NCE + beta * RCE`` (Ma et al. 2020, https://arxiv.org/abs/2006.13554).

    NCE (active, bounded in ``[0, 1]``) plus reverse cross-entropy (passive, ``log 0`` clamped to
    ``log_zero``; ``4 (1 - p_y)`` for a hard label with the default A = -4). ``beta = 0`` gives plain NCE.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        alpha: NCE weight, >= 0 (paper: 1 on CIFAR-10, 10 on CIFAR-100).
        beta: RCE weight, >= 0 (paper: 1 on CIFAR-10, 0.1 on CIFAR-100).
        log_zero: A < 0, the value ``log 0`` is clamped to in RCE.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "nce_rce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        alpha: float = param(1.0, min=0.0, doc="NCE weight (paper: 1 on CIFAR-10, 10 on CIFAR-100)")
        beta: float = param(1.0, min=0.0, doc="RCE weight (paper: 1 on CIFAR-10, 0.1 on CIFAR-100); not both 0")
        log_zero: float = param(-4.0, max=0.0, max_open=True, doc="A < 0, the value log 0 is clamped to in RCE")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 alpha: float = 1.0, beta: float = 1.0, log_zero: float = -4.0) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.alpha, self.beta = check_alpha_beta(alpha, beta, where=self.loss_name)
        self.log_zero = float(log_zero)

    def _passive(self, probs: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return LF.reverse_cross_entropy(probs, target, log_zero=self.log_zero)


@LOSSES.register("nce_mae")
class NCEAndMAELoss(_NormalizedLoss):
    """``alpha * NCE + beta * MAE`` (Ma et al. 2020, https://arxiv.org/abs/2006.13554).

    MAE is ``sum_k |p_k - t_k|`` as in the paper (``2 (1 - p_y)`` for a hard label), the same term as
    :class:`~robust_paddle.losses.mae.MAELoss`. ``beta = 0`` gives plain NCE.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        alpha: NCE weight, >= 0.
        beta: MAE weight, >= 0.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "nce_mae"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        alpha: float = param(1.0, min=0.0, doc="NCE weight")
        beta: float = param(1.0, min=0.0, doc="MAE weight; not both 0")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.alpha, self.beta = check_alpha_beta(alpha, beta, where=self.loss_name)

    def _passive(self, probs: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return LF.mean_absolute_error(probs, target)
