"""Cross-entropy with label smoothing and class weights (the baseline every robust loss is compared to)."""

from __future__ import annotations

import dataclasses

import paddle

from robust_paddle.losses import functional as LF
from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param


@LOSSES.register("ce")
class CrossEntropyLoss(RobustLoss):
    """Softmax cross-entropy ``-sum_k t'_k log p_k`` with optional label smoothing.

    Label smoothing (Szegedy et al. 2015, https://arxiv.org/abs/1512.00567) replaces the target ``t`` by
    ``t' = (1 - eps) * t + eps / C``. Class weights scale each sample by the weight of its (unsmoothed)
    target, see :class:`~robust_paddle.losses.base.RobustLoss`.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        label_smoothing: eps in ``[0, 1)``.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "ce"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        label_smoothing: float = param(0.0, min=0.0, max=1.0, max_open=True,
                                       doc="eps: the target becomes (1 - eps) t + eps / C")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.label_smoothing = float(label_smoothing)

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return LF.cross_entropy(logits, LF.smooth(target, self.label_smoothing))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, label_smoothing={self.label_smoothing:g}"
