"""Small-loss sample selection and the forget-rate schedule of the Co-teaching family.

Pure functions over NumPy arrays or Paddle Tensors, testable without a trainer.

Deep networks fit clean labels before they memorise wrong ones, so early in training the samples with
the smallest loss are mostly correctly labelled. Co-teaching (Han et al. 2018,
https://arxiv.org/abs/1804.06872) keeps, in every mini-batch, the ``R(T) = 1 - tau * min((T / T_k)^c, 1)``
fraction of samples with the smallest loss, where ``tau`` is the forget rate (about the noise rate),
``T`` the epoch and ``T_k`` the number of epochs over which the forget rate ramps up.

ProMix's selection rules (Wang et al. 2022, https://arxiv.org/abs/2207.10276) live here too: class-wise
small-loss selection over the training set and label guessing by agreement within a batch.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import paddle

from robust_paddle.errors import DataError

logger = logging.getLogger(__name__)


def _check_fraction(value: object, *, name: str, where: str, hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"{where}: {name} must be a number in [0, 1{')' if hi_open else ']'}, "
                        f"got {value!r} ({type(value).__name__})")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v and (v < 1.0 if hi_open else v <= 1.0)):
        raise DataError(f"{where}: {name} must be in [0, 1{')' if hi_open else ']'}, got {value!r}")
    return v


def _check_count(value: object, *, name: str, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"{where}: {name} must be an int >= {lo}, got {value!r} ({type(value).__name__})")
    if int(value) < lo:
        raise DataError(f"{where}: {name} must be an int >= {lo}, got {value!r}")
    return int(value)


def num_kept(n: int, *, keep_ratio: float) -> int:
    """How many of ``n`` samples a ``keep_ratio`` keeps: ``floor(keep_ratio * n + 0.5)``, at least 1.

    Rounding is half-up (not Python's half-to-even ``round``), so 2.5 keeps 3. The original Co-teaching
    code floors instead; rounding keeps the realised fraction closest to ``keep_ratio`` on small batches.

    Args:
        n: number of candidates, >= 1.
        keep_ratio: fraction in [0, 1].

    Returns:
        k in [1, n].
    """
    n = _check_count(n, name="n", where="num_kept", lo=1)
    r = _check_fraction(keep_ratio, name="keep_ratio", where="num_kept")
    # the 1e-9 guards against 0.6 * 5 = 2.9999999999999996 style float error before the floor
    return min(n, max(1, int(math.floor(r * n + 0.5 + 1e-9))))


def small_loss_indices(losses: np.ndarray | paddle.Tensor, *, keep_ratio: float
                       ) -> np.ndarray | paddle.Tensor:
    """Indices of the ``k = num_kept(N, keep_ratio)`` smallest losses.

    Ties are broken by position (a stable sort), so equal losses keep their batch order and the result
    is deterministic.

    Args:
        losses: ``[N]`` per-sample losses (NumPy array or Paddle Tensor, any float dtype), N >= 1.
        keep_ratio: fraction of samples to keep, in [0, 1] (at least one sample is always kept).

    Returns:
        ``[k]`` int64 indices into ``losses``, smallest loss first; a NumPy array for NumPy input, a
        Paddle Tensor on the input's place for Tensor input.

    Raises:
        TypeError: ``losses`` is neither an array nor a Tensor, or ``keep_ratio`` is not a number.
        ValueError: ``losses`` is not 1-D, is empty or holds NaN; ``keep_ratio`` is outside [0, 1].
    """
    where = "small_loss_indices"
    is_tensor = isinstance(losses, paddle.Tensor)
    if is_tensor:
        values = losses.detach().astype("float32").numpy()
    elif isinstance(losses, np.ndarray):
        values = losses
    else:
        raise DataError(f"{where}: losses must be a numpy array or paddle.Tensor [N], "
                        f"got {type(losses).__name__}")
    if values.ndim != 1 or values.shape[0] == 0:
        raise DataError(f"{where}: losses must have shape [N] with N >= 1, got shape {list(values.shape)}")
    if np.isnan(values).any():
        raise DataError(f"{where}: losses contain NaN; small-loss selection needs finite or +inf losses")
    k = num_kept(values.shape[0], keep_ratio=keep_ratio)
    idx = np.argsort(values, kind="stable")[:k].astype(np.int64)
    if is_tensor:
        return paddle.to_tensor(idx, place=losses.place)
    return idx


def prior_loss_offset(prior: np.ndarray, *, eps: float = 1e-3) -> np.ndarray:
    """``-log(prior)`` per sample, added to the per-sample losses that small-loss selection ranks.

    With cross-entropy, ``loss_i - log(prior_i) = -log(p_model(y_i | x_i) * prior_i)``: the samples kept are
    those whose label is most probable under the network and the prior together (e.g. the annotators'
    agreement on the label), treated as independent evidence. Only the ranking uses it; the networks train on
    their plain losses.

    Args:
        prior: [N] prior probabilities that each label is right, in [0, 1]; NaN where there is none (those
            samples get the offset of the mean prior, so they rank by their loss against an average sample).
        eps: the prior is clipped to ``[eps, 1]`` (a prior of 0 must not exclude a sample for ever).

    Returns:
        [N] float32 offsets >= 0.

    Raises:
        DataError: not 1-D, or values outside [0, 1].
    """
    q = np.asarray(prior, dtype=np.float64)
    if q.ndim != 1:
        raise DataError(f"prior_loss_offset: prior must have shape [N], got {list(q.shape)}")
    known = ~np.isnan(q)
    if ((q[known] < 0) | (q[known] > 1)).any():
        raise DataError("prior_loss_offset: prior must be in [0, 1]")
    fill = float(q[known].mean()) if known.any() else 1.0
    return (-np.log(np.clip(np.where(known, q, fill), eps, 1.0))).astype(np.float32)


def forget_rate_schedule(epoch: int, *, forget_rate: float, num_gradual: int, exponent: float = 1.0) -> float:
    """Co-teaching's forget rate at ``epoch``: ``tau * min((T / T_k)^c, 1)``.

    The keep ratio is ``R(T) = 1 - forget_rate_schedule(T, ...)`` (Han et al. 2018,
    https://arxiv.org/abs/1804.06872, Sec. 3). ``T`` is the 0-based epoch, i.e. the number of epochs
    already trained, so the first epoch trains on every sample and the full rate ``tau`` is reached at
    ``T = T_k`` (the reference code's ``linspace(0, tau, T_k)`` reaches it one epoch earlier).

    Args:
        epoch: T, the 0-based epoch (>= 0).
        forget_rate: tau in [0, 1), about the fraction of wrong labels.
        num_gradual: T_k >= 0, epochs over which the rate ramps up (0: ``tau`` from the start).
        exponent: c > 0; c = 1 is the paper's linear ramp.

    Returns:
        The forget rate in [0, tau].

    Example:
        >>> forget_rate_schedule(5, forget_rate=0.4, num_gradual=10)
        0.2
    """
    where = "forget_rate_schedule"
    t = _check_count(epoch, name="epoch", where=where)
    tau = _check_fraction(forget_rate, name="forget_rate", where=where, hi_open=True)
    tk = _check_count(num_gradual, name="num_gradual", where=where)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(exponent)) or float(exponent) <= 0:
        raise DataError(f"{where}: exponent must be a number > 0, got {exponent!r}")
    if tk == 0:
        return tau
    return tau * min((t / tk) ** float(exponent), 1.0)


def selection_counts(selected_mask: np.ndarray, clean_mask: np.ndarray) -> tuple[int, int, int]:
    """``(clean selected, selected, clean)`` counts for two boolean masks of the same length.

    The counts add up over batches, so an epoch's precision and recall are ratios of summed counts.

    Args:
        selected_mask: ``[N]`` bool, True where a sample was selected (kept for the update).
        clean_mask: ``[N]`` bool, True where the given label equals the true label.

    Raises:
        ValueError: the masks are not 1-D of the same length.
        TypeError: a mask is not boolean.
    """
    sel, clean = np.asarray(selected_mask), np.asarray(clean_mask)
    for name, m in (("selected_mask", sel), ("clean_mask", clean)):
        if m.dtype != np.bool_:
            raise DataError(f"selection_counts: {name} must be a boolean array, got dtype {m.dtype}")
        if m.ndim != 1:
            raise DataError(f"selection_counts: {name} must have shape [N], got shape {list(m.shape)}")
    if sel.shape != clean.shape:
        raise DataError(f"selection_counts: selected_mask has shape {list(sel.shape)} but clean_mask has "
                         f"{list(clean.shape)}; they must describe the same samples")
    return int(np.count_nonzero(sel & clean)), int(np.count_nonzero(sel)), int(np.count_nonzero(clean))


def precision_recall_from_counts(clean_selected: int, selected: int, clean: int) -> tuple[float, float]:
    """``(clean_selected / selected, clean_selected / clean)``; NaN where a denominator is 0."""
    precision = clean_selected / selected if selected else float("nan")
    recall = clean_selected / clean if clean else float("nan")
    return precision, recall


def selection_precision_recall(selected_mask: np.ndarray, clean_mask: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a selection as a detector of correctly labelled samples.

    precision = fraction of selected samples whose label is clean (the "label precision" / "pure ratio"
    of the Co-teaching papers); recall = fraction of clean samples that were selected. Hand-written
    rather than ``sklearn.metrics.precision_score`` because it runs on every mini-batch, where sklearn's
    input validation costs more than the counting, and because an empty selection should read as
    undefined (NaN), not 0.

    Args:
        selected_mask: ``[N]`` bool, True where a sample was selected.
        clean_mask: ``[N]`` bool, True where the given label is correct.

    Returns:
        (precision, recall), each in [0, 1], or NaN when nothing is selected / nothing is clean.
    """
    return precision_recall_from_counts(*selection_counts(selected_mask, clean_mask))


def blended_count(global_count: int, quota: int, balance: float) -> int:
    """A class's selection size ``round((1 - balance) * global_count + balance * quota)`` (half-up): ``balance``
    moves it from what a global rule selects in the class (0) to the class's UNICON quota (1)."""
    return int(math.floor((1.0 - balance) * global_count + balance * quota + 0.5 + 1e-9))


def class_balanced_mask(prob: np.ndarray, labels: np.ndarray, *, threshold: float, balance: float,
                        num_classes: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """The labelled (clean) set of a division chosen per class, UNICON's uniform selection at ``balance = 1``.

    Karim et al. 2022, "UNICON: Combating Label Noise Through Uniform Selection and Contrastive Learning",
    https://arxiv.org/abs/2203.14542 (reference ``dataloader_cifar.py``): with ``s`` the share of the training set
    a global rule selects (here ``prob > threshold``, DivideMix's labelled set), every class keeps its
    ``min(n_c, floor(s N / C))`` most probably clean samples -- all of a class smaller than the quota, at most the
    quota of a larger one -- so a rare class whose samples all look noisy to the global rule is never emptied and a
    frequent class does not dominate the labelled set. ``balance`` moves each class's count from the global
    rule's ``t_c = |{prob > threshold} in c|`` (``balance = 0``: exactly ``prob > threshold``) to that quota ``q_c``:
    class ``c`` keeps ``round((1 - balance) t_c + balance q_c)`` samples (half-up).

    Within a class the samples rank by ``prob`` (highest first), ties by ``tiebreak`` (lowest first; e.g. the
    loss the mixture was fitted on -- a saturated posterior gives a whole noisy-looking class the same 0), then by
    index. Classes are the given labels.

    Args:
        prob: [N] clean probabilities. labels: [N] int given labels in [0, num_classes).
        threshold: the clean-probability threshold of the global rule (``p_threshold``).
        balance: in [0, 1]; 0 returns ``prob > threshold``, 1 gives UNICON's per-class quota.
        num_classes: C.
        tiebreak: [N] optional secondary key, lower = more probably clean.

    Returns:
        [N] bool mask.

    Raises:
        DataError: shapes differ, or ``balance`` is outside [0, 1].
    """
    prob = np.asarray(prob, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    b = _check_fraction(balance, name="balance", where="class_balanced_mask")
    if labels.shape != prob.shape or prob.ndim != 1 or (tiebreak is not None and np.shape(tiebreak) != prob.shape):
        raise DataError(f"class_balanced_mask: prob {list(prob.shape)}, labels {list(labels.shape)} and tiebreak "
                        f"{None if tiebreak is None else list(np.shape(tiebreak))} must all have shape [N]")
    mask = prob > threshold
    if b <= 0 or prob.size == 0:
        return mask
    second = np.zeros_like(prob) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64)
    # UNICON's class_len = int(SR * N / C); the 1e-9 guards float error before the floor
    uniform = int(math.floor(mask.sum() / num_classes + 1e-9))
    out = np.zeros_like(mask)
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if members.size == 0:
            continue
        quota = min(members.size, uniform)
        keep = blended_count(int(mask[members].sum()), quota, b)
        order = members[np.lexsort((members, second[members], -prob[members]))]
        out[order[:keep]] = True
    return out


def class_balanced_weights(prob: np.ndarray, labels: np.ndarray, *, min_share: float,
                           num_classes: int) -> np.ndarray:
    """Soft clean weights with a floor per class: the weighted analogue of :func:`class_balanced_mask`.

    Every class ``c`` (by given label) whose mean clean probability ``m_c`` is below ``min_share * m`` (``m``: the
    overall mean) has its members' probabilities scaled up, ``min(1, r_c * prob)`` with the ``r_c >= 1`` (found by
    bisection) that brings the class mean to that floor; other classes are unchanged. The order within a class is
    kept (its most probably clean samples rise first). Without it, a network leaning to one class gives the other
    class's samples high losses, its clean weights sum to a fraction of the first class's, and training on the
    weighted labels pushes the network further to the first class (gmm_correction on text: class weights
    723 vs 161 of 784 / 716 samples, predictions drifting to one class; benchmarks/README.md).

    Args:
        prob: [N] clean probabilities in [0, 1]. labels: [N] int given labels in [0, num_classes).
        min_share: in [0, 1]; 0 returns ``prob``, 1 gives every class at least the overall mean.
        num_classes: C.

    Returns:
        [N] float32 weights >= ``prob``.
    """
    prob = np.asarray(prob, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    out = prob.copy()
    if min_share <= 0 or prob.size == 0:
        return out.astype(np.float32)
    floor = min_share * float(prob.mean())
    for c in range(num_classes):
        p = prob[labels == c]
        if p.size == 0 or p.mean() >= floor:
            continue
        p = np.maximum(p, 1e-6)  # a class of zeros still rises (in the order of its tiny probabilities: ties)
        lo, hi = 1.0, 1.0 / float(p.min())  # r = hi makes every member 1 >= floor
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if np.minimum(1.0, mid * p).mean() < floor else (lo, mid)
        out[labels == c] = np.minimum(1.0, hi * p)
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------- ProMix (arXiv 2207.10276)
def class_wise_small_loss(losses: np.ndarray, labels: np.ndarray, *, num_classes: int, rho: float,
                          balance: float = 1.0) -> np.ndarray:
    """ProMix's CSS: [N] bool, in every class ``j`` the ``q_j = max(1, min(ceil(rho * N / C), n_j))`` smallest losses.

    The per-class quota is UNICON's uniform selection (Karim et al. 2022, arXiv 2203.14542): a class smaller than
    the quota keeps all its samples, a larger one at most the quota. ``balance`` < 1 moves each class's count
    towards ``g_j``, the class's members among the ``sum_j q_j`` smallest losses of the whole set (plain, global
    small-loss selection of the same size; ``balance = 0``): class ``j`` keeps
    ``round((1 - balance) g_j + balance q_j)`` (half-up) of its smallest losses. ``balance = 1`` is the paper's CSS.

    Args:
        losses: [N] per-sample losses; labels: [N] int given labels; rho: selection ratio in [0, 1];
        balance: in [0, 1].

    Ties keep index order (stable sort), so the mask is deterministic.
    """
    losses, labels = np.asarray(losses), np.asarray(labels, dtype=np.int64)
    b = _check_fraction(balance, name="balance", where="class_wise_small_loss")
    mask = np.zeros(labels.shape[0], dtype=bool)
    quota = math.ceil(labels.shape[0] / num_classes * rho)
    rows_of = [np.flatnonzero(labels == j) for j in range(num_classes)]
    want = [max(min(quota, rows.size), 1) if rows.size else 0 for rows in rows_of]
    if b < 1:
        glob = np.zeros(labels.shape[0], dtype=bool)
        glob[np.argsort(losses, kind="stable")[:sum(want)]] = True
        want = [blended_count(int(glob[rows].sum()), k, b) for rows, k in zip(rows_of, want)]
    for rows, k in zip(rows_of, want):
        if k:
            mask[rows[np.argsort(losses[rows], kind="stable")[:k]]] = True
    return mask


def label_guessing_by_agreement(chosen: np.ndarray, px: np.ndarray, *, tau: float, threshold: float) -> np.ndarray:
    """ProMix's LGA (the reference's ``label_guessing``): rows both networks predict alike with confidence.

    For network ``k`` whose chosen share of the batch is below ``threshold``, the unchosen rows on which every
    network's top probability exceeds ``tau`` and the top classes agree join, at most
    ``int(B * threshold) - chosen_k`` of them, those of highest mean top probability first (stable order).

    Args:
        chosen: [K, B] bool, the rows each network already trains on (CSS | MHCS); px: [K, B, C] softmax.

    Returns:
        [K, B] bool: the rows guessed for each network (disjoint from ``chosen``); they learn the network's
        debiased prediction instead of the given label.
    """
    chosen, px = np.asarray(chosen, dtype=bool), np.asarray(px)
    k_nets, batch = chosen.shape
    score, pred = px.max(axis=2), px.argmax(axis=2)
    agree = (score > tau).all(axis=0) & (pred == pred[0]).all(axis=0)
    mean_score = score.mean(axis=0)
    out = np.zeros_like(chosen)
    for k in range(k_nets):
        n_chosen = int(chosen[k].sum())
        if n_chosen / max(batch, 1) >= threshold:
            continue
        rows = np.flatnonzero(agree & ~chosen[k])
        room = max(int(batch * threshold) - n_chosen, 0)
        out[k, rows[np.argsort(-mean_score[rows], kind="stable")[:room]]] = True
    return out
