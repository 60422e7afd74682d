"""Symmetric cross-entropy (SCE).

Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019,
https://arxiv.org/abs/1908.06112.
"""

from __future__ import annotations

import dataclasses

import paddle
import paddle.nn.functional as F

from robust_paddle.errors import ConfigError
from robust_paddle.losses import functional as LF
from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param


def check_alpha_beta(alpha: float, beta: float, *, where: str) -> tuple[float, float]:
    """Not both 0 (the loss would be identically zero): a combination the declared ``Params`` (each >= 0)
    cannot express."""
    if alpha == 0.0 and beta == 0.0:
        raise ConfigError(f"{where}: alpha and beta cannot both be 0 (the loss would be zero)")
    return float(alpha), float(beta)


@LOSSES.register("sce")
class SymmetricCrossEntropyLoss(RobustLoss):
    """``alpha * CE + beta * RCE`` (Wang et al. 2019, https://arxiv.org/abs/1908.06112).

    The reverse cross-entropy ``RCE = -sum_k p_k log t_k`` swaps prediction and target; ``log 0`` is
    clamped to ``A = log_zero`` (the paper's A = -4), so for a hard label ``RCE = -A (1 - p_y)``. With
    ``beta = 0`` the loss is ``alpha * CE``.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        alpha: CE weight, >= 0 (paper: 0.1 on CIFAR-10, 6.0 on CIFAR-100).
        beta: RCE weight, >= 0 (paper: 1.0).
        log_zero: A < 0, the value ``log 0`` is clamped to.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "sce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        alpha: float = param(0.1, min=0.0, doc="CE weight (paper: 0.1 on CIFAR-10, 6.0 on CIFAR-100)")
        beta: float = param(1.0, min=0.0, doc="reverse-CE weight (paper: 1.0); not both 0")
        log_zero: float = param(-4.0, max=0.0, max_open=True, doc="A < 0, the value log 0 is clamped to in RCE")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.alpha, self.beta = check_alpha_beta(alpha, beta, where=self.loss_name)
        self.log_zero = float(log_zero)

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        loss = self.alpha * LF.cross_entropy(logits, target)
        if self.beta > 0:
            probs = F.softmax(logits, axis=-1)
            loss = loss + self.beta * LF.reverse_cross_entropy(probs, target, log_zero=self.log_zero)
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha:g}, beta={self.beta:g}, log_zero={self.log_zero:g}"
