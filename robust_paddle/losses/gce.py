"""Generalized cross-entropy (Lq) and its truncated variant.

Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels",
NeurIPS 2018, https://arxiv.org/abs/1805.07836.
"""

from __future__ import annotations

import dataclasses
import math

import paddle
import paddle.nn.functional as F

from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param


def _lq(log_p: paddle.Tensor, q: float) -> paddle.Tensor:
    # (1 - p^q) / q written as -expm1(q log p) / q: exact as q -> 0 (tends to -log p = CE) and, unlike
    # pow(p, q), its gradient stays finite when p underflows to 0 for a non-target class.
    return -paddle.expm1(q * log_p) / q


@LOSSES.register("gce")
class GeneralizedCrossEntropyLoss(RobustLoss):
    """Lq loss ``(1 - p_y^q) / q`` (Zhang & Sabuncu 2018, https://arxiv.org/abs/1805.07836).

    Interpolates between CE (``q -> 0``) and MAE-like ``1 - p_y`` (``q = 1``), trading CE's fast
    convergence for MAE's robustness to label noise. Soft targets give ``sum_k t_k (1 - p_k^q) / q``.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        q: in ``(0, 1]``; the paper uses 0.7.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "gce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        q: float = param(0.7, min=0.0, max=1.0, min_open=True, doc="0 -> CE, 1 -> MAE-like 1 - p_y (paper: 0.7)")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 q: float = 0.7) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.q = float(q)

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return (target * _lq(F.log_softmax(logits, axis=-1), self.q)).sum(axis=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, q={self.q:g}"


@LOSSES.register("truncated_gce")
class TruncatedGCELoss(RobustLoss):
    """Truncated Lq loss (Zhang & Sabuncu 2018, https://arxiv.org/abs/1805.07836, Sec. 3.3).

    ``L = Lq(p_y)`` when ``p_y > k`` and the constant ``Lq(k) = (1 - k^q) / q`` otherwise, so samples the
    network finds very unlikely (often mislabelled) give no gradient. Soft targets truncate each class
    term: ``sum_k t_k Ltrunc(p_k)``. With ``k = 0`` it equals :class:`GeneralizedCrossEntropyLoss`.

    The paper realises the truncation by pruning samples with ``p_y <= k`` every few epochs; here it is
    applied per batch, which gives the same gradient for the current parameters.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        q: in ``(0, 1]``; the paper uses 0.7.
        k: truncation threshold in ``[0, 1)``; the paper uses 0.5.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "truncated_gce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        q: float = param(0.7, min=0.0, max=1.0, min_open=True, doc="as gce (paper: 0.7)")
        k: float = param(0.5, min=0.0, max=1.0, max_open=True,
                         doc="truncation threshold: p_y <= k gives the constant Lq(k) (paper: 0.5)")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 q: float = 0.7, k: float = 0.5) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.q, self.k = float(q), float(k)

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        log_p = F.log_softmax(logits, axis=-1)
        lq_k = (1.0 - self.k ** self.q) / self.q
        log_k = math.log(self.k) if self.k > 0 else -math.inf
        truncated = paddle.where(log_p > log_k, _lq(log_p, self.q), paddle.full_like(log_p, lq_k))
        return (target * truncated).sum(axis=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, q={self.q:g}, k={self.k:g}"
