"""The non-finite guard: NaN/Inf in a loss, the first input batches, the weights or evaluation logits stops a
run with :class:`NonFiniteLossError` (a ``TrainingError``) before any hook can write a checkpoint, so the
last good checkpoint is kept. The trainer calls these checks; they only read tensors and arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import TrainingError

__all__ = ["CHECKED_INPUT_BATCHES", "NonFiniteLossError", "check_input_batch", "check_logits", "check_weights"]

#: the inputs of this many first batches of a trainer's run are checked for NaN/Inf (later batches are
#: covered by the loss check; a bad input there shows up as a non-finite loss)
CHECKED_INPUT_BATCHES = 8
_FLOATS = (paddle.float16, paddle.float32, paddle.float64, paddle.bfloat16)


class NonFiniteLossError(TrainingError):
    """A NaN/Inf loss, input, weight or evaluation logit; the run stopped and the last good checkpoint was
    left untouched (the check runs before any hook can write one)."""


def _finite_rows(x: paddle.Tensor) -> np.ndarray:
    flat = x.reshape([x.shape[0], -1]) if x.ndim > 1 else x.reshape([-1, 1])
    return paddle.isfinite(flat.astype("float32")).all(axis=1).numpy()


def check_input_batch(batch: Any, i: int, *, epoch: int, distributed: bool, kept: str) -> None:
    """NaN/Inf in a float input batch ``(x [B, ...], y, idx)`` -> error naming the first bad dataset index.

    Data parallel: collective (every rank calls it for the same batches and all raise together).
    """
    x = batch[0]
    bad_rows = None
    if isinstance(x, paddle.Tensor) and x.dtype in _FLOATS:  # token ids (int64) cannot be NaN
        finite = _finite_rows(x)
        if not finite.all():
            bad_rows = np.flatnonzero(~finite)
    bad = bad_rows is not None
    if distributed:
        bad = dist.any_true(bad)
    if bad:
        where = "on another rank"
        if bad_rows is not None:
            idx = np.asarray(batch[2]).reshape(-1) if len(batch) > 2 else bad_rows
            where = f"dataset index {int(idx[bad_rows[0]])} ({bad_rows.size} sample(s) in the batch)"
        raise NonFiniteLossError(f"input batch {i + 1} of epoch {epoch + 1} holds NaN/Inf values: {where}; "
                                 f"training stopped and {kept}. Fix or drop those samples")


def check_weights(networks: dict[str, paddle.nn.Layer], *, epoch: int, kept: str) -> None:
    """Every float parameter and buffer (BN statistics) of every network is finite, else an error naming
    the network and the tensor. Exploding weights can leave the training loss finite (batch statistics),
    so this runs at each epoch end, before any division, evaluation or checkpoint sees them."""
    for name, net in networks.items():
        for key, value in dist.unwrap(net).state_dict().items():
            if isinstance(value, paddle.Tensor) and value.dtype in _FLOATS \
                    and not bool(paddle.isfinite(value.astype("float32")).all()):
                raise NonFiniteLossError(f"weights of network {name!r} became non-finite ({key}) in epoch "
                                         f"{epoch + 1}; training stopped and {kept}. Lower optimizer.lr or "
                                         "enable train.grad_clip")


def check_logits(logits: np.ndarray, idx: np.ndarray, *, during: str = "") -> None:
    """``logits [N, C]`` all finite, else an error naming how many rows and the first dataset index
    (``during``: what the trainer adds, e.g. the epoch and the checkpoint kept)."""
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        raise NonFiniteLossError(
            f"the network's logits are NaN/Inf for {int(bad.sum())} of {bad.size} samples (first: dataset index "
            f"{int(idx[np.flatnonzero(bad)[0]])}){during}; the weights have diverged (lower optimizer.lr or "
            "enable train.grad_clip)")
