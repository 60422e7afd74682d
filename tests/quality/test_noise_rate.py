"""One noise-rate estimate with a bootstrap interval; every estimator's value against a hand computation."""

import numpy as np
import pytest

from robust_paddle.ops import softmax
from robust_paddle.quality import estimation as E
from robust_paddle.quality.noise_rate import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    SYSTEMATIC_ERROR,
    bootstrap_interval,
    estimate_noise_rates,
    format_noise_rate,
    noise_rate_summary,
)


def noisy_problem(n=2000, c=4, rate=0.3, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    flip = rng.random(n) < rate
    given = np.where(flip, (clean + rng.integers(1, c, n)) % c, clean)
    logits = 3.0 * np.eye(c)[clean] + rng.normal(0, 1.0, (n, c))
    return given, softmax(logits), clean


def test_estimators_match_their_definitions():
    given, probs, clean = noisy_problem()
    mass = np.linspace(0.0, 1.0, len(given))
    cp = np.where(np.arange(len(given)) % 5 == 0, 0.2, 0.9)
    rates = estimate_noise_rates(given, probs, noisy_mass=mass, clean_prob=cp)
    assert list(rates) == list(ESTIMATORS)
    assert rates["disagreement"] == pytest.approx(np.mean(probs.argmax(1) != given))
    assert rates["confident_joint"] == pytest.approx(E.estimate_noise_rate(given, probs))
    assert rates["loss_gmm"] == pytest.approx(0.5)
    assert rates["clean_prob"] == pytest.approx(0.2)
    assert set(estimate_noise_rates(given, probs)) == {"disagreement", "confident_joint"}


def test_bootstrap_interval_is_the_sampling_spread():
    given, probs, clean = noisy_problem(n=4000)
    est = estimate_noise_rates(given, probs)["disagreement"]
    lo, hi = bootstrap_interval("disagreement", given, probs, n_boot=400, seed=1)
    sd = np.sqrt(est * (1 - est) / len(given))  # a proportion: the interval is about +- 1.96 sd
    assert lo < est < hi and (hi - lo) == pytest.approx(2 * 1.96 * sd, rel=0.2)
    assert bootstrap_interval("disagreement", given, probs, n_boot=400, seed=1) == (lo, hi)  # seeded
    small_lo, small_hi = bootstrap_interval("disagreement", given[:400], probs[:400], n_boot=400, seed=1)
    assert small_hi - small_lo > 2 * (hi - lo)  # ~ sqrt(10) wider on a tenth of the samples
    cj_lo, cj_hi = bootstrap_interval("confident_joint", given, probs, n_boot=50, seed=0)
    assert cj_lo <= E.estimate_noise_rate(given, probs) <= cj_hi


def test_interval_checks():
    given, probs, _ = noisy_problem(n=100)
    with pytest.raises(ValueError, match="estimator 'oracle' is not known; choose one of: disagreement"):
        bootstrap_interval("oracle", given, probs)
    with pytest.raises(ValueError, match="'loss_gmm' needs noisy_mass"):
        bootstrap_interval("loss_gmm", given, probs)
    with pytest.raises(ValueError, match="n_boot must be an int >= 10"):
        bootstrap_interval("disagreement", given, probs, n_boot=5)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        bootstrap_interval("disagreement", given, probs, level=1.0)


def test_summary_and_log_line():
    given, probs, _ = noisy_problem(n=500)
    s = noise_rate_summary(given, probs, noisy_mass=np.linspace(0.0, 0.5, 500), n_boot=50)
    assert s["noise_rate_estimator"] == DEFAULT_ESTIMATOR
    assert s["noise_rate_estimate"] == s["noise_rate_estimators"][DEFAULT_ESTIMATOR]
    lo, hi = s["noise_rate_interval"]
    assert lo <= s["noise_rate_estimate"] <= hi and s["noise_rate_interval_level"] == 0.95
    slo, shi = s["noise_rate_sampling_interval"]
    margin = SYSTEMATIC_ERROR[DEFAULT_ESTIMATOR]
    assert (lo, hi) == pytest.approx((max(0.0, slo - margin), min(1.0, shi + margin)))
    line = format_noise_rate(s)
    assert line.startswith(f"noise rate {s['noise_rate_estimate']:.3f} ({DEFAULT_ESTIMATOR}, 95% interval "
                           f"{lo:.3f}-{hi:.3f}); other estimators: ")
    for name, value in s["noise_rate_estimators"].items():
        assert (f"{name} {value:.3f}" in line) == (name != DEFAULT_ESTIMATOR)


@pytest.mark.slow
def test_interval_covers_the_true_rate_on_digits(tmp_path):
    """A shipped digits config (gmm_correction, 40% symmetric noise): the printed interval holds the truth."""
    import json
    import os

    from robust_paddle import config as C
    from robust_paddle.pipeline import run as run_mod

    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "gmm_correction", "digits.yaml")
    cfg = C.load(path, ["train.epochs=12", "train.progress=false", "train.visualdl=false",
                        "train.calibration=false", f"output_dir={tmp_path}"])
    run_mod.train(cfg)
    rep = json.loads((tmp_path / "label_issues_summary.json").read_text())
    lo, hi = rep["noise_rate_interval"]
    assert rep["noise_rate_estimator"] == DEFAULT_ESTIMATOR and lo <= rep["noise_rate_estimate"] <= hi
    assert lo <= rep["true_noise_rate"] <= hi, (rep["true_noise_rate"], lo, hi, rep["noise_rate_estimators"])
    assert hi - lo < 0.2
