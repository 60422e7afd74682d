"""Noise-rate and transition-matrix estimates, label-quality scores and label-issue ranking.

Confident learning (Northcutt, Jiang & Chuang 2021, "Confident Learning: Estimating Uncertainty in Dataset
Labels", https://arxiv.org/abs/1911.00068): from predicted probabilities ``p`` [N, C] (ideally
out-of-sample, see ``pipeline.kfold.cross_val_pred_probs``) and the given labels ``s`` [N]:

1. per-class thresholds ``t_j`` = mean of ``p[:, j]`` over the samples labelled ``j`` (the class's mean
   self-confidence);
2. the *confident joint* ``Cj[i, j]`` counts samples with given label ``i`` whose probability for class
   ``j`` reaches ``t_j`` (the largest such class when several do) - "labelled i, confidently j";
3. calibration rescales each row to the label count of class ``i`` (and the whole to N), giving an
   estimate of the latent joint counts of (given, true) labels;
4. label issues are pruned per off-diagonal cell (``prune_by_noise_rate``): for given label ``i`` and true
   class ``j != i``, the ``Cj[i, j]`` samples (rounded preserving the row total) with the largest margin
   ``p_j - p_i`` are flagged.

Conventions used throughout the package:

* the confident joint and :func:`estimate_joint` are indexed ``[given, true]`` (as in cleanlab);
* :func:`estimate_noise_matrix` returns ``T[true, given] = P(given = j | true = i)`` - rows sum to 1, the
  same orientation as ``robust_paddle.data.noise`` transition matrices (``symmetric_matrix``,
  ``NoiseSpec.transition_matrix``), so the two can be compared directly.

Everything here is a pure function over numpy arrays.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.errors import DataError

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

QUALITY_METHODS = ("self_confidence", "normalized_margin")
COMBINE_RULES = ("union", "intersection", "none")
PROB_ATOL = 1e-3  # tolerance on probability rows summing to 1 (float32 softmax outputs)


# ---------------------------------------------------------------------------------------------- checks
def check_inputs(labels: Any, pred_probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``labels`` [N] and ``pred_probs`` [N, C]; returns (int64 labels, float64 probabilities).

    Raises:
        TypeError: labels are not integers.
        ValueError: wrong shapes, N mismatch, empty input, non-finite or negative probabilities, rows not
            summing to 1 (within 1e-3), or labels outside [0, C).
    """
    probs = np.asarray(pred_probs)
    if probs.ndim != 2:
        raise DataError(f"pred_probs must be a 2-D array [N, C], got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.number) or np.issubdtype(probs.dtype, np.complexfloating):
        raise DataError(f"pred_probs must hold real numbers, got dtype {probs.dtype}")
    n, c = probs.shape
    if n == 0:
        raise DataError("pred_probs is empty (N = 0); need at least one sample")
    if c < 2:
        raise DataError(f"pred_probs must have at least 2 classes (columns), got {c}")
    probs = probs.astype(np.float64)
    if not np.isfinite(probs).all():
        bad = int(np.flatnonzero(~np.isfinite(probs).all(axis=1))[0])
        raise DataError(f"pred_probs has NaN/Inf values (first in row {bad}); pass softmax probabilities")
    if (probs < 0).any():
        bad = int(np.flatnonzero((probs < 0).any(axis=1))[0])
        raise DataError(f"pred_probs has negative values (first in row {bad}); pass softmax probabilities, "
                         "not logits")
    sums = probs.sum(axis=1)
    off = np.abs(sums - 1.0) > PROB_ATOL
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        raise DataError(f"pred_probs rows must sum to 1 (within {PROB_ATOL}); row {bad} sums to {sums[bad]:.6f}. "
                         "Apply a softmax to logits first")
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise DataError(f"labels must be a 1-D array [N], got shape {lab.shape}")
    if lab.dtype == bool or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"labels must be integers in [0, {c}), got dtype {lab.dtype}")
    if lab.shape[0] != n:
        raise DataError(f"labels has {lab.shape[0]} entries but pred_probs has {n} rows; they must match")
    if lab.min() < 0 or lab.max() >= c:
        bad = int(lab[(lab < 0) | (lab >= c)][0])
        raise DataError(f"labels must be in [0, {c}) for pred_probs with {c} columns; found {bad}")
    return lab.astype(np.int64), probs


def _check_clean_prob(clean_prob: Any, n: int) -> np.ndarray:
    w = np.asarray(clean_prob, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"clean_prob must have shape ({n},) (one value per sample), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or (w > 1).any():
        raise DataError("clean_prob values must be probabilities in [0, 1]")
    return w


# --------------------------------------------------------------------------------------- confident joint
def confident_thresholds(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Per-class thresholds [C]: mean ``p[:, j]`` over samples labelled ``j`` (``inf`` for absent classes,
    so no sample is ever counted as confidently belonging to a class nobody carries)."""
    labels, probs = check_inputs(labels, pred_probs)
    c = probs.shape[1]
    counts = np.bincount(labels, minlength=c)
    sums = np.zeros(c)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)


def _confident_classes(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[N] class each sample is confidently in (largest probability among those at or above their
    threshold), or -1 when no class reaches its threshold."""
    ok = probs >= thresholds[None, :] - 1e-6
    masked = np.where(ok, probs, -np.inf)
    out = masked.argmax(axis=1)
    out[~ok.any(axis=1)] = -1
    return out


def confident_joint(labels: np.ndarray, pred_probs: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    """Confident joint ``Cj`` [C, C], indexed ``[given, true]`` (Northcutt et al. 2021, Sec. 3.1, Eq. 1-2).

    Args:
        labels: [N] given (possibly noisy) labels in [0, C).
        pred_probs: [N, C] predicted probabilities, ideally out-of-sample.
        calibrate: rescale row ``i`` to the number of samples labelled ``i`` (Eq. 3), so ``Cj.sum() == N``
            and ``Cj.sum(1) == bincount(labels)``; a labelled class with no confident sample keeps all its
            count on the diagonal (nothing suggests its labels are wrong).

    Returns:
        [C, C] float64 counts (integers when ``calibrate=False``).
    """
    labels, probs = check_inputs(labels, pred_probs)
    c = probs.shape[1]
    conf = _confident_classes(probs, confident_thresholds(labels, probs))
    keep = conf >= 0
    cj = np.zeros((c, c))
    np.add.at(cj, (labels[keep], conf[keep]), 1.0)
    if not calibrate:
        return cj
    counts = np.bincount(labels, minlength=c).astype(np.float64)
    rows = cj.sum(axis=1)
    out = np.zeros_like(cj)
    has = rows > 0
    out[has] = cj[has] / rows[has, None] * counts[has, None]
    empty = ~has & (counts > 0)
    out[empty, empty] = counts[empty]
    return out


def estimate_joint(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Estimated joint distribution ``Q[i, j] = P(given = i, true = j)`` [C, C] (sums to 1)."""
    cj = confident_joint(labels, pred_probs, calibrate=True)
    return cj / cj.sum()


def estimate_noise_matrix(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Estimated noise transition matrix ``T[i, j] = P(given = j | true = i)`` [C, C].

    Rows are the true class and sum to 1 (the orientation of ``robust_paddle.data.noise`` matrices); a true
    class that no sample is estimated to belong to gets the identity row.

    Args:
        labels: [N] given labels in [0, C). pred_probs: [N, C] probabilities, ideally out-of-sample.
    """
    q = estimate_joint(labels, pred_probs)  # [given, true]
    t = q.T.copy()  # [true, given]
    mass = t.sum(axis=1)
    t[mass > 0] /= mass[mass > 0, None]
    missing = np.flatnonzero(mass <= 0)
    t[missing] = 0.0
    t[missing, missing] = 1.0
    return t


def estimate_noise_rate(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """Estimated fraction of wrong labels ``1 - trace(Q)`` from the calibrated confident joint.

    Args:
        labels: [N] given labels in [0, C). pred_probs: [N, C] probabilities, ideally out-of-sample.

    Returns:
        float in [0, 1].
    """
    q = estimate_joint(labels, pred_probs)
    return float(np.clip(1.0 - np.trace(q), 0.0, 1.0))


# ---------------------------------------------------------------------------------------- quality scores
def label_quality_scores(labels: np.ndarray, pred_probs: np.ndarray, *,
                         method: str = "self_confidence") -> np.ndarray:
    """Per-sample label quality in [0, 1]; lower means more likely mislabelled.

    Args:
        labels: [N] given labels. pred_probs: [N, C] probabilities.
        method: ``"self_confidence"`` = ``p[given]``; ``"normalized_margin"`` =
            ``(p[given] - max_{k != given} p[k] + 1) / 2`` (Northcutt et al. 2021; Kuan & Mueller 2022,
            https://arxiv.org/abs/2210.03920).

    Returns:
        [N] float64.
    """
    if method not in QUALITY_METHODS:
        raise DataError(f"method: {method!r} is not a label-quality method; choose one of: "
                         f"{', '.join(QUALITY_METHODS)}")
    labels, probs = check_inputs(labels, pred_probs)
    rows = np.arange(len(labels))
    self_conf = probs[rows, labels]
    if method == "self_confidence":
        return self_conf
    others = probs.copy()
    others[rows, labels] = -np.inf
    return (self_conf - others.max(axis=1) + 1.0) / 2.0


# ------------------------------------------------------------------------------------------ label issues
def round_preserving_total(row: np.ndarray, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Integers closest to ``row`` [C] whose sum is ``round(row.sum())`` (largest remainders get the +1s).

    Rounding each confident-joint cell on its own can drop most of a row's noise: ten cells of 0.4 would
    all become 0. This is the rounding cleanlab applies (``round_preserving_row_totals``). Ties between
    equal remainders go to the lower index, or are broken at random with ``rng`` (exact noise injection,
    ``data.noise_gen.apply_transition``, so no class is favoured). Values within 1e-9 below an integer
    count as that integer (``100 * 0.29`` is 28.999999999999996 in floating point).
    """
    x = np.asarray(row, dtype=np.float64)
    out = np.floor(x + 1e-9).astype(np.int64)
    missing = int(np.rint(x.sum())) - int(out.sum())
    if missing > 0:
        frac = x - out
        order = (np.argsort(-frac, kind="stable") if rng is None
                 else np.lexsort((rng.random(frac.size), -frac)))
        out[order[:missing]] += 1
    return out


def prune_by_noise_rate(labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """Confident-learning issue mask [N] bool (Northcutt et al. 2021, Sec. 3.2, "prune by noise rate").

    For each given class ``i`` and true class ``j != i`` the ``Cj[i, j]`` samples labelled ``i`` (rounded
    so the row keeps its total, :func:`round_preserving_total`) with the largest margin ``p_j - p_i`` are
    flagged (at least one sample per labelled class is kept);
    finally samples whose predicted class equals the given label are unflagged, as in cleanlab.
    """
    labels, probs = check_inputs(labels, pred_probs)
    c = probs.shape[1]
    cj = confident_joint(labels, probs, calibrate=True)
    mask = np.zeros(len(labels), dtype=bool)
    for i in range(c):
        rows = np.flatnonzero(labels == i)
        if rows.size <= 1:
            continue
        counts = round_preserving_total(cj[i])
        counts[i] = 0
        budget = rows.size - 1  # keep at least one sample of every labelled class
        if counts.sum() > budget:
            counts = np.floor(counts * budget / counts.sum()).astype(np.int64)
        for j in np.flatnonzero(counts):
            margin = probs[rows, j] - probs[rows, i]
            mask[rows[np.argsort(-margin, kind="stable")[: counts[j]]]] = True
    mask &= probs.argmax(axis=1) != labels
    return mask


def find_label_issues(labels: np.ndarray, pred_probs: np.ndarray, *, clean_prob: np.ndarray | None = None,
                      combine: str = "union", clean_threshold: float = 0.5) -> np.ndarray:
    """Boolean mask [N] of samples whose given label looks wrong.

    Confident learning (:func:`prune_by_noise_rate`) flags samples from the probabilities alone. When a
    training method supplies ``clean_prob`` (the probability that each label is correct, e.g. from a
    two-component GMM on per-sample losses, Li et al. 2020, https://arxiv.org/abs/2002.07394), the two
    views are combined:

    * ``"union"`` (default): also flag samples with ``clean_prob < clean_threshold`` whose predicted class
      differs from the given label - the loss-based view catches memorised-but-suspicious samples the
      thresholds miss, and the disagreement requirement keeps the extra flags precise;
    * ``"intersection"``: flag only samples both views agree on (higher precision, lower recall);
    * ``"none"``: ignore ``clean_prob``.

    Args:
        labels: [N] given labels in [0, C).
        pred_probs: [N, C] probabilities (out-of-sample, or from a noise-robust model).
        clean_prob: optional [N] probabilities in [0, 1] that each given label is correct.
        combine: ``"union"`` | ``"intersection"`` | ``"none"``.
        clean_threshold: ``clean_prob`` below this marks a sample as noisy in the loss-based view.

    Returns:
        [N] bool, True = likely label issue.
    """
    if combine not in COMBINE_RULES:
        raise DataError(f"combine: {combine!r} is not allowed; choose one of: {', '.join(COMBINE_RULES)}")
    if not 0.0 < clean_threshold < 1.0:
        raise DataError(f"clean_threshold must be in (0, 1), got {clean_threshold!r}")
    labels, probs = check_inputs(labels, pred_probs)
    mask = prune_by_noise_rate(labels, probs)
    if clean_prob is None or combine == "none":
        return mask
    w = _check_clean_prob(clean_prob, len(labels))
    gmm_noisy = (w < clean_threshold) & (probs.argmax(axis=1) != labels)
    return (mask | gmm_noisy) if combine == "union" else (mask & gmm_noisy)


def detection_scores(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a boolean ``flagged`` [N] mask against the true ``truth`` [N] mask."""
    flagged, truth = np.asarray(flagged, dtype=bool), np.asarray(truth, dtype=bool)
    if flagged.shape != truth.shape:
        raise DataError(f"flagged has shape {flagged.shape} but truth has {truth.shape}; they must match")
    tp = float(np.sum(flagged & truth))
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / truth.sum() if truth.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "flagged": int(flagged.sum()), "true_issues": int(truth.sum())}


