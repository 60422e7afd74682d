"""One noise-rate estimate with a confidence interval, and the other estimators beside it.

Notation: N training samples, C classes, ``labels`` [N] the given labels, ``pred_probs`` [N, C] the trained
model's softmax, ``noisy_mass`` [N] the loss-GMM's ``1 - clean_prob`` and ``clean_prob`` [N] the probability
the report uses (the method's own, else the loss GMM's). Every estimator returns the fraction of wrong labels:

* ``disagreement`` - ``mean(argmax p != given)``: the fraction of labels the trained (noise-robust) model
  contradicts. Biased up by the model's errors on clean samples and down by memorised wrong labels.
* ``confident_joint`` - ``1 - trace(Q)`` of the calibrated confident joint (Northcutt et al. 2021,
  https://arxiv.org/abs/1911.00068); meant for out-of-sample probabilities, it reads low on a model that
  has fitted its training labels.
* ``loss_gmm`` - ``mean(1 - clean_prob)`` of a two-component GMM on the per-sample losses (Li et al. 2020,
  https://arxiv.org/abs/2002.07394), the posterior mass of the high-loss component.
* ``clean_prob`` - ``mean(clean_prob < 0.5)``: the fraction of samples the report's clean probability calls
  noisy.

The report states one of them, :data:`DEFAULT_ESTIMATOR`: the one with the smallest mean absolute error on
the digits grid of ``benchmarks/noise_rate.py`` (``benchmarks/README.md``). Two intervals come with it:

* ``noise_rate_sampling_interval`` - a percentile bootstrap over samples (Efron & Tibshirani 1993): the
  estimate recomputed on ``n_boot`` resamples of the N samples with replacement (the model is fixed; for
  ``loss_gmm`` the per-sample masses of the one fit are resampled). It is the sampling spread only: on the
  benchmark the estimators' systematic error (a few points) is larger, so alone it mostly misses the truth;
* ``noise_rate_interval`` (the one printed) - the sampling interval widened on both sides by
  :data:`SYSTEMATIC_ERROR`, the estimator's mean absolute error over the benchmark runs of noise-robust
  methods (GCE, gmm_correction, DivideMix on digits). It assumes a model that has not memorised its
  labels: after plain CE has fitted the noise every estimator reads far too low (benchmarks/README.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robust_paddle.quality.estimation import estimate_noise_rate

ESTIMATORS = ("disagreement", "confident_joint", "loss_gmm", "clean_prob")
#: lowest mean absolute error over the benchmark grid (benchmarks/noise_rate.py on digits; README there)
DEFAULT_ESTIMATOR = "loss_gmm"
DEFAULT_BOOTSTRAP, DEFAULT_LEVEL = 200, 0.95
#: mean absolute error of each estimator over the noise-robust runs of benchmarks/noise_rate.py (digits grid)
SYSTEMATIC_ERROR = {"disagreement": 0.043, "confident_joint": 0.052, "loss_gmm": 0.041, "clean_prob": 0.043}


def _per_sample(name: str, labels: np.ndarray, pred_probs: np.ndarray, noisy_mass: np.ndarray | None,
                clean_prob: np.ndarray | None) -> np.ndarray | None:
    """The [N] values whose mean is the estimate, for the estimators that are sample means (else None)."""
    if name == "disagreement":
        return (pred_probs.argmax(axis=1) != labels).astype(np.float64)
    if name == "loss_gmm":
        return None if noisy_mass is None else np.asarray(noisy_mass, dtype=np.float64)
    if name == "clean_prob":
        return None if clean_prob is None else (np.asarray(clean_prob) < 0.5).astype(np.float64)
    return None


def estimate_noise_rates(labels: np.ndarray, pred_probs: np.ndarray, *, noisy_mass: np.ndarray | None = None,
                         clean_prob: np.ndarray | None = None) -> dict[str, float]:
    """Every estimator's noise rate (``loss_gmm`` / ``clean_prob`` only when their input is given).

    Args:
        labels: [N] int given labels. pred_probs: [N, C] probabilities. noisy_mass: [N] ``1 - clean_prob`` of
        the loss GMM. clean_prob: [N] the report's clean probability.

    Returns:
        ``{estimator: rate in [0, 1]}`` in :data:`ESTIMATORS` order.
    """
    labels, pred_probs = np.asarray(labels, dtype=np.int64), np.asarray(pred_probs, dtype=np.float64)
    out: dict[str, float] = {}
    for name in ESTIMATORS:
        if name == "confident_joint":
            out[name] = estimate_noise_rate(labels, pred_probs)
            continue
        values = _per_sample(name, labels, pred_probs, noisy_mass, clean_prob)
        if values is not None:
            out[name] = float(values.mean())
    return out


def bootstrap_interval(name: str, labels: np.ndarray, pred_probs: np.ndarray, *,
                       noisy_mass: np.ndarray | None = None, clean_prob: np.ndarray | None = None,
                       n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of estimator ``name`` over the N samples.

    Args:
        name: one of :data:`ESTIMATORS`.
        labels, pred_probs, noisy_mass, clean_prob: as :func:`estimate_noise_rates`.
        n_boot: resamples (>= 10). level: coverage in (0, 1). seed: resampling seed.

    Returns:
        ``(low, high)``, the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled estimates.

    Raises:
        ValueError: unknown estimator, missing input for it, or bad ``n_boot`` / ``level``.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"noise-rate estimator {name!r} is not known; choose one of: {', '.join(ESTIMATORS)}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 10:
        raise ValueError(f"n_boot must be an int >= 10, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    labels, pred_probs = np.asarray(labels, dtype=np.int64), np.asarray(pred_probs, dtype=np.float64)
    n = labels.shape[0]
    rng = np.random.default_rng([int(seed) % 2**32, 211])
    values = _per_sample(name, labels, pred_probs, noisy_mass, clean_prob)
    if values is None and name != "confident_joint":
        raise ValueError(f"noise-rate estimator {name!r} needs {'noisy_mass' if name == 'loss_gmm' else 'clean_prob'}")
    stats = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        stats[b] = values[idx].mean() if values is not None else estimate_noise_rate(labels[idx], pred_probs[idx])
    lo, hi = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(lo), float(hi)


def noise_rate_summary(labels: np.ndarray, pred_probs: np.ndarray, *, noisy_mass: np.ndarray | None = None,
                       clean_prob: np.ndarray | None = None, estimator: str = DEFAULT_ESTIMATOR,
                       n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL,
                       seed: int = 0) -> dict[str, Any]:
    """The report's noise-rate fields: the ``estimator``'s estimate, its bootstrap interval and every
    estimator's value (``noise_rate_estimators``)."""
    rates = estimate_noise_rates(labels, pred_probs, noisy_mass=noisy_mass, clean_prob=clean_prob)
    lo, hi = bootstrap_interval(estimator, labels, pred_probs, noisy_mass=noisy_mass, clean_prob=clean_prob,
                                n_boot=n_boot, level=level, seed=seed)
    margin = SYSTEMATIC_ERROR[estimator]
    return {"noise_rate_estimate": rates[estimator], "noise_rate_estimator": estimator,
            "noise_rate_interval": [max(0.0, lo - margin), min(1.0, hi + margin)], "noise_rate_interval_level": level,
            "noise_rate_interval_method": (f"{100 * level:.0f}% percentile bootstrap over samples ({n_boot} "
                                           f"resamples) widened by the estimator's measured systematic error "
                                           f"{margin:.3f} (benchmarks/noise_rate.py)"),
            "noise_rate_sampling_interval": [lo, hi], "noise_rate_estimators": rates}


def format_noise_rate(summary: dict[str, Any]) -> str:
    """One log line: ``noise rate 0.412 (disagreement, 95% interval 0.385-0.440); others: ...``."""
    lo, hi = summary["noise_rate_interval"]
    others = ", ".join(f"{k} {v:.3f}" for k, v in summary["noise_rate_estimators"].items()
                       if k != summary["noise_rate_estimator"])
    return (f"noise rate {summary['noise_rate_estimate']:.3f} ({summary['noise_rate_estimator']}, "
            f"{100 * summary['noise_rate_interval_level']:.0f}% interval {lo:.3f}-{hi:.3f})"
            + (f"; other estimators: {others}" if others else ""))
