"""Class imbalance: per-class loss weights and a class-weighted random sampler.

Three weightings of class ``c`` with ``n_c`` training samples (absent classes get weight 0):

* ``inverse``: ``w_c ∝ 1 / n_c`` (every class contributes equally to the loss);
* ``inverse_sqrt``: ``w_c ∝ 1 / sqrt(n_c)`` (a milder correction, e.g. Mahajan et al. 2018,
  https://arxiv.org/abs/1805.00932);
* ``effective``: ``w_c ∝ (1 - beta) / (1 - beta^n_c)``, the inverse of the *effective number of
  samples* (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples",
  https://arxiv.org/abs/1901.05555); ``beta = 0`` gives equal weights, ``beta -> 1`` tends to ``inverse``.

As in Cui et al., weights are scaled so that they sum to the number of classes present, so the loss keeps
the scale of the unweighted one on a balanced set. The loss side is ``loss.class_weighting`` (the weights
are passed to the loss as ``weight=``); the sampler side is ``data.sampler: weighted``
(:class:`WeightedEpochBatchSampler`, sampling with replacement so each class is drawn with probability
proportional to ``n_c * w_c``).
"""

from __future__ import annotations

import logging

import numpy as np
import paddle

from robust_paddle.data.datasets import EpochBatchSampler
from robust_paddle.errors import DataError

logger = logging.getLogger(__name__)

WEIGHTINGS = ("inverse", "inverse_sqrt", "effective")


def class_counts(labels: np.ndarray, *, num_classes: int) -> np.ndarray:
    """Samples per class.

    Args:
        labels: [N] int labels in ``[0, num_classes)``.
        num_classes: C.

    Returns:
        [C] int64 counts.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {labels.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise DataError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes}), got values in [{labels.min()}, {labels.max()}]")
    return np.bincount(labels.astype(np.int64), minlength=num_classes).astype(np.int64)


def class_weights(labels: np.ndarray, *, num_classes: int, method: str = "inverse",
                  beta: float = 0.999) -> np.ndarray:
    """Per-class weights from the label distribution.

    Args:
        labels: [N] int training labels (the noisy ones the model is trained on).
        num_classes: C.
        method: ``"inverse"`` (1/n_c), ``"inverse_sqrt"`` (1/sqrt(n_c)) or ``"effective"``
            ((1 - beta) / (1 - beta^n_c), Cui et al. 2019, https://arxiv.org/abs/1901.05555).
        beta: ``effective`` only, in ``[0, 1)``.

    Returns:
        [C] float64 weights summing to the number of classes present; 0 for classes with no sample.

    Raises:
        ValueError: unknown ``method``, ``beta`` outside [0, 1), or no labels at all.
    """
    if method not in WEIGHTINGS:
        raise DataError(f"class weighting {method!r} is not known; choose one of: {', '.join(WEIGHTINGS)}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= float(beta) < 1.0:
        raise DataError(f"class weighting beta must be a number in [0, 1), got {beta!r}")
    counts = class_counts(labels, num_classes=num_classes).astype(np.float64)
    present = counts > 0
    if not present.any():
        raise DataError("class weights need at least one label, got an empty label array")
    if not present.all():
        logger.warning("classes %s have no training sample; their class weight is 0",
                       np.flatnonzero(~present).tolist())
    raw = np.zeros(num_classes, dtype=np.float64)
    n = counts[present]
    if method == "inverse":
        raw[present] = 1.0 / n
    elif method == "inverse_sqrt":
        raw[present] = 1.0 / np.sqrt(n)
    else:
        # 1 - beta^n computed as -expm1(n log beta) stays accurate when beta is close to 1
        raw[present] = (1.0 - beta) / -np.expm1(n * np.log(beta)) if beta > 0 else 1.0
    return raw * (present.sum() / raw.sum())


def sample_weights(labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-sample weights ``weights[labels[i]]`` ([N] float64), e.g. for :class:`WeightedEpochBatchSampler`."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if labels.size and labels.max() >= weights.size:
        raise DataError(f"label {labels.max()} has no weight (only {weights.size} class weights)")
    return weights[labels]


class WeightedEpochBatchSampler(EpochBatchSampler):
    """Batches of indices drawn with replacement with probability ``weights[i] / sum(weights)``.

    The draw of an epoch is a pure function of ``(seed, epoch)`` (like :class:`EpochBatchSampler`), so
    resumed runs replay the same batches. With weights from :func:`class_weights` (``inverse``) every
    class is drawn equally often in expectation.

    Args:
        dataset: the training dataset (its ``set_epoch`` is called like the default sampler does).
        weights: [N] non-negative per-sample weights, not all zero.
        batch_size: samples per batch.
        seed: run seed.
        num_samples: draws per epoch; None = ``len(dataset)``.
        drop_last: drop the last incomplete batch.
    """

    def __init__(self, dataset: paddle.io.Dataset, *, weights: np.ndarray, batch_size: int, seed: int,
                 num_samples: int | None = None, drop_last: bool = False) -> None:
        super().__init__(dataset, batch_size=batch_size, shuffle=True, seed=seed, drop_last=drop_last)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape[0] != len(dataset):
            raise DataError(f"sampler weights: need one weight per sample ({len(dataset)}), got {w.shape[0]}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
            raise DataError("sampler weights must be finite, >= 0 and not all zero")
        if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int)
                                        or num_samples < 1):
            raise DataError(f"sampler num_samples must be an int >= 1 or None, got {num_samples!r}")
        self.probs = w / w.sum()
        self.num_samples = len(dataset) if num_samples is None else num_samples

    def order(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's ``num_samples`` drawn indices, [num_samples] int64."""
        ep = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed % 2**63, ep, 1])
        return rng.choice(self.probs.shape[0], size=self.num_samples, replace=True, p=self.probs).astype(np.int64)

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def build_weighted_sampler(dataset: paddle.io.Dataset, *, batch_size: int, seed: int, method: str = "inverse",
                           beta: float = 0.999, drop_last: bool = False) -> WeightedEpochBatchSampler:
    """A :class:`WeightedEpochBatchSampler` over ``dataset`` weighted by its labels' class weights.

    Args:
        dataset: has ``labels`` [N] and ``num_classes``.
        method, beta: see :func:`class_weights`.
    """
    labels = np.asarray(dataset.labels)
    w = class_weights(labels, num_classes=int(dataset.num_classes), method=method, beta=beta)
    return WeightedEpochBatchSampler(dataset, weights=sample_weights(labels, w), batch_size=batch_size,
                                     seed=seed, drop_last=drop_last)
