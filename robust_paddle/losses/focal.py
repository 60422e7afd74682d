"""Focal loss.

Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, https://arxiv.org/abs/1708.02002.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.errors import ConfigError
from robust_paddle.losses.base import LossParams, RobustLoss, check_class_vector
from robust_paddle.registry import LOSSES
from robust_paddle.schema import param

# Floor for 1 - p before the power: (1 - p)^gamma has an infinite derivative at p = 1 when gamma < 1,
# and p rounds to exactly 1 in float32 for confident predictions; flooring keeps gradients finite.
_MIN_ONE_MINUS_P = 1e-12


@LOSSES.register("focal")
class FocalLoss(RobustLoss):
    """Softmax focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` (Lin et al. 2017, https://arxiv.org/abs/1708.02002).

    Down-weights well-classified samples by ``(1 - p_y)^gamma``. Soft targets give
    ``-sum_k alpha_k t_k (1 - p_k)^gamma log p_k``. With ``gamma = 0`` and no ``alpha`` it equals CE.

    ``alpha`` is the paper's balancing factor: a list gives one ``alpha_k`` per class; a scalar multiplies
    every term (the paper's binary "alpha for positives, 1 - alpha for negatives" has no single-label
    multi-class analogue, so a scalar is a plain scale). ``weight`` (per-class, applied per sample from
    the target like every loss here) composes with it.

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights (length C).
        gamma: focusing parameter >= 0 (paper: 2).
        alpha: None (1), a scalar > 0, or a list of C non-negative numbers.

    Shapes:
        logits ``[N, C]``; target ``[N]`` int labels or ``[N, C]`` probabilities; output scalar or ``[N]``.
    """

    loss_name = "focal"

    @dataclasses.dataclass(frozen=True)
    class Params(LossParams):
        gamma: float = param(2.0, min=0.0, doc="focusing parameter: (1 - p_y)^gamma (paper: 2)")
        # its range depends on the form (a scale > 0, a per-class vector of num_classes entries): constructor
        alpha: float | list[float] | None = param(None, doc="balancing factor: a scale > 0, or one weight >= 0 "
                                                  "per class")

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None,
                 gamma: float = 2.0, alpha: float | list[float] | None = None) -> None:
        super().__init__(num_classes=num_classes, reduction=reduction, weight=weight, ignore_index=ignore_index)
        self.gamma = float(gamma)
        self.alpha_scale = 1.0
        self.alpha = None
        if isinstance(alpha, (Sequence, np.ndarray)) and not isinstance(alpha, (str, bytes)):
            vec = check_class_vector(alpha, name="alpha", where=self.loss_name, num_classes=self.num_classes)
            self.register_buffer("alpha_per_class", paddle.to_tensor(vec), persistable=False)
            self.alpha = vec.tolist()
        else:
            self.alpha_per_class = None
            if alpha is not None:
                if alpha <= 0:
                    raise ConfigError(f"{self.loss_name}: alpha must be > 0, got {alpha!r}")
                self.alpha_scale = float(alpha)
                self.alpha = self.alpha_scale

    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        log_p = F.log_softmax(logits, axis=-1)
        terms = -target * log_p
        if self.gamma > 0:
            one_minus_p = paddle.clip(-paddle.expm1(log_p), min=_MIN_ONE_MINUS_P)
            terms = terms * one_minus_p.pow(self.gamma)
        if self.alpha_per_class is not None:
            terms = terms * self.alpha_per_class
        loss = terms.sum(axis=-1)
        return loss * self.alpha_scale if self.alpha_scale != 1.0 else loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma:g}, alpha={self.alpha!r}"
