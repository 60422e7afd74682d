"""Tensor helpers shared by every loss and by methods that need per-sample losses (DivideMix, selection).

Targets come in two forms and every helper accepts both:

* hard labels: integer Tensor ``[N]`` (or ``[N, 1]``) with values in ``[0, C)``;
* soft targets: float Tensor ``[N, C]`` of class probabilities (mixup, MixMatch/DivideMix label
  co-guessing, label refinement).

Hard labels are turned into one-hot rows, so one formula serves both forms and a hard label gives
exactly the value of its one-hot soft target. Everything is computed in float32 (fp16/bf16 logits are
cast up), so the helpers are safe to call under AMP.

The formulas are hand-written rather than taken from ``paddle.nn.functional.cross_entropy`` because
Paddle's fused op takes either hard or soft labels with different shape rules, normalises class-weighted
means by the weight sum, and would run in fp16 under AMP O2; writing ``-sum(t * log_softmax(z))`` once
keeps hard and soft targets identical and the arithmetic in float32.
"""

from __future__ import annotations

import logging
import math

import paddle
import paddle.nn.functional as F

from robust_paddle.errors import DataError

logger = logging.getLogger(__name__)

REDUCTIONS = ("mean", "sum", "none")

_INT_DTYPES = (paddle.int64, paddle.int32, paddle.int16, paddle.int8, paddle.uint8)
_FLOAT_DTYPES = (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64)


def _dtype_name(t: paddle.Tensor) -> str:
    return str(t.dtype).replace("paddle.", "")


def _require_tensor(value: object, *, name: str, where: str) -> paddle.Tensor:
    if not isinstance(value, paddle.Tensor):
        raise DataError(f"{where}: {name} must be a paddle.Tensor, got {type(value).__name__}")
    return value


def check_logits(logits: paddle.Tensor, *, num_classes: int | None = None, where: str = "loss") -> paddle.Tensor:
    """Validate ``logits`` and return them as float32.

    Args:
        logits: ``[N, C]`` floating-point scores (any float dtype), N >= 1.
        num_classes: expected C; None accepts any C >= 2.
        where: prefix for error messages (the loss name).

    Returns:
        ``[N, C]`` float32 Tensor.

    Raises:
        TypeError: not a Tensor, or not a floating dtype.
        ValueError: not 2-D, empty, or C differs from ``num_classes``.
    """
    _require_tensor(logits, name="logits", where=where)
    if logits.dtype not in _FLOAT_DTYPES:
        raise DataError(f"{where}: logits must be a float Tensor [N, C], got dtype {_dtype_name(logits)}")
    if logits.ndim != 2:
        raise DataError(f"{where}: logits must have shape [N, C], got shape {list(logits.shape)}")
    n, c = logits.shape
    if n == 0:
        raise DataError(f"{where}: logits has an empty batch (shape {list(logits.shape)}); a loss needs N >= 1")
    if num_classes is not None and c != num_classes:
        raise DataError(
            f"{where}: logits have {c} classes (shape {list(logits.shape)}) but num_classes={num_classes}"
        )
    if c < 2:
        raise DataError(f"{where}: logits must have at least 2 classes, got shape {list(logits.shape)}")
    return logits.astype("float32") if logits.dtype != paddle.float32 else logits


def to_one_hot(target: paddle.Tensor, num_classes: int) -> paddle.Tensor:
    """One-hot rows of hard labels.

    Args:
        target: integer Tensor ``[N]`` or ``[N, 1]`` with values in ``[0, num_classes)``.
        num_classes: C >= 2.

    Returns:
        ``[N, C]`` float32 Tensor.

    Raises:
        TypeError: ``target`` is not an integer Tensor (use :func:`target_probs` for soft targets).
        ValueError: wrong shape or a label outside ``[0, C)``.
    """
    where = "to_one_hot"
    _require_tensor(target, name="target", where=where)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DataError(f"{where}: num_classes must be an int >= 2, got {num_classes!r}")
    if target.dtype not in _INT_DTYPES:
        raise DataError(
            f"{where}: target must be integer labels [N], got dtype {_dtype_name(target)}; "
            "use target_probs() for soft [N, C] targets"
        )
    labels = _hard_labels(target, n=None, num_classes=num_classes, where=where)
    return F.one_hot(labels, num_classes).astype("float32")


def _hard_labels(target: paddle.Tensor, *, n: int | None, num_classes: int, where: str) -> paddle.Tensor:
    if target.ndim == 2 and target.shape[1] == 1:
        target = target.reshape([-1])
    if target.ndim != 1:
        raise DataError(f"{where}: hard labels must have shape [N] or [N, 1], got shape {list(target.shape)}")
    if n is not None and target.shape[0] != n:
        raise DataError(f"{where}: target has {target.shape[0]} labels but logits have N={n} rows")
    if target.shape[0] > 0:
        lo, hi = int(target.min().item()), int(target.max().item())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise DataError(f"{where}: label {bad} is out of range; labels must be in [0, {num_classes - 1}]")
    return target.astype("int64")


def target_probs(target: paddle.Tensor, num_classes: int, *, n: int | None = None, where: str = "loss") -> paddle.Tensor:
    """Target class probabilities from hard labels or soft targets.

    Args:
        target: integer labels ``[N]`` / ``[N, 1]``, or float soft targets ``[N, C]``.
        num_classes: C.
        n: expected N (the logits' batch size); None skips that check.
        where: prefix for error messages.

    Returns:
        ``[N, C]`` float32 Tensor (one-hot rows for hard labels; soft targets cast to float32).
    """
    _require_tensor(target, name="target", where=where)
    if target.dtype in _INT_DTYPES:
        return F.one_hot(_hard_labels(target, n=n, num_classes=num_classes, where=where), num_classes).astype("float32")
    if target.dtype not in _FLOAT_DTYPES:
        raise DataError(
            f"{where}: target must be int labels [N] or float soft targets [N, C], got dtype {_dtype_name(target)}"
        )
    if target.ndim != 2 or target.shape[1] != num_classes or (n is not None and target.shape[0] != n):
        expected = f"[{n if n is not None else 'N'}, {num_classes}]"
        hint = " (float [N] targets are not labels; pass int64 labels)" if target.ndim == 1 else ""
        raise DataError(
            f"{where}: soft target must have shape {expected} like the logits, got shape {list(target.shape)}{hint}"
        )
    return target.astype("float32") if target.dtype != paddle.float32 else target


def prepare(logits: paddle.Tensor, target: paddle.Tensor, *, num_classes: int | None = None,
            where: str = "loss") -> tuple[paddle.Tensor, paddle.Tensor]:
    """Validate a (logits, target) pair; returns float32 ``([N, C] logits, [N, C] target probabilities)``."""
    z = check_logits(logits, num_classes=num_classes, where=where)
    return z, target_probs(target, z.shape[1], n=z.shape[0], where=where)


def reduce_loss(loss: paddle.Tensor, *, reduction: str = "mean", sample_weight: paddle.Tensor | None = None,
                where: str = "loss") -> paddle.Tensor:
    """Weight per-sample losses and reduce them.

    Args:
        loss: ``[N]`` float32 per-sample losses.
        reduction: ``"mean"`` (mean over N of ``w_i * l_i``), ``"sum"`` or ``"none"`` (``[N]``).
        sample_weight: optional ``[N]`` (or ``[N, 1]``) float weights multiplied into the losses.

    Returns:
        Scalar Tensor, or ``[N]`` for ``reduction="none"``.
    """
    if reduction not in REDUCTIONS:
        raise DataError(f"{where}: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if sample_weight is not None:
        _require_tensor(sample_weight, name="sample_weight", where=where)
        if sample_weight.dtype not in _FLOAT_DTYPES:
            raise DataError(f"{where}: sample_weight must be a float Tensor [N], got dtype {_dtype_name(sample_weight)}")
        sw = sample_weight
        if sw.ndim == 2 and sw.shape[1] == 1:
            sw = sw.reshape([-1])
        if sw.ndim != 1 or sw.shape[0] != loss.shape[0]:
            raise DataError(
                f"{where}: sample_weight must have shape [{loss.shape[0]}] (one weight per sample), "
                f"got shape {list(sample_weight.shape)}"
            )
        loss = loss * sw.astype("float32")
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def smooth(target: paddle.Tensor, label_smoothing: float) -> paddle.Tensor:
    """``(1 - eps) * t + eps / C`` for ``[N, C]`` target probabilities."""
    if label_smoothing == 0.0:
        return target
    return target * (1.0 - label_smoothing) + label_smoothing / target.shape[1]


def per_sample_ce(logits: paddle.Tensor, target: paddle.Tensor, *, label_smoothing: float = 0.0) -> paddle.Tensor:
    """Per-sample cross-entropy ``-sum_k t_k log softmax(z)_k`` for hard or soft targets.

    Args:
        logits: ``[N, C]`` float (any float dtype; computed in float32).
        target: int labels ``[N]`` / ``[N, 1]`` or soft targets ``[N, C]``.
        label_smoothing: eps in ``[0, 1)``; the target becomes ``(1 - eps) * t + eps / C``.

    Returns:
        ``[N]`` float32 losses (differentiable w.r.t. ``logits``).
    """
    where = "per_sample_ce"
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise DataError(f"{where}: label_smoothing must be in [0, 1), got {label_smoothing!r}")
    with paddle.amp.auto_cast(enable=False):
        z, t = prepare(logits, target, where=where)
        return cross_entropy(z, smooth(t, float(label_smoothing)))


# ----------------------------------------------------------------------------- formulas on prepared inputs
# These take float32 [N, C] logits / probabilities that ``prepare`` has validated.


def cross_entropy(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """``[N]``: ``-sum_k t_k log p_k`` with ``p = softmax(logits)``."""
    return -(target * F.log_softmax(logits, axis=-1)).sum(axis=-1)


def reverse_cross_entropy(probs: paddle.Tensor, target: paddle.Tensor, *, log_zero: float = -4.0) -> paddle.Tensor:
    """``[N]``: ``-sum_k p_k log t_k`` with ``log 0`` clamped to ``log_zero`` (A in Wang et al. 2019).

    ``log(max(t, e^A)) = max(log t, A)``; clamping the argument keeps the gradient finite. For a one-hot
    target this is ``-A * (1 - p_y)``.
    """
    return -(probs * paddle.log(paddle.clip(target, min=math.exp(log_zero)))).sum(axis=-1)


def mean_absolute_error(probs: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """``[N]``: ``sum_k |p_k - t_k|`` (``2 (1 - p_y)`` for a one-hot target)."""
    return (probs - target).abs().sum(axis=-1)
