"""Noise estimates from a spot check: a person re-checks a random sample of the training labels.

Notation: ``C`` classes; the full training set has ``N`` samples whose *given* labels have counts
``n_g`` (``g = 0..C-1``); a reviewer verified ``M`` of them, drawn by :func:`sample_for_review` (stratified
by given label, proportional allocation), giving pairs ``(given g_m, verified t_m)``.

* Noise rate ``rho = P(true != given)``. With proportional allocation the sample mean of ``[t_m != g_m]`` is
  unbiased; when the sample is not proportional (``stratified=True`` weights), each given class is weighted by
  its share ``n_g / N`` of the training set. The 95 % interval is Wilson's score interval (Wilson 1927,
  "Probable inference, the law of succession, and statistical inference", JASA 22:209), which keeps its
  coverage near nominal for small ``M`` and rates near 0 where the normal (Wald) interval does not; for a
  weighted estimate it is applied with Kish's effective sample size.
* Per-class rates ``rho_g = P(true != g | given = g)``, each with its Wilson interval.
* Transition matrix ``T[true, given] = P(given | true)`` (rows sum to 1, the orientation of
  :func:`robust_paddle.quality.estimation.estimate_noise_matrix` and ``data.noise``): the rows
  ``P(true | given = g)`` are estimated with a symmetric Dirichlet(``alpha``) prior (posterior mean
  ``(count[g, t] + alpha) / (m_g + C * alpha)``), weighted by ``n_g / N`` into the joint ``P(given, true)``
  and normalised per true class (Bayes' rule).
* Combination with a model-based estimate (the report's noise rate and its interval): inverse-variance
  weighting, each standard deviation read from its 95 % interval as ``width / (2 * 1.96)``.
* Sample size: the smallest ``M`` whose Wilson interval at the current rate estimate is no wider than wanted.

Everything here is a pure function over numpy arrays; the CLI (``robust-paddle estimate`` and
``robust-paddle sample-for-review``) reads and writes the files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import norm

from robust_paddle.errors import DataError

__all__ = ["combine_estimates", "samples_needed", "sample_for_review", "spot_check_estimate", "wilson_interval"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: float, n: float, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: number of "successes" (here: verified labels that differ from the given one); may be a
            weighted, non-integer count.
        n: number of trials (> 0; may be an effective sample size).
        confidence: two-sided confidence level in (0, 1).

    Returns:
        ``(low, high)`` with ``0 <= low <= successes / n <= high <= 1``.

    Raises:
        ValueError: ``n <= 0``, ``successes`` outside ``[0, n]``, or ``confidence`` outside (0, 1).
    """
    if not n > 0:
        raise DataError(f"wilson_interval: need n > 0 trials, got {n!r}")
    if not 0 <= successes <= n:
        raise DataError(f"wilson_interval: successes must be in [0, n={n}], got {successes!r}")
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def samples_needed(rate: float, width: float, *, confidence: float = 0.95, max_n: int = 10_000_000) -> int:
    """Smallest number of verified samples whose Wilson interval at ``rate`` is at most ``width`` wide.

    Args:
        rate: the expected noise rate (e.g. the current estimate), in [0, 1].
        width: wanted total width of the interval (``high - low``), in (0, 1].
        confidence: two-sided confidence level.
        max_n: search bound.

    Raises:
        ValueError: ``rate`` outside [0, 1] or ``width`` outside (0, 1].
    """
    if not 0.0 <= rate <= 1.0:
        raise DataError(f"samples_needed: rate must be in [0, 1], got {rate!r}")
    if not 0.0 < width <= 1.0:
        raise DataError(f"samples_needed: width must be in (0, 1], got {width!r}")

    def wide(n: int) -> float:
        lo, hi = wilson_interval(rate * n, n, confidence=confidence)
        return hi - lo

    lo, hi = 1, 1
    while wide(hi) > width:  # exponential search, then bisection on the monotone width
        lo, hi = hi, hi * 2
        if hi > max_n:
            return max_n
    while lo < hi:
        mid = (lo + hi) // 2
        if wide(mid) <= width:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _check_pairs(given: Any, verified: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    g, t = np.asarray(given), np.asarray(verified)
    if g.ndim != 1 or g.shape != t.shape:
        raise DataError(f"given and verified must be 1-D arrays of equal length, got {g.shape} and {t.shape}")
    if g.size == 0:
        raise DataError("the spot check has no verified samples; verify at least one (see sample-for-review)")
    for name, a in (("given", g), ("verified", t)):
        if not np.issubdtype(a.dtype, np.integer):
            raise DataError(f"{name} labels must be integers, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= num_classes:
            raise DataError(f"{name} label {int(a.min() if a.min() < 0 else a.max())} is outside "
                            f"[0, {num_classes}) for a {num_classes}-class dataset")
    return g.astype(np.int64), t.astype(np.int64)


def spot_check_estimate(given: Any, verified: Any, *, num_classes: int, class_counts: Any = None,
                        alpha: float = 0.5, confidence: float = 0.95) -> dict[str, Any]:
    """Noise rate, per-class rates and transition matrix from verified labels.

    Args:
        given: [M] int, the training labels of the verified samples.
        verified: [M] int, the labels the reviewer confirmed as true.
        num_classes: C.
        class_counts: [C] counts of each given label in the whole training set (``n_g``). When given, the
            estimate is weighted by each class's share (needed when the sample is not proportional to the
            given labels); when None the sample is taken as proportional (what ``sample_for_review`` draws)
            and the counts are estimated from the sample.
        alpha: symmetric Dirichlet prior (pseudo-count per cell) of each row ``P(true | given = g)``; > 0.
        confidence: level of every interval.

    Returns:
        ``{"noise_rate", "interval": [lo, hi], "confidence", "n_verified", "n_wrong", "effective_n",
        "per_class": [{"class", "n_verified", "n_wrong", "rate", "interval"}], "transition_matrix" [C][C]
        (T[true, given]), "alpha", "method"}``. A class with no verified sample has ``rate`` None and
        interval [0, 1].

    Raises:
        DataError: no verified samples, labels outside [0, C).
        ValueError: bad shapes/dtypes, ``alpha <= 0``, ``class_counts`` not [C] non-negative.
    """
    g, t = _check_pairs(given, verified, num_classes)
    if not alpha > 0:
        raise DataError(f"alpha must be > 0 (Dirichlet pseudo-count), got {alpha!r}")
    c = num_classes
    m_g = np.bincount(g, minlength=c).astype(np.float64)
    wrong_g = np.bincount(g[g != t], minlength=c).astype(np.float64)
    if class_counts is None:
        share = m_g / m_g.sum()
    else:
        counts = np.asarray(class_counts, dtype=np.float64)
        if counts.shape != (c,) or (counts < 0).any() or counts.sum() <= 0:
            raise DataError(f"class_counts must be [{c}] non-negative counts, got {counts.tolist()}")
        missing = np.flatnonzero((counts > 0) & (m_g == 0))
        share = counts / counts.sum()
        if missing.size:  # a class with no verified sample: its rate is unknown; weight the others
            share = np.where(m_g > 0, share, 0.0)
            share = share / share.sum()
    # per-sample weights w_m = share_g / m_g (sum to 1); Kish's effective n = 1 / sum(w^2)
    w_g = np.divide(share, m_g, out=np.zeros(c), where=m_g > 0)
    rate = float(np.sum(w_g * wrong_g))
    eff_n = float(1.0 / np.sum(w_g ** 2 * m_g))
    lo, hi = wilson_interval(rate * eff_n, eff_n, confidence=confidence)
    per_class = []
    for k in range(c):
        if m_g[k] == 0:
            per_class.append({"class": k, "n_verified": 0, "n_wrong": 0, "rate": None, "interval": [0.0, 1.0]})
            continue
        plo, phi = wilson_interval(wrong_g[k], m_g[k], confidence=confidence)
        per_class.append({"class": k, "n_verified": int(m_g[k]), "n_wrong": int(wrong_g[k]),
                          "rate": float(wrong_g[k] / m_g[k]), "interval": [plo, phi]})
    counts_gt = np.zeros((c, c))
    np.add.at(counts_gt, (g, t), 1.0)
    p_true_given = (counts_gt + alpha) / (m_g[:, None] + c * alpha)  # rows: P(true | given = g)
    prior_g = share if class_counts is None else np.asarray(class_counts, dtype=np.float64) / np.sum(class_counts)
    joint = prior_g[:, None] * p_true_given  # [given, true]
    col = joint.sum(axis=0)
    trans = np.divide(joint.T, col[:, None], out=np.full((c, c), 1.0 / c), where=col[:, None] > 0)
    return {"method": "spot_check", "noise_rate": rate, "interval": [lo, hi], "confidence": confidence,
            "n_verified": int(g.size), "n_wrong": int((g != t).sum()), "effective_n": eff_n,
            "per_class": per_class, "transition_matrix": trans.tolist(), "alpha": alpha}


def combine_estimates(a: tuple[float, float, float], b: tuple[float, float, float], *,
                      confidence: float = 0.95) -> dict[str, Any]:
    """Inverse-variance combination of two noise-rate estimates, each ``(rate, low, high)``.

    Each standard deviation is read from its interval as ``(high - low) / (2 z)``; an estimate with a
    zero-width interval dominates. Returns ``{"noise_rate", "interval", "weights": [w_a, w_b]}``.
    """
    z = _z(confidence)
    sd = [max((hi - lo) / (2 * z), 1e-9) for _, lo, hi in (a, b)]
    w = np.array([1 / sd[0] ** 2, 1 / sd[1] ** 2])
    w = w / w.sum()
    rate = float(w[0] * a[0] + w[1] * b[0])
    comb_sd = float(1.0 / math.sqrt(1 / sd[0] ** 2 + 1 / sd[1] ** 2))
    return {"noise_rate": rate, "interval": [max(0.0, rate - z * comb_sd), min(1.0, rate + z * comb_sd)],
            "weights": w.tolist()}


def sample_for_review(labels: Any, n: int, *, seed: int, num_classes: int | None = None) -> np.ndarray:
    """A stratified random sample of ``n`` training samples, proportional to the given labels.

    Each class gets ``round(n * n_g / N)`` samples (largest remainders, so the total is exactly ``n``),
    drawn uniformly without replacement within the class; a noise rate computed as the plain mean over
    this sample is unbiased.

    Args:
        labels: [N] int given labels of the training set.
        n: sample size, 1 <= n <= N.
        seed: random seed (the same seed gives the same sample).
        num_classes: C (default ``max(labels) + 1``).

    Returns:
        [n] int64 positions into ``labels``, sorted.

    Raises:
        ValueError: ``n`` outside [1, N], labels not a 1-D int array.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be a 1-D int array, got shape {y.shape} dtype {y.dtype}")
    if not 1 <= n <= y.size:
        raise DataError(f"sample size must be between 1 and the {y.size} training samples, got {n}")
    c = int(num_classes or (y.max() + 1))
    counts = np.bincount(y, minlength=c).astype(np.float64)
    quota = counts * n / y.size
    take = np.floor(quota).astype(np.int64)
    rng = np.random.default_rng(seed)
    rest = n - take.sum()
    if rest:
        frac = quota - take + rng.uniform(0, 1e-9, size=c)  # seeded tie-break
        frac[take >= counts] = -1
        take[np.argsort(-frac)[:rest]] += 1
    picked = [rng.choice(np.flatnonzero(y == k), size=int(take[k]), replace=False) for k in range(c) if take[k]]
    return np.sort(np.concatenate(picked)).astype(np.int64)
