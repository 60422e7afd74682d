"""Label correction by loss modelling: GMM clean probabilities, label refinement, MixMatch helpers.

Pure functions over numpy arrays (the label / mixing helpers also accept ``paddle.Tensor`` so the methods
use exactly the tested code). The recipe is DivideMix's (Li et al. 2020, https://arxiv.org/abs/2002.07394):
per-sample cross-entropy losses over the training set are min-max normalised and a two-component
Gaussian mixture is fitted to them; the posterior of the low-mean component is each sample's probability
of carrying a clean label. Arazo et al. 2019 (https://arxiv.org/abs/1904.11238) model the same losses
with a mixture and refine labels as ``w * y + (1 - w) * p``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import precision_score, recall_score
from sklearn.mixture import GaussianMixture

from robust_paddle.errors import DataError
from robust_paddle.ops import mixup

logger = logging.getLogger(__name__)

__all__ = [
    "combine_clean_prior",
    "fit_loss_gmm",
    "gmm_noise_rate",
    "linear_rampup",
    "loss_clean_probability",
    "mix_lambda",
    "mixture_failure",
    "mix_forward",
    "normalize_losses",
    "refine_labels",
    "sharpen",
    "split_precision_recall",
]


# ------------------------------------------------------------------------------------------- checks
def _losses_1d(losses: Any, *, where: str) -> np.ndarray:
    arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}: losses must be a 1-D array [N], got shape {list(arr.shape)}")
    if arr.shape[0] < 2:
        raise DataError(f"{where}: losses needs at least 2 samples to fit a 2-component mixture, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise DataError(f"{where}: losses must be finite; index {bad} is {arr[bad]}")
    return arr


def _positive(value: Any, *, name: str, where: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise DataError(f"{where}: {name} must be a number, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise DataError(f"{where}: {name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("paddle") and hasattr(x, "stop_gradient")


def _row_sum(a: Any) -> Any:
    return a.sum(axis=-1, keepdim=True) if _is_tensor(a) else np.sum(a, axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------ the GMM
def normalize_losses(losses: Any) -> np.ndarray:
    """Min-max normalisation to [0, 1], as DivideMix does before fitting its mixture.

    Args:
        losses: [N] per-sample losses (array-like, finite).

    Returns:
        [N] float64, ``(l - min) / (max - min)``.

    Raises:
        ValueError: not 1-D, fewer than 2 values, a non-finite value, or all values equal (then nothing
            separates clean from noisy samples).
    """
    arr = _losses_1d(losses, where="normalize_losses")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0.0:
        raise DataError(f"normalize_losses: all {arr.shape[0]} losses equal {lo!r}; a mixture cannot separate "
                         "clean from noisy samples (is the network outputting constant logits?)")
    return (arr - lo) / (hi - lo)


def fit_loss_gmm(losses: Any, *, seed: int, reg_covar: float = 5e-4, tol: float = 1e-2, max_iter: int = 10,
                 normalize: bool = True) -> tuple[np.ndarray, GaussianMixture]:
    """Fit a 2-component Gaussian mixture to per-sample losses; clean = the component with the smaller mean.

    The defaults are DivideMix's (``reg_covar=5e-4, tol=1e-2, max_iter=10``), chosen for losses in
    [0, 1]; ``sklearn`` warns that 10 EM iterations may not converge, which is expected and logged at
    DEBUG level instead.

    Args:
        losses: [N] per-sample losses.
        seed: ``random_state`` of the k-means initialisation (explicit, so runs are reproducible).
        reg_covar, tol, max_iter: ``sklearn.mixture.GaussianMixture`` options.
        normalize: min-max normalise first (:func:`normalize_losses`); pass False for losses that are
            already normalised (e.g. an average of normalised losses over epochs).

    Returns:
        ``(clean_prob [N] float64 in [0, 1], fitted GaussianMixture)``.

    Raises:
        ValueError: bad losses (see :func:`normalize_losses`) or options.
    """
    where = "fit_loss_gmm"
    arr = normalize_losses(losses) if normalize else _losses_1d(losses, where=where)
    _positive(reg_covar, name="reg_covar", where=where)
    _positive(tol, name="tol", where=where)
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise DataError(f"{where}: max_iter must be an int >= 1, got {max_iter!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"{where}: seed must be an int, got {seed!r} ({type(seed).__name__})")
    gmm = GaussianMixture(n_components=2, max_iter=int(max_iter), tol=tol, reg_covar=reg_covar,
                          random_state=int(seed) % 2**32)
    x = arr.reshape(-1, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gmm.fit(x)
    for w in caught:
        logger.debug("GaussianMixture: %s", w.message)
    prob = gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.reshape(-1)))]
    return prob, gmm


#: the mixture separates two populations only when each component holds at least this many samples' worth
#: of weight and their means (on min-max normalised losses) differ by more than ``MIN_MEAN_GAP``
MIN_COMPONENT_SAMPLES = 1.0
MIN_MEAN_GAP = 1e-3


def mixture_failure(gmm: GaussianMixture, n: int) -> str | None:
    """Why a fitted 2-component mixture does not separate two populations, or None when it does.

    Failures: an empty component (weight below ``MIN_COMPONENT_SAMPLES / n``), means closer than
    ``MIN_MEAN_GAP``, or non-finite parameters.
    """
    weights, means = np.asarray(gmm.weights_, dtype=np.float64), np.asarray(gmm.means_, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(means))):
        return "the mixture's parameters are not finite"
    if float(weights.min()) * n < MIN_COMPONENT_SAMPLES:
        return f"one component is empty (weights {weights.round(6).tolist()} over {n} samples)"
    gap = float(abs(means[1] - means[0]))
    if gap <= MIN_MEAN_GAP:
        return f"the components' means are equal (gap {gap:.2g} <= {MIN_MEAN_GAP:g} on normalised losses)"
    return None


def loss_clean_probability(losses: Any, *, seed: int, normalize: bool = True, where: str = "loss GMM",
                           **gmm_options: Any) -> tuple[np.ndarray, GaussianMixture | None, str | None]:
    """Clean probabilities from :func:`fit_loss_gmm` with its degenerate cases handled instead of raised.

    * all losses equal (e.g. every loss exactly 0 on perfectly fitted clean data): nothing marks any sample
      as noisy, so every sample is clean (probability 1) and a warning says so;
    * the mixture does not separate (:func:`mixture_failure`: an empty component, equal means): the split
      would be arbitrary, so every sample is clean, with a warning naming the reason.

    Args:
        losses: [N] per-sample losses (finite).
        seed, normalize, gmm_options: as :func:`fit_loss_gmm`.
        where: how the warning names the caller (e.g. ``"dividemix net1, epoch 5"``).

    Returns:
        ``(clean_prob [N] float64, the mixture or None when it fell back, the fallback reason or None)``.

    Raises:
        ValueError: not 1-D, fewer than 2 values, or a non-finite value.
    """
    arr = _losses_1d(losses, where="loss_clean_probability")
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo <= 0.0:
        reason = f"all {arr.shape[0]} losses equal {lo!r}"
        logger.warning("%s: %s; every sample is treated as clean (clean_prob = 1)", where, reason)
        return np.ones(arr.shape[0]), None, reason
    prob, gmm = fit_loss_gmm(arr, seed=seed, normalize=normalize, **gmm_options)
    reason = mixture_failure(gmm, arr.shape[0])
    if reason is None and not np.all(np.isfinite(prob)):
        reason = "the mixture's posteriors are not finite"
    if reason is not None:
        logger.warning("%s: the loss mixture does not separate two populations (%s); every sample is treated "
                       "as clean (clean_prob = 1)", where, reason)
        return np.ones(arr.shape[0]), None, reason
    return prob, gmm, None


def combine_clean_prior(prob: Any, prior: Any | None, *, eps: float = 1e-6) -> np.ndarray:
    """A loss mixture's clean probabilities with a per-sample prior in place of its single clean share.

    The mixture's posterior is ``p_i = pi f_c(l_i) / (pi f_c(l_i) + (1 - pi) f_n(l_i))`` with one clean share
    ``pi`` for every sample (estimated as ``mean(p)``, the mixture weight at the EM fixed point). Given a
    per-sample prior ``pi_i`` (the annotators' agreement on the sample's label, say), Bayes' rule with the same
    likelihoods gives ``odds(p'_i) = odds(p_i) * odds(pi_i) / odds(pi)``: samples the annotators agreed on move
    towards clean, disputed ones towards noisy, and a prior equal to ``pi`` changes nothing. When the mixture fell
    back to "all clean" (every ``p_i = 1``), the loss says nothing and ``p'_i = pi_i``.

    Args:
        prob: [N] clean probabilities of the loss mixture, in [0, 1].
        prior: [N] prior clean probabilities in [0, 1], NaN where there is none (that sample keeps ``p_i``);
            None returns ``prob`` unchanged.
        eps: probabilities are clipped to ``[eps, 1 - eps]`` before taking odds.

    Returns:
        [N] float64 clean probabilities.

    Raises:
        DataError: shapes differ, or values outside [0, 1].
    """
    p = np.asarray(prob, dtype=np.float64)
    if prior is None:
        return p.copy()
    q = np.asarray(prior, dtype=np.float64)
    if p.ndim != 1 or q.shape != p.shape:
        raise DataError(f"combine_clean_prior: prob and prior must both be [N], got {list(p.shape)} and {list(q.shape)}")
    known = ~np.isnan(q)
    if ((p < 0) | (p > 1)).any() or ((q[known] < 0) | (q[known] > 1)).any():
        raise DataError("combine_clean_prior: probabilities must be in [0, 1]")

    def logit(v: Any) -> Any:
        v = np.clip(v, eps, 1.0 - eps)
        return np.log(v) - np.log1p(-v)

    base = logit(float(p.mean()))
    z = logit(p) - base + logit(np.where(known, q, 0.5))
    out = 1.0 / (1.0 + np.exp(-z))
    return np.where(known, out, p)


def gmm_noise_rate(losses: Any, *, seed: int = 0) -> float:
    """Estimated fraction of noisy labels: the posterior mass of the high-loss mixture component.

    Degenerate losses (all equal, or a mixture that does not separate) give 0.0 with a warning
    (:func:`loss_clean_probability`).

    The estimate is ``mean(1 - clean_prob)`` from a mixture fitted to convergence (``max_iter=200``,
    ``tol=1e-4``, DivideMix's ``reg_covar``) on min-max normalised losses. At convergence this equals
    the weight of the high-mean component; the posterior mean is used because it is computed from the
    same per-sample probabilities that the report shows (the weight is one M-step behind them), so the
    estimate and the flagged samples always agree. Take the losses when the network has fitted the
    clean labels but not yet memorised the noisy ones (e.g. the end of a CE warm-up).

    Args:
        losses: [N] per-sample losses.
        seed: random_state of the mixture's initialisation.

    Returns:
        Noise-rate estimate in [0, 1].
    """
    prob, _, _ = loss_clean_probability(losses, seed=seed, max_iter=200, tol=1e-4, where="gmm_noise_rate")
    return float(np.mean(1.0 - prob))


def split_precision_recall(selected: Any, clean_mask: Any) -> tuple[float, float]:
    """Precision and recall of a clean/labelled split against the known clean-label mask.

    Args:
        selected: [N] bool, samples treated as clean (labelled).
        clean_mask: [N] bool, samples whose given label equals the true one.

    Returns:
        ``(precision, recall)``: precision = clean fraction of the selected samples, recall = selected
        fraction of the clean samples (0.0 when the denominator is empty).
    """
    sel, clean = np.asarray(selected), np.asarray(clean_mask)
    if sel.shape != clean.shape or sel.ndim != 1:
        raise DataError(f"split_precision_recall: selected and clean_mask must be 1-D of equal length, got "
                         f"shapes {list(sel.shape)} and {list(clean.shape)}")
    for name, a in (("selected", sel), ("clean_mask", clean)):
        if a.dtype != np.bool_:
            raise DataError(f"split_precision_recall: {name} must be a bool array, got dtype {a.dtype}")
    if sel.shape[0] == 0:
        return 0.0, 0.0
    return (float(precision_score(clean, sel, zero_division=0)),
            float(recall_score(clean, sel, zero_division=0)))


# ------------------------------------------------------------------------------ label refinement
def refine_labels(onehot: Any, pred: Any, w: Any) -> Any:
    """Label refinement ``w * y + (1 - w) * p`` (DivideMix co-refinement; Arazo et al.'s bootstrapping).

    Args:
        onehot: [N, C] given labels as one-hot (or soft) rows.
        pred: [N, C] predicted class probabilities.
        w: [N] or [N, 1] weight of the given label (the clean probability), in [0, 1].

    Returns:
        [N, C] refined targets, same type as the inputs (numpy or paddle).
    """
    if tuple(onehot.shape) != tuple(pred.shape) or len(onehot.shape) != 2:
        raise DataError(f"refine_labels: onehot and pred must both be [N, C], got shapes {list(onehot.shape)} "
                         f"and {list(pred.shape)}")
    n = onehot.shape[0]
    if tuple(w.shape) not in ((n,), (n, 1)):
        raise DataError(f"refine_labels: w must be [N] or [N, 1] with N={n}, got shape {list(w.shape)}")
    w = w.reshape([n, 1]) if _is_tensor(w) else np.reshape(w, (n, 1))
    return w * onehot + (1 - w) * pred


def sharpen(p: Any, T: float) -> Any:
    """Temperature sharpening ``p_k^(1/T) / sum_j p_j^(1/T)`` along the last axis (MixMatch, DivideMix).

    Args:
        p: [N, C] probabilities (numpy or paddle).
        T: temperature > 0; T = 1 returns p renormalised, T -> 0 approaches one-hot.

    Returns:
        [N, C] sharpened probabilities, rows summing to 1.
    """
    t = _positive(T, name="T", where="sharpen")
    pt = p ** (1.0 / t)
    return pt / _row_sum(pt)


def linear_rampup(current: float, warm_up: float, rampup_length: float = 16) -> float:
    """Ramp-up factor of the unlabelled loss weight: ``clip((current - warm_up) / rampup_length, 0, 1)``.

    DivideMix multiplies ``lambda_u`` by this factor, with ``current = epoch + batch / batches_per_epoch``
    (0-based epochs) and ``rampup_length = 16``. A length of 0 switches the weight on at ``warm_up``.

    Returns:
        float in [0, 1].
    """
    length = _positive(rampup_length, name="rampup_length", where="linear_rampup", allow_zero=True)
    if length == 0:
        return 1.0 if current >= warm_up else 0.0
    return float(np.clip((current - warm_up) / length, 0.0, 1.0))


# ------------------------------------------------------------------------------------------ mixing
def mix_lambda(alpha: float, rng: np.random.Generator) -> float:
    """MixMatch's mixing coefficient: ``l ~ Beta(alpha, alpha)``, returned as ``max(l, 1 - l)``.

    Taking the larger side keeps the mixed sample closer to its first input, so the labelled/unlabelled
    halves of a MixMatch batch stay mostly what they were.
    """
    a = _positive(alpha, name="alpha", where="mix_lambda")
    lam = float(rng.beta(a, a))
    return max(lam, 1.0 - lam)


def mix_forward(net: Any, x: Any, targets: Any, *, lam: float, perm: Any) -> tuple[Any, Any]:
    """Logits of a mixed batch and the mixed targets: :func:`mixup` of the inputs, or, for token ids (text
    models; ids cannot be interpolated), of ``net.forward_features`` before ``net.classifier`` (senMixup, Guo
    et al. 2019, https://arxiv.org/abs/1905.08941).

    Args:
        net: the network (with ``forward_features`` / ``classifier`` for token ids). x: [B, ...] inputs.
        targets: [B, C] soft targets. lam, perm: as :func:`mixup`.

    Returns:
        ``(logits [B, C], mixed_targets [B, C])``.
    """
    import paddle

    if x.dtype in (paddle.int64, paddle.int32):
        feats, mixed_t = mixup(net.forward_features(x), targets, lam=lam, perm=perm)
        return net.classifier(feats), mixed_t
    mixed_x, mixed_t = mixup(x, targets, lam=lam, perm=perm)
    return net(mixed_x), mixed_t
