"""quality/spot_check.py: Wilson intervals, sample sizes, spot-check estimates and their coverage."""

import numpy as np
import pytest

from robust_paddle.data.noise import symmetric_matrix
from robust_paddle.errors import DataError
from robust_paddle.quality.spot_check import (
    combine_estimates,
    sample_for_review,
    samples_needed,
    spot_check_estimate,
    wilson_interval,
)


def test_wilson_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 .. 0.3662 (Wilson, 95 %)
    lo, hi = wilson_interval(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = wilson_interval(0, 10)  # no successes: lower bound 0, upper 0.2775
    assert lo == 0.0 and round(hi, 4) == 0.2775
    with pytest.raises(ValueError, match="need n > 0"):
        wilson_interval(0, 0)


@pytest.mark.parametrize("rate,width", [(0.2, 0.1), (0.05, 0.04), (0.4, 0.2)])
def test_samples_needed_is_the_smallest_sufficient_n(rate, width):
    n = samples_needed(rate, width)
    lo, hi = wilson_interval(rate * n, n)
    assert hi - lo <= width
    lo, hi = wilson_interval(rate * (n - 1), n - 1)
    assert hi - lo > width


def draw(rng, t, labels_true):
    """Given labels drawn from T[true, given]."""
    cum = np.cumsum(t[labels_true], axis=1)
    return (rng.uniform(size=(len(labels_true), 1)) > cum).sum(axis=1)


def test_estimate_recovers_a_known_transition_matrix():
    rng = np.random.default_rng(0)
    c = 4
    t = symmetric_matrix(c, 0.3)
    true = rng.integers(0, c, size=40_000)
    given = draw(rng, t, true)
    est = spot_check_estimate(given, true, num_classes=c, alpha=0.5)
    assert est["noise_rate"] == pytest.approx(np.mean(given != true))
    assert est["interval"][0] < 0.3 < est["interval"][1]
    assert np.abs(np.array(est["transition_matrix"]) - t).max() < 0.02
    assert [pc["n_verified"] for pc in est["per_class"]] == np.bincount(given, minlength=c).tolist()


def test_weighted_estimate_for_a_non_proportional_sample():
    # class 0 is 90 % of the data and clean; class 1 is 10 % and half wrong; the sample is balanced
    given = np.array([0] * 100 + [1] * 100)
    verified = np.array([0] * 100 + [1] * 50 + [0] * 50)
    plain = spot_check_estimate(given, verified, num_classes=2)
    weighted = spot_check_estimate(given, verified, num_classes=2, class_counts=[900, 100])
    assert plain["noise_rate"] == pytest.approx(0.25)
    assert weighted["noise_rate"] == pytest.approx(0.05)
    assert weighted["effective_n"] < 200


def test_unverified_class_and_bad_input():
    est = spot_check_estimate(np.array([0, 0, 1]), np.array([0, 1, 1]), num_classes=3)
    assert est["per_class"][2] == {"class": 2, "n_verified": 0, "n_wrong": 0, "rate": None, "interval": [0.0, 1.0]}
    with pytest.raises(DataError, match=r"verified label 5 is outside \[0, 3\)"):
        spot_check_estimate(np.array([0]), np.array([5]), num_classes=3)
    with pytest.raises(DataError, match="no verified samples"):
        spot_check_estimate(np.array([], dtype=int), np.array([], dtype=int), num_classes=3)


def test_interval_covers_the_truth_in_at_least_93_of_100_draws():
    rng = np.random.default_rng(1)
    c, n = 10, 20_000
    true = rng.integers(0, c, size=n)
    given = draw(rng, symmetric_matrix(c, 0.3), true)
    truth = float(np.mean(given != true))
    covered = 0
    for seed in range(100):
        idx = sample_for_review(given, 200, seed=seed, num_classes=c)
        lo, hi = spot_check_estimate(given[idx], true[idx], num_classes=c)["interval"]
        covered += lo <= truth <= hi
    assert covered >= 93


def test_sample_for_review_is_proportional_exact_and_seeded():
    y = np.array([0] * 700 + [1] * 200 + [2] * 100)
    idx = sample_for_review(y, 50, seed=3)
    assert len(idx) == 50 and len(set(idx.tolist())) == 50
    assert np.bincount(y[idx]).tolist() == [35, 10, 5]
    assert np.array_equal(idx, sample_for_review(y, 50, seed=3))
    assert not np.array_equal(idx, sample_for_review(y, 50, seed=4))
    with pytest.raises(ValueError, match="between 1 and the 1000 training samples"):
        sample_for_review(y, 1001, seed=0)


def test_combine_weights_the_narrower_interval():
    out = combine_estimates((0.2, 0.15, 0.25), (0.4, 0.0, 0.8))
    assert out["weights"][0] > 0.9
    assert out["interval"][0] < out["noise_rate"] < out["interval"][1]
    assert out["interval"][1] - out["interval"][0] < 0.1
