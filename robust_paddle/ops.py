"""Small shared mechanisms used across the package, one of each: atomic file writes, softmax, per-sample
cross-entropy (numpy), symmetric KL with an explicit reduction, mixup, FMix masks, and seed derivation.

Imports nothing from the package (a leaf of the layer graph, see ``tests/test_layers.py``). The Paddle
per-sample cross-entropy with soft targets and label smoothing is ``losses.functional.per_sample_ce``.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "softmax", "per_sample_ce", "symmetric_kl", "mixup", "fmix_mask", "derive_seed"]


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
                 ) -> Iterator[IO[Any]]:
    """Write ``path`` all or nothing: into a temporary file in the same folder, flushed and ``fsync``-ed, then
    ``os.replace``-d over ``path``. On any exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to (re)write; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding, newline: as for :func:`open` in text mode (``newline=""`` for the csv module).

    Yields:
        The open temporary file.

    Raises:
        OSError: the folder is missing or not writable, the disk is full (``path`` keeps its old content).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding,
                       newline=None if "b" in mode else newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # write()/fsync() on a full disk name no file
            raise OSError(e.errno, e.strerror or str(e), path) from e
        raise


def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax of [N, C] logits -> [N, C] float64 (max-subtracted, stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def per_sample_ce(logits: Any, labels: Any) -> np.ndarray:
    """Cross-entropy of each row of ``logits`` [N, C] against integer ``labels`` [N] -> [N] float64
    (``logsumexp(z) - z[label]``, exact for any logit range)."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return lse - z[np.arange(z.shape[0]), np.asarray(labels, dtype=np.int64)]


def symmetric_kl(logits_a: Any, logits_b: Any, *, reduction: str) -> Any:
    """``KL(p_a || p_b) + KL(p_b || p_a) = sum_k (p_a,k - p_b,k)(log p_a,k - log p_b,k)`` of two [B, C] logits.

    Computed in float32 outside AMP; both sides carry gradient. ``reduction``: ``"none"`` -> [B] (JoCoR's
    co-regularisation, Wei et al. 2020, arXiv:2003.02752), ``"mean"`` / ``"sum"`` over the batch -> scalar
    (R-Drop, Liang et al. 2021, arXiv:2106.14448, uses half the mean).
    """
    import paddle
    import paddle.nn.functional as F

    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"symmetric_kl: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    if list(logits_a.shape) != list(logits_b.shape) or logits_a.ndim != 2:
        raise ValueError(f"symmetric_kl needs two [B, C] logits of the same shape, got {list(logits_a.shape)} "
                         f"and {list(logits_b.shape)}")
    with paddle.amp.auto_cast(enable=False):
        la = F.log_softmax(logits_a.astype("float32"), axis=-1)
        lb = F.log_softmax(logits_b.astype("float32"), axis=-1)
        kl = ((la.exp() - lb.exp()) * (la - lb)).sum(axis=-1)
        return kl if reduction == "none" else kl.mean() if reduction == "mean" else kl.sum()


def mixup(x: Any, targets: Any, *, lam: float, perm: Any) -> tuple[Any, Any]:
    """Mix every row with row ``perm[i]``: ``lam * a + (1 - lam) * a[perm]`` for inputs and targets
    (mixup, Zhang et al. 2018, arXiv:1710.09412; MixMatch's mixing step, arXiv:1905.02249).

    Args:
        x: [B, ...] inputs; targets: [B, C] soft targets (numpy or paddle, same kind).
        lam: mixing coefficient in [0, 1].
        perm: [B] permutation (numpy int array or paddle int Tensor).

    Returns:
        ``(mixed_x [B, ...], mixed_targets [B, C])``.
    """
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"mixup: lam must be in [0, 1], got {lam!r}")
    if x.shape[0] != targets.shape[0] or len(perm) != x.shape[0]:
        raise ValueError(f"mixup: x, targets and perm need the same length, got {x.shape[0]}, "
                         f"{targets.shape[0]} and {len(perm)}")
    if isinstance(x, np.ndarray):
        p = np.asarray(perm)
        xb, tb = x[p], targets[p]
    else:
        import paddle

        p = perm if isinstance(perm, paddle.Tensor) else paddle.to_tensor(np.asarray(perm, dtype=np.int64),
                                                                           place=x.place)
        xb, tb = paddle.gather(x, p), paddle.gather(targets, p)
    return lam * x + (1 - lam) * xb, lam * targets + (1 - lam) * tb


def fmix_mask(rng: np.random.Generator, shape_hw: tuple[int, int], *, alpha: float = 1.0,
              decay_power: float = 3.0) -> tuple[float, np.ndarray]:
    """An FMix mask (Harris et al. 2020, "FMix: Enhancing Mixed Sample Data Augmentation", arXiv 2002.12047;
    the ``sample_mask`` of its reference code, ``max_soft = 0``, as ProMix uses it).

    ``lam ~ Beta(alpha, alpha)``; a random low-frequency image (Fourier coefficients ``N(0, 1)`` scaled by
    ``1 / max(f, 1 / max(H, W)) ** decay_power``) is set to 1 on its ``ceil(lam H W)`` or (coin flip)
    ``floor(lam H W)`` largest pixels, 0 elsewhere. Mix with ``mask * x + (1 - mask) * x[perm]`` and targets
    ``lam * t + (1 - lam) * t[perm]`` (the reference weights its two CEs by ``lam``, not by the mask's mean).
    Written here: it is a dozen NumPy lines and the reference's package is not on PyPI.

    Args:
        rng: the generator of every draw (lam, the coefficients, the coin), in that order.
        shape_hw: ``(H, W)`` of the images; alpha: Beta parameter; decay_power: frequency decay.

    Returns:
        ``(lam, mask)``: the float lam and a float32 [H, W] mask of 0 / 1.
    """
    h, w = (int(v) for v in shape_hw)
    lam = float(rng.beta(alpha, alpha))
    freqs = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[: w // 2 + 1] ** 2)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
    spectrum = rng.standard_normal((*freqs.shape, 2)) * scale[..., None]
    image = np.fft.irfftn(spectrum[..., 0] + 1j * spectrum[..., 1], s=(h, w))
    num = math.ceil(lam * h * w) if rng.random() > 0.5 else math.floor(lam * h * w)
    mask = np.zeros(h * w, dtype=np.float32)
    mask[np.argsort(-image.reshape(-1), kind="stable")[:num]] = 1.0
    return lam, mask.reshape(h, w)


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from integers (run seed, epoch, network ...): ``numpy.random.SeedSequence``
    entropy mixing, so nearby inputs give unrelated streams. The one way the package derives seeds."""
    return int(np.random.SeedSequence([int(p) % 2**32 for p in parts]).generate_state(1)[0] % (2**31 - 1))
