"""robust_paddle.methods.correction: GMM division on synthetic losses, label refinement, sharpening, ramp-up, mixup."""

import numpy as np
import paddle
import pytest

from robust_paddle.errors import DataError
from robust_paddle.methods.correction import (
    fit_loss_gmm,
    gmm_noise_rate,
    linear_rampup,
    mix_lambda,
    normalize_losses,
    refine_labels,
    sharpen,
    split_precision_recall,
)
from robust_paddle.ops import mixup


def bimodal(n: int, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Losses of a clean (near 0) and a noisy (high) population; returns (losses [n], noisy mask [n])."""
    rng = np.random.default_rng(seed)
    noisy = rng.random(n) < rate
    losses = np.where(noisy, rng.normal(2.5, 0.5, n), np.abs(rng.normal(0.0, 0.3, n)))
    return losses, noisy


# ------------------------------------------------------------------------------------------- GMM
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_gmm_splits_a_clear_bimodal_mixture(rate):
    losses, noisy = bimodal(4000, rate)
    prob, gmm = fit_loss_gmm(losses, seed=0)
    assert prob.shape == (4000,) and np.all((prob >= 0) & (prob <= 1))
    precision, recall = split_precision_recall(prob > 0.5, ~noisy)
    assert precision > 0.95 and recall > 0.95
    # the clean component is the one with the smaller mean
    clean_comp = int(np.argmin(gmm.means_.ravel()))
    np.testing.assert_allclose(prob, gmm.predict_proba(normalize_losses(losses).reshape(-1, 1))[:, clean_comp])


@pytest.mark.parametrize("rate", [0.2, 0.4, 0.6])
def test_gmm_noise_rate_matches_the_mixing_proportion(rate):
    losses, noisy = bimodal(5000, rate, seed=1)
    est = gmm_noise_rate(losses, seed=0)
    assert abs(est - noisy.mean()) < 0.02


def test_gmm_is_reproducible_and_independent_of_loss_scale():
    losses, _ = bimodal(1000, 0.3)
    a, _ = fit_loss_gmm(losses, seed=3)
    b, _ = fit_loss_gmm(losses * 7.0 + 2.0, seed=3)  # min-max normalisation removes scale and shift
    np.testing.assert_allclose(a, b, atol=1e-6)
    c, _ = fit_loss_gmm(normalize_losses(losses), seed=3, normalize=False)
    np.testing.assert_allclose(a, c, atol=1e-12)


def test_normalize_losses_is_min_max():
    np.testing.assert_allclose(normalize_losses([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    np.testing.assert_allclose(normalize_losses(np.array([[1.0], [3.0]])), [0.0, 1.0])


@pytest.mark.parametrize("losses,match", [
    ([1.0, 1.0, 1.0], "all 3 losses equal 1.0"),
    ([1.0], "at least 2 samples"),
    ([[1.0, 2.0], [3.0, 4.0]], r"1-D array \[N\], got shape \[2, 2\]"),
    ([0.1, float("nan"), 0.3], "losses must be finite; index 1 is nan"),
])
def test_normalize_losses_rejects_bad_input(losses, match):
    with pytest.raises(ValueError, match=match):
        normalize_losses(losses)


def test_fit_loss_gmm_checks_options():
    losses, _ = bimodal(100, 0.3)
    with pytest.raises(ValueError, match="reg_covar must be > 0, got 0"):
        fit_loss_gmm(losses, seed=0, reg_covar=0)
    with pytest.raises(ValueError, match="max_iter must be an int >= 1, got 0"):
        fit_loss_gmm(losses, seed=0, max_iter=0)
    with pytest.raises(DataError, match="seed must be an int, got 0.5"):
        fit_loss_gmm(losses, seed=0.5)


def test_split_precision_recall_reference():
    sel = np.array([True, True, False, False, True])
    clean = np.array([True, False, True, False, True])
    assert split_precision_recall(sel, clean) == pytest.approx((2 / 3, 2 / 3))
    assert split_precision_recall(np.zeros(3, bool), np.ones(3, bool)) == (0.0, 0.0)
    with pytest.raises(DataError, match="selected must be a bool array, got dtype int64"):
        split_precision_recall(np.array([1, 0]), np.array([True, False]))
    with pytest.raises(ValueError, match=r"equal length, got shapes \[2\] and \[3\]"):
        split_precision_recall(np.ones(2, bool), np.ones(3, bool))


# ------------------------------------------------------------------------------- label refinement
def test_refine_labels_formula_numpy_and_paddle():
    rng = np.random.default_rng(0)
    y = np.eye(4)[[0, 2, 3]]
    p = rng.dirichlet(np.ones(4), size=3)
    w = np.array([1.0, 0.25, 0.0])
    want = w[:, None] * y + (1 - w[:, None]) * p
    np.testing.assert_allclose(refine_labels(y, p, w), want)
    np.testing.assert_allclose(refine_labels(y, p, w[:, None]), want)
    got = refine_labels(paddle.to_tensor(y, "float32"), paddle.to_tensor(p, "float32"), paddle.to_tensor(w, "float32"))
    assert isinstance(got, paddle.Tensor)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(refine_labels(y, p, w).sum(1), 1.0)
    with pytest.raises(ValueError, match=r"w must be \[N\] or \[N, 1\] with N=3, got shape \[2\]"):
        refine_labels(y, p, w[:2])
    with pytest.raises(ValueError, match="onehot and pred must both be"):
        refine_labels(y, p[:, :3], w)


def test_sharpen_formula():
    p = np.array([[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]])
    want = p**2 / (p**2).sum(1, keepdims=True)
    np.testing.assert_allclose(sharpen(p, 0.5), want)
    np.testing.assert_allclose(sharpen(paddle.to_tensor(p, "float32"), 0.5).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(sharpen(p, 1.0), p)
    assert np.all(sharpen(p, 0.05).argmax(1) == p.argmax(1)) and sharpen(p, 0.05)[0, 0] > 0.99
    with pytest.raises(ValueError, match="sharpen: T must be > 0, got 0"):
        sharpen(p, 0)


@pytest.mark.parametrize("current,warm_up,length,want", [
    (5.0, 10, 16, 0.0), (10.0, 10, 16, 0.0), (14.0, 10, 16, 0.25), (18.0, 10, 16, 0.5), (40.0, 10, 16, 1.0),
    (10.5, 10, 0, 1.0), (9.5, 10, 0, 0.0),
])
def test_linear_rampup_values(current, warm_up, length, want):
    assert linear_rampup(current, warm_up, length) == pytest.approx(want)


def test_linear_rampup_default_length_is_16():
    assert linear_rampup(12.0, 10) == pytest.approx(2 / 16)
    with pytest.raises(ValueError, match="rampup_length must be >= 0, got -1"):
        linear_rampup(1.0, 0, -1)


# ------------------------------------------------------------------------------------------ mixing
def test_mix_lambda_is_max_of_beta_draw_and_reproducible():
    draws = [mix_lambda(4.0, np.random.default_rng(s)) for s in range(200)]
    assert min(draws) >= 0.5 and max(draws) <= 1.0
    ref = np.random.default_rng(7).beta(4.0, 4.0)
    assert mix_lambda(4.0, np.random.default_rng(7)) == pytest.approx(max(ref, 1 - ref))
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        mix_lambda(0, np.random.default_rng(0))


def test_mixup_numpy_and_paddle():
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 3, 2)), rng.dirichlet(np.ones(4), size=5)
    perm = np.array([4, 3, 2, 1, 0])
    mx, mt = mixup(x, t, lam=0.7, perm=perm)
    np.testing.assert_allclose(mx, 0.7 * x + 0.3 * x[perm])
    np.testing.assert_allclose(mt, 0.7 * t + 0.3 * t[perm])
    px, pt = mixup(paddle.to_tensor(x, "float32"), paddle.to_tensor(t, "float32"), lam=0.7, perm=perm)
    np.testing.assert_allclose(px.numpy(), mx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pt.numpy(), mt, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="lam must be in"):
        mixup(x, t, lam=1.5, perm=perm)
    with pytest.raises(ValueError, match="same length, got 5, 5 and 4"):
        mixup(x, t, lam=0.5, perm=perm[:4])
