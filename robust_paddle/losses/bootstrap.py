"""Soft and hard bootstrapping.

Reed et al., "Training Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015 workshop,
https://arxiv.org/abs/1412.6596.
"""

from __future__ import annotations

import abc
import dataclasses

import paddle
import paddle.nn.functional as F

from robust_paddle.losses import functional as LF
from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param


class _BootstrapLoss(RobustLoss):
    """Cross-entropy against ``beta * t + (1 - beta) * z`` where ``z`` comes from the prediction."""

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 beta: float) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.beta = float(beta)

    @abc.abstractmethod
    def _prediction_target(self, logits: paddle.Tensor) -> paddle.Tensor:
        """Implemented by each concrete loss."""

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        if self.beta == 1.0:
            return LF.cross_entropy(logits, target)
        mixed = self.beta * target + (1.0 - self.beta) * self._prediction_target(logits)
        return LF.cross_entropy(logits, mixed)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta:g}"


@LOSSES.register("bootstrap_soft")
class SoftBootstrappingLoss(_BootstrapLoss):
    """``-sum_k (beta t_k + (1 - beta) p_k) log p_k`` (Reed et al. 2014, https://arxiv.org/abs/1412.6596).

    The gradient flows through the ``p_k`` in the target as in the paper, where soft bootstrapping is
    equivalent to ``beta * CE + (1 - beta) * H(p)`` (cross-entropy plus entropy minimisation).
    ``beta = 1`` equals CE.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        beta: weight of the given target in ``[0, 1]`` (paper: 0.95).

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "bootstrap_soft"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        beta: float = param(0.95, min=0.0, max=1.0, doc="weight of the given target; 1 = CE (paper: 0.95)")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 beta: float = 0.95) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index, beta=beta)

    def _prediction_target(self, logits: paddle.Tensor) -> paddle.Tensor:
        return F.softmax(logits, axis=-1)


@LOSSES.register("bootstrap_hard")
class HardBootstrappingLoss(_BootstrapLoss):
    """``-sum_k (beta t_k + (1 - beta) z_k) log p_k``, ``z = one_hot(argmax p)`` (Reed et al. 2014,
    https://arxiv.org/abs/1412.6596).

    ``beta = 1`` equals CE.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        beta: weight of the given target in ``[0, 1]`` (paper: 0.8).

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "bootstrap_hard"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        beta: float = param(0.8, min=0.0, max=1.0, doc="weight of the given target; 1 = CE (paper: 0.8)")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 beta: float = 0.8) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index, beta=beta)

    def _prediction_target(self, logits: paddle.Tensor) -> paddle.Tensor:
        return F.one_hot(logits.argmax(axis=-1), self.num_classes).astype("float32")
