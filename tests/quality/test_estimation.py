"""Confident-learning estimates on labels drawn from a known transition matrix."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import robust_paddle  # noqa: F401  (before paddle / numpy-heavy imports: zlib shim)
from robust_paddle.data.noise import apply_transition, pair_matrix, realised_matrix, symmetric_matrix
from robust_paddle.errors import DataError
from robust_paddle.ops import softmax
from robust_paddle.pipeline import kfold
from robust_paddle.quality import estimation as E

C, N = 5, 4000


def simulate(t: np.ndarray, *, seed: int = 0, strength: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clean [N], noisy [N], pred_probs [N, C]) with probabilities from a model that mostly knows the truth."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, C, N)
    noisy = apply_transition(clean, t, seed=seed + 1)
    probs = softmax(strength * np.eye(C)[clean] + rng.normal(0.0, 1.0, (N, C)))
    return clean, noisy, probs


@pytest.mark.parametrize("kind,rate", [("symmetric", 0.2), ("symmetric", 0.4), ("pair", 0.3)])
def test_recovers_transition_matrix_and_rate(kind: str, rate: float) -> None:
    t = symmetric_matrix(C, rate) if kind == "symmetric" else pair_matrix(C, rate)
    clean, noisy, probs = simulate(t)
    est = E.estimate_noise_matrix(noisy, probs)
    assert est.shape == (C, C)
    np.testing.assert_allclose(est.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(est, realised_matrix(clean, noisy, C), atol=0.04)
    assert abs(E.estimate_noise_rate(noisy, probs) - np.mean(clean != noisy)) < 0.03


def test_confident_joint_counts_and_calibration() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    # thresholds: class 0 -> mean(0.9, 0.2) = 0.55, class 1 -> mean(0.9, 0.7) = 0.8
    np.testing.assert_allclose(E.confident_thresholds(labels, probs), [0.55, 0.8])
    raw = E.confident_joint(labels, probs, calibrate=False)
    np.testing.assert_array_equal(raw, [[1, 1], [0, 1]])  # sample 3 (p1=0.7 < 0.8) is not confident
    cal = E.confident_joint(labels, probs)
    np.testing.assert_allclose(cal.sum(axis=1), [2, 2])
    np.testing.assert_allclose(cal, [[1, 1], [0, 2]])
    np.testing.assert_allclose(E.estimate_joint(labels, probs), [[0.25, 0.25], [0.0, 0.5]])
    # T[true, given]: true class 0 is only ever labelled 0; true class 1 is labelled 0 a third of the time
    np.testing.assert_allclose(E.estimate_noise_matrix(labels, probs), [[1, 0], [1 / 3, 2 / 3]])
    assert E.estimate_noise_rate(labels, probs) == pytest.approx(0.25)


def test_absent_class_and_clean_data() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    assert np.isinf(E.confident_thresholds(labels, probs)[2])
    t = E.estimate_noise_matrix(labels, probs)
    np.testing.assert_allclose(t, np.eye(3))  # absent true class 2 gets the identity row
    assert E.estimate_noise_rate(labels, probs) == 0.0
    assert not E.find_label_issues(labels, probs).any()


@pytest.mark.parametrize("method", E.QUALITY_METHODS)
def test_quality_scores_rank_flipped_samples_first(method: str) -> None:
    clean, noisy, probs = simulate(symmetric_matrix(C, 0.4), seed=3, strength=2.0)
    scores = E.label_quality_scores(noisy, probs, method=method)
    assert scores.shape == (N,) and (scores >= 0).all() and (scores <= 1).all()
    assert roc_auc_score(noisy != clean, -scores) > 0.9


def test_quality_score_values() -> None:
    labels = np.array([0, 1])
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(E.label_quality_scores(labels, probs), [0.6, 0.3])
    np.testing.assert_allclose(E.label_quality_scores(labels, probs, method="normalized_margin"),
                               [(0.6 - 0.3 + 1) / 2, (0.3 - 0.6 + 1) / 2])


def test_find_label_issues_precision_recall() -> None:
    clean, noisy, probs = simulate(symmetric_matrix(C, 0.4), seed=5)
    mask = E.find_label_issues(noisy, probs)
    scores = E.detection_scores(mask, noisy != clean)
    assert scores["precision"] > 0.9 and scores["recall"] > 0.9
    assert not (mask & (probs.argmax(1) == noisy)).any()  # agreement with the model is never flagged


def test_find_label_issues_combines_clean_prob() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.45, 0.55], [0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
    base = E.find_label_issues(labels, probs)
    w = np.array([1.0, 1.0, 0.1, 1.0, 1.0, 0.2])  # sample 5 is GMM-noisy but the model agrees: never flagged
    union = E.find_label_issues(labels, probs, clean_prob=w)
    both = E.find_label_issues(labels, probs, clean_prob=w, combine="intersection")
    np.testing.assert_array_equal(union, base | np.array([0, 0, 1, 0, 0, 0], bool))
    assert not union[5]
    np.testing.assert_array_equal(both, base & union)
    np.testing.assert_array_equal(E.find_label_issues(labels, probs, clean_prob=w, combine="none"), base)


def test_detection_scores() -> None:
    s = E.detection_scores(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    assert s == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "flagged": 2, "true_issues": 2}
    assert E.detection_scores(np.zeros(3, bool), np.zeros(3, bool))["f1"] == 0.0
    with pytest.raises(ValueError, match="flagged has shape"):
        E.detection_scores(np.zeros(3, bool), np.zeros(4, bool))


@pytest.mark.parametrize("labels,probs,exc,match", [
    (np.array([0, 1]), np.array([0.5, 0.5]), ValueError, r"pred_probs must be a 2-D array"),
    (np.array([0, 1]), np.ones((2, 1)), ValueError, r"at least 2 classes"),
    (np.array([0, 1]), np.zeros((0, 2)), ValueError, r"pred_probs is empty"),
    (np.array([0, 1]), np.array([[0.5, 0.5], [np.nan, 1.0]]), ValueError, r"NaN/Inf .* row 1"),
    (np.array([0, 1]), np.array([[0.5, 0.5], [2.0, -1.0]]), ValueError, r"negative values .* row 1"),
    (np.array([0, 1]), np.array([[0.5, 0.5], [0.7, 0.7]]), ValueError, r"rows must sum to 1 .* row 1 sums to 1.4"),
    (np.array([[0, 1]]), np.full((2, 2), 0.5), ValueError, r"labels must be a 1-D array"),
    (np.array([0.0, 1.0]), np.full((2, 2), 0.5), DataError, r"labels must be integers"),
    (np.array([0, 1, 1]), np.full((2, 2), 0.5), ValueError, r"labels has 3 entries but pred_probs has 2 rows"),
    (np.array([0, 2]), np.full((2, 2), 0.5), ValueError, r"labels must be in \[0, 2\) .* found 2"),
    (np.array([-1, 0]), np.full((2, 2), 0.5), ValueError, r"found -1"),
    (np.array([0, 1]), np.array([["a", "b"], ["c", "d"]]), DataError, r"real numbers"),
])
def test_input_validation(labels, probs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        E.estimate_noise_rate(labels, probs)


def test_option_validation() -> None:
    labels, probs = np.array([0, 1]), np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match=r"method: 'entropy' is not a label-quality method; choose one of: "
                                         r"self_confidence, normalized_margin"):
        E.label_quality_scores(labels, probs, method="entropy")
    with pytest.raises(ValueError, match=r"combine: 'and' is not allowed"):
        E.find_label_issues(labels, probs, combine="and")
    with pytest.raises(ValueError, match=r"clean_threshold must be in \(0, 1\)"):
        E.find_label_issues(labels, probs, clean_threshold=1.0)
    with pytest.raises(ValueError, match=r"clean_prob must have shape \(2,\)"):
        E.find_label_issues(labels, probs, clean_prob=np.ones(3))
    with pytest.raises(ValueError, match=r"clean_prob values must be probabilities"):
        E.find_label_issues(labels, probs, clean_prob=np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"folds must be an int >= 2"):
        kfold.cross_val_pred_probs(None, folds=1)  # type: ignore[arg-type]


def test_softmax_rows_sum_to_one() -> None:
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[1.0, 0.0], [0.5, 0.5]])


def test_cross_val_pred_probs_tiny_digits_run() -> None:
    from robust_paddle import config
    from robust_paddle.data import build_data

    quickstart = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml")
    cfg = config.load(quickstart, ["train.epochs=3", "data.subset=200", "train.progress=false", "data.batch_size=16",
                                   "data.noise.rate=0.2", "optimizer.lr=0.1"])
    data = build_data(cfg)
    probs = kfold.cross_val_pred_probs(cfg, folds=2, data=data)
    assert probs.shape == (200, data.num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert np.mean(probs.argmax(1) == data.train.clean_labels) > 0.3  # better than chance (0.1) out of sample
    with pytest.raises(ValueError, match=r"folds=500 exceeds the 200 training samples"):
        kfold.cross_val_pred_probs(cfg, folds=500, data=data)


def test_round_preserving_total_keeps_row_noise() -> None:
    row = np.array([0.4] * 9 + [5.0])
    out = E.round_preserving_total(row)
    assert out.sum() == 9 and out[-1] == 5 and set(out[:-1]) <= {0, 1}
    np.testing.assert_array_equal(E.round_preserving_total(np.array([1.6, 2.4, 0.0])), [2, 2, 0])
    # ties: the lowest indices without rng, a seeded random choice with one; float error below an integer
    np.testing.assert_array_equal(E.round_preserving_total(np.array([0.5, 0.5, 1.0])), [1, 0, 1])
    picks = {tuple(E.round_preserving_total(np.full(4, 0.5), rng=np.random.default_rng(s))) for s in range(20)}
    assert len(picks) > 1 and all(sum(p) == 2 for p in picks)
    np.testing.assert_array_equal(E.round_preserving_total(np.array([100 * 0.29, 100 * 0.71])), [29, 71])
