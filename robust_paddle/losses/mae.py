"""Mean absolute error on softmax probabilities.

Ghosh, Kumar & Sastry, "Robust Loss Functions under Label Noise for Deep Neural Networks", AAAI 2017,
https://arxiv.org/abs/1712.09482.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F

from robust_paddle.losses import functional as LF
from robust_paddle.losses.base import LossParams, RobustLoss
from robust_paddle.registry import LOSSES


@LOSSES.register("mae")
class MAELoss(RobustLoss):
    """``sum_k |p_k - t_k|`` (Ghosh et al. 2017, https://arxiv.org/abs/1712.09482).

    Symmetric, hence noise-tolerant under symmetric label noise, but slow to train on hard datasets.
    For a hard label it equals ``2 (1 - p_y)``.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "mae"
    Params = LossParams  # only the parameters every loss takes

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return LF.mean_absolute_error(F.softmax(logits, axis=-1), target)
