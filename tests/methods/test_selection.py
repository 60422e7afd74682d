"""Small-loss selection, the forget-rate schedule and selection precision/recall."""

import numpy as np
import paddle
import pytest

from robust_paddle.errors import DataError
from robust_paddle.methods.selection import (
    forget_rate_schedule,
    num_kept,
    precision_recall_from_counts,
    selection_counts,
    selection_precision_recall,
    small_loss_indices,
)


# ------------------------------------------------------------------------------------------ num_kept
@pytest.mark.parametrize("n, ratio, k", [(10, 0.6, 6), (5, 0.5, 3), (4, 0.625, 3), (7, 0.0, 1), (7, 1.0, 7),
                                         (64, 0.6, 38), (3, 0.01, 1), (10, 1 - 0.7, 3), (5, 0.6, 3)])
def test_num_kept_rounds_half_up_and_keeps_at_least_one(n, ratio, k):
    assert num_kept(n, keep_ratio=ratio) == k


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n": 0, "keep_ratio": 0.5}, ValueError, r"num_kept: n must be an int >= 1, got 0"),
    ({"n": 2.0, "keep_ratio": 0.5}, DataError, r"num_kept: n must be an int >= 1, got 2.0 \(float\)"),
    ({"n": 4, "keep_ratio": 1.5}, ValueError, r"num_kept: keep_ratio must be in \[0, 1\], got 1.5"),
    ({"n": 4, "keep_ratio": "0.5"}, DataError, r"num_kept: keep_ratio must be a number in \[0, 1\]"),
])
def test_num_kept_checks(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        num_kept(kwargs.pop("n"), **kwargs)


# -------------------------------------------------------------------------------- small_loss_indices
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.55, 0.9, 1.0])
def test_small_loss_indices_matches_argsort_reference(seed, ratio):
    rng = np.random.default_rng(seed)
    losses = rng.exponential(size=37).astype(np.float32)
    k = num_kept(37, keep_ratio=ratio)
    got = small_loss_indices(losses, keep_ratio=ratio)
    assert got.dtype == np.int64 and got.shape == (k,)
    np.testing.assert_array_equal(got, np.argsort(losses, kind="stable")[:k])
    # exactly the k smallest: every kept loss <= every dropped loss
    dropped = np.setdiff1d(np.arange(37), got)
    if dropped.size:
        assert losses[got].max() <= losses[dropped].min()


def test_ties_are_broken_by_position():
    losses = np.array([0.5, 0.1, 0.5, 0.1, 0.5, 0.9])
    np.testing.assert_array_equal(small_loss_indices(losses, keep_ratio=0.5), [1, 3, 0])
    np.testing.assert_array_equal(small_loss_indices(np.zeros(6), keep_ratio=0.5), [0, 1, 2])


def test_tensor_in_tensor_out():
    losses = paddle.to_tensor([3.0, 1.0, 2.0, 0.5], stop_gradient=False)
    got = small_loss_indices(losses * 2.0, keep_ratio=0.5)
    assert isinstance(got, paddle.Tensor) and got.dtype == paddle.int64
    np.testing.assert_array_equal(got.numpy(), [3, 1])
    half = small_loss_indices(paddle.to_tensor([1.0, 0.0, 2.0], dtype="float16"), keep_ratio=0.34)
    np.testing.assert_array_equal(half.numpy(), [1])


def test_inf_losses_sort_last():
    np.testing.assert_array_equal(small_loss_indices(np.array([np.inf, 1.0, 2.0]), keep_ratio=0.67), [1, 2])


@pytest.mark.parametrize("losses, exc, match", [
    ([0.1, 0.2], DataError, r"losses must be a numpy array or paddle.Tensor \[N\], got list"),
    (np.zeros((2, 2)), ValueError, r"losses must have shape \[N\] with N >= 1, got shape \[2, 2\]"),
    (np.zeros(0), ValueError, r"got shape \[0\]"),
    (np.array([0.1, np.nan]), ValueError, "losses contain NaN"),
])
def test_small_loss_indices_checks(losses, exc, match):
    with pytest.raises(exc, match=match):
        small_loss_indices(losses, keep_ratio=0.5)


# --------------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("epoch, want", [(0, 0.0), (1, 0.04), (5, 0.2), (9, 0.36), (10, 0.4), (11, 0.4), (200, 0.4)])
def test_linear_schedule_values(epoch, want):
    assert forget_rate_schedule(epoch, forget_rate=0.4, num_gradual=10) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("epoch, c, want", [(5, 2.0, 0.5 * 0.25), (5, 0.5, 0.5 * 0.5 ** 0.5), (20, 2.0, 0.5)])
def test_exponent(epoch, c, want):
    assert forget_rate_schedule(epoch, forget_rate=0.5, num_gradual=10, exponent=c) == pytest.approx(want)


def test_keep_ratio_is_one_minus_schedule_and_zero_ramp():
    assert 1 - forget_rate_schedule(3, forget_rate=0.2, num_gradual=6) == pytest.approx(0.9)
    assert forget_rate_schedule(0, forget_rate=0.3, num_gradual=0) == 0.3


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"epoch": -1}, ValueError, r"epoch must be an int >= 0, got -1"),
    ({"forget_rate": 1.0}, ValueError, r"forget_rate must be in \[0, 1\), got 1.0"),
    ({"forget_rate": -0.1}, ValueError, r"forget_rate must be in \[0, 1\)"),
    ({"num_gradual": 2.5}, DataError, r"num_gradual must be an int >= 0, got 2.5"),
    ({"exponent": 0}, ValueError, r"exponent must be a number > 0, got 0"),
])
def test_schedule_checks(kwargs, exc, match):
    args = {"epoch": 1, "forget_rate": 0.2, "num_gradual": 10, **kwargs}
    with pytest.raises(exc, match=match):
        forget_rate_schedule(args.pop("epoch"), **args)


# ------------------------------------------------------------------------- precision / recall
def test_precision_recall_on_synthetic_flip_mask():
    rng = np.random.default_rng(0)
    n, rate = 2000, 0.4
    flipped = rng.random(n) < rate
    clean = ~flipped
    # a selector that ranks clean samples lower with some overlap, like losses of a partly fitted network
    losses = np.where(clean, rng.normal(0.5, 0.3, n), rng.normal(2.0, 0.6, n))
    sel = np.zeros(n, bool)
    sel[small_loss_indices(losses, keep_ratio=1 - rate)] = True
    p, r = selection_precision_recall(sel, clean)
    tp = np.sum(sel & clean)
    assert p == pytest.approx(tp / sel.sum()) and r == pytest.approx(tp / clean.sum())
    assert p > 0.9 and r > 0.9
    # a random selection has precision ~ the clean fraction
    rand = np.zeros(n, bool)
    rand[rng.permutation(n)[: int(0.6 * n)]] = True
    p_rand, r_rand = selection_precision_recall(rand, clean)
    assert p_rand == pytest.approx(clean.mean(), abs=0.04) and r_rand == pytest.approx(0.6, abs=0.04)


def test_counts_add_up_over_batches_and_empty_cases():
    sel = np.array([True, True, False, False, True])
    clean = np.array([True, False, True, False, True])
    assert selection_counts(sel, clean) == (2, 3, 3)
    a, b = selection_counts(sel[:2], clean[:2]), selection_counts(sel[2:], clean[2:])
    total = tuple(x + y for x, y in zip(a, b))
    assert precision_recall_from_counts(*total) == pytest.approx(selection_precision_recall(sel, clean))
    p, r = selection_precision_recall(np.zeros(3, bool), np.zeros(3, bool))
    assert np.isnan(p) and np.isnan(r)


@pytest.mark.parametrize("sel, clean, exc, match", [
    (np.array([1, 0]), np.array([True, False]), DataError, "selected_mask must be a boolean array, got dtype int64"),
    (np.array([True]), np.array([True, False]), ValueError, r"selected_mask has shape \[1\] but clean_mask has \[2\]"),
    (np.ones((2, 2), bool), np.ones((2, 2), bool), ValueError, r"selected_mask must have shape \[N\]"),
])
def test_precision_recall_checks(sel, clean, exc, match):
    with pytest.raises(exc, match=match):
        selection_precision_recall(sel, clean)


def test_class_balanced_mask_is_unicons_uniform_selection():
    """UNICON's rule on a long tail: quota floor(selected / C) per class, all of a smaller class, the cleanest first."""
    from robust_paddle.methods.selection import class_balanced_mask

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    rng = np.random.default_rng(0)
    prob = np.r_[rng.uniform(0.6, 1.0, 50), rng.uniform(0.0, 0.4, 10),  # class 0: 50 above the threshold
                 rng.uniform(0.6, 1.0, 10), rng.uniform(0.0, 0.4, 20),  # class 1: 10
                 np.zeros(10)]  # class 2: a saturated posterior, every member "noisy"
    loss = np.r_[np.zeros(90), np.arange(10)[::-1]]  # the tie-break: row 99 has the smallest loss of class 2
    plain = class_balanced_mask(prob, labels, threshold=0.5, balance=0.0, num_classes=3)
    np.testing.assert_array_equal(plain, prob > 0.5)
    full = class_balanced_mask(prob, labels, threshold=0.5, balance=1.0, num_classes=3, tiebreak=loss)
    # 60 selected by the threshold -> quota floor(60 / 3) = 20 per class: class 0 capped at its 20 most probably
    # clean, class 1 its 10 above the threshold plus its 10 best below, class 2 (10 < 20) all of its members
    assert [int(full[labels == c].sum()) for c in range(3)] == [20, 20, 10]
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        assert prob[members][full[members]].min() > prob[members][~full[members]].max()
    half = class_balanced_mask(prob, labels, threshold=0.5, balance=0.5, num_classes=3, tiebreak=loss)
    # round(0.5 * t_c + 0.5 * q_c): (50 + 20) / 2 = 35, (10 + 20) / 2 = 15, (0 + 10) / 2 = 5 -- by the tie-break
    assert [int(half[labels == c].sum()) for c in range(3)] == [35, 15, 5]
    assert np.flatnonzero(half[90:]).tolist() == [5, 6, 7, 8, 9]
    no_tiebreak = class_balanced_mask(prob, labels, threshold=0.5, balance=0.5, num_classes=3)
    assert np.flatnonzero(no_tiebreak[90:]).tolist() == [0, 1, 2, 3, 4]  # ties in index order
    with pytest.raises(ValueError, match=r"balance must be in \[0, 1\], got 1.5"):
        class_balanced_mask(prob, labels, threshold=0.5, balance=1.5, num_classes=3)
    with pytest.raises(ValueError, match=r"must all have shape \[N\]"):
        class_balanced_mask(prob, labels[:5], threshold=0.5, balance=1.0, num_classes=3)
