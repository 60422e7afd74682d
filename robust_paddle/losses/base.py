"""The base class every loss derives from, its declared parameters and the per-class vector check.

Every registered loss declares a frozen ``Params`` dataclass (:class:`LossParams` plus its own fields, built
with :func:`robust_paddle.schema.param`): the registry checks ``loss.params`` against it (types, ranges,
choices; ``loss.params.q: 0.0 is out of range; must be > 0.0 and <= 1.0``) and the constructors take the
validated values. Constructors check only what the declaration cannot: values that depend on
``num_classes`` (a per-class vector's length, ``ignore_index`` outside the classes) and combinations.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import paddle

from robust_paddle.errors import ConfigError
from robust_paddle.losses import functional as LF
from robust_paddle.schema import param

logger = logging.getLogger(__name__)


def check_class_vector(value: object, *, name: str, where: str, num_classes: int) -> np.ndarray:
    """A length-``num_classes`` vector of finite, non-negative numbers (not all zero) as float32."""
    if isinstance(value, (str, bytes, paddle.Tensor)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ConfigError(
            f"{where}: {name} must be a list of {num_classes} numbers (one per class), "
            f"got {type(value).__name__}"
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in value):
        raise ConfigError(f"{where}: {name} must contain only numbers, got {list(value)!r}")
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1 or arr.shape[0] != num_classes:
        raise ConfigError(
            f"{where}: {name} must have one entry per class (length {num_classes}), got length "
            f"{arr.shape[0] if arr.ndim == 1 else list(arr.shape)}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.any(arr > 0):
        raise ConfigError(f"{where}: {name} must be finite, >= 0 and not all zero, got {arr.tolist()!r}")
    return arr.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class LossParams:
    """``loss.params`` every loss takes (each loss's ``Params`` adds its own fields)."""

    reduction: str = param("mean", choices=LF.REDUCTIONS, doc="mean over the batch, sum, or none ([N] losses)")
    weight: list[float] | None = param(None, doc="per-class weights, one per class, >= 0, not all zero")
    ignore_index: int | None = param(None, doc="a label outside 0..C-1 (e.g. -100) whose samples get loss 0")


class RobustLoss(paddle.nn.Layer, metaclass=abc.ABCMeta):
    """Base of every ``*Loss``: input checks, float32 arithmetic, class and sample weights, reduction.

    Subclasses set ``loss_name`` (the registry name, used in messages) and implement
    :meth:`per_sample`. ``forward`` then:

    1. validates ``logits [N, C]`` and ``target`` (int labels ``[N]``/``[N, 1]`` or soft ``[N, C]``) and
       casts both to float32 ``[N, C]`` (hard labels become one-hot rows) with AMP disabled;
    2. computes per-sample losses ``l_i`` with :meth:`per_sample`;
    3. multiplies by the class weight of the target, ``c_i = sum_k weight_k * t_ik`` (``weight[y_i]`` for
       hard labels), and by ``sample_weight[i]`` when given;
    4. reduces: ``"mean"`` = ``mean_i(c_i * s_i * l_i)`` over all N samples (unlike
       ``paddle.nn.functional.cross_entropy``, it is *not* divided by the sum of the weights, so a batch's
       value does not depend on which other samples it holds), ``"sum"``, or ``"none"`` (``[N]``).

    Args:
        num_classes: C >= 2.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        weight: optional per-class weights, length C, finite, >= 0, not all zero.
        ignore_index: an int label outside ``0..C-1`` (e.g. -100 for padding or unlabelled targets): samples
            with this hard label get loss 0 and ``"mean"`` averages over the other samples only (0 when a
            batch holds none); soft targets are never ignored. Label smoothing (``ce``) applies to the kept
            samples' targets only.
    """

    loss_name: ClassVar[str] = "loss"

    def __init__(self, *, num_classes: int, reduction: str = "mean", weight: list[float] | None = None,
                 ignore_index: int | None = None) -> None:
        super().__init__()
        where = self.loss_name
        # num_classes comes from the data, not from loss.params: checked here
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ConfigError(f"{where}: num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.reduction = reduction  # declared choices (LossParams); reduce_loss refuses others at call time
        if ignore_index is not None and 0 <= ignore_index < num_classes:  # depends on num_classes
            raise ConfigError(f"{where}: ignore_index must be an int outside the class indices 0..{num_classes - 1} "
                             f"(e.g. -100), got {ignore_index!r}")
        self.ignore_index = ignore_index
        if weight is None:
            self.class_weight = None
        else:
            w = check_class_vector(weight, name="weight", where=where, num_classes=self.num_classes)
            self.register_buffer("class_weight", paddle.to_tensor(w), persistable=False)

    @abc.abstractmethod
    def per_sample(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        """Unweighted per-sample losses.

        Args:
            logits: ``[N, C]`` float32.
            target: ``[N, C]`` float32 target probabilities (one-hot rows for hard labels).

        Returns:
            ``[N]`` float32.
        """

    def forward(self, logits: paddle.Tensor, target: paddle.Tensor,
                sample_weight: paddle.Tensor | None = None) -> paddle.Tensor:
        """Loss of a batch.

        Args:
            logits: ``[N, C]`` float scores (fp16/bf16 are cast to float32).
            target: int64 labels ``[N]`` (or ``[N, 1]``), or float soft targets ``[N, C]``.
            sample_weight: optional ``[N]`` float weights multiplied into the per-sample losses.

        Returns:
            Scalar float32 Tensor, or ``[N]`` for ``reduction="none"``.
        """
        keep = None
        if self.ignore_index is not None and isinstance(target, paddle.Tensor) and target.dtype in (
                paddle.int64, paddle.int32) and (target.ndim == 1 or (target.ndim == 2 and target.shape[1] == 1)):
            flat = target.reshape([-1])
            keep = flat != self.ignore_index
            target = paddle.where(keep, flat, paddle.zeros_like(flat))  # any valid class; the loss is masked
        with paddle.amp.auto_cast(enable=False):
            z, t = LF.prepare(logits, target, num_classes=self.num_classes, where=self.loss_name)
            loss = self.per_sample(z, t)
            if self.class_weight is not None:
                loss = loss * paddle.matmul(t, self.class_weight)
            if keep is None:
                return LF.reduce_loss(loss, reduction=self.reduction, sample_weight=sample_weight, where=self.loss_name)
            k = keep.astype("float32")
            loss = loss * k
            if self.reduction != "mean":
                return LF.reduce_loss(loss, reduction=self.reduction, sample_weight=sample_weight, where=self.loss_name)
            total = LF.reduce_loss(loss, reduction="sum", sample_weight=sample_weight, where=self.loss_name)
            return total / paddle.clip(k.sum(), min=1.0)

    def extra_repr(self) -> str:
        text = f"num_classes={self.num_classes}, reduction={self.reduction!r}"
        if self.class_weight is not None:
            text += f", weight={[round(float(w), 6) for w in self.class_weight.numpy()]}"
        return text
