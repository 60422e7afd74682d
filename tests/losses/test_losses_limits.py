"""Limit cases of the robust losses against closed forms, and the shared tensor helpers."""

from __future__ import annotations

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle

from robust_paddle.errors import DataError
from robust_paddle.losses import build_loss, per_sample_ce, target_probs, to_one_hot

N, C = 8, 5


def _data(seed: int = 0, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((N, C))).astype(np.float32)
    y = rng.integers(0, C, N).astype(np.int64)
    soft = rng.dirichlet(np.ones(C), N).astype(np.float32)
    return z, y, soft


def _p_y(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True))[np.arange(len(y)), y]


def _val(name: str, z, target, **params) -> np.ndarray:
    return build_loss(name, num_classes=C, reduction="none", **params)(
        paddle.to_tensor(z), paddle.to_tensor(target)).numpy()


@pytest.fixture(params=["hard", "soft"])
def batch(request):
    z, y, soft = _data()
    return z, (y if request.param == "hard" else soft)


def test_gce_q1_is_one_minus_p_y():
    z, y, _ = _data()
    np.testing.assert_allclose(_val("gce", z, y, q=1.0), 1 - _p_y(z, y), rtol=1e-5, atol=1e-6)


def test_gce_small_q_tends_to_ce(batch):
    z, t = batch
    np.testing.assert_allclose(_val("gce", z, t, q=1e-4), _val("ce", z, t), rtol=2e-3)
    # and the gap shrinks with q (the expansion is -log p - q (log p)^2 / 2 + ...)
    gap3 = np.abs(_val("gce", z, t, q=1e-3) - _val("ce", z, t)).max()
    gap4 = np.abs(_val("gce", z, t, q=1e-4) - _val("ce", z, t)).max()
    assert gap4 < gap3


def test_truncated_gce_k0_is_gce(batch):
    z, t = batch
    np.testing.assert_allclose(_val("truncated_gce", z, t, q=0.6, k=0.0), _val("gce", z, t, q=0.6), rtol=1e-6)


def test_truncated_gce_is_constant_and_gradient_free_below_k():
    z, y, _ = _data(1)
    k, q = 0.3, 0.7
    p_y = _p_y(z, y)
    assert (p_y <= k).any() and (p_y > k).any()
    np.testing.assert_allclose(_val("truncated_gce", z, y, q=q, k=k),
                               np.where(p_y > k, (1 - p_y**q) / q, (1 - k**q) / q), rtol=1e-5)
    logits = paddle.to_tensor(z, stop_gradient=False)
    build_loss("truncated_gce", num_classes=C, q=q, k=k, reduction="sum")(logits, paddle.to_tensor(y)).backward()
    grad = logits.grad.numpy()
    assert np.all(grad[p_y <= k] == 0) and np.all(np.abs(grad[p_y > k]).sum(1) > 0)


def test_sce_beta0_is_alpha_ce(batch):
    z, t = batch
    np.testing.assert_allclose(_val("sce", z, t, alpha=0.7, beta=0.0), 0.7 * _val("ce", z, t), rtol=1e-6)


def test_sce_rce_of_hard_label_is_minus_a_times_one_minus_p_y():
    z, y, _ = _data(2)
    np.testing.assert_allclose(_val("sce", z, y, alpha=0.0, beta=1.0), 4 * (1 - _p_y(z, y)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_val("sce", z, y, alpha=0.0, beta=1.0, log_zero=-7.0), 7 * (1 - _p_y(z, y)),
                               rtol=1e-5, atol=1e-6)


def test_focal_gamma0_is_ce(batch):
    z, t = batch
    np.testing.assert_allclose(_val("focal", z, t, gamma=0.0), _val("ce", z, t), rtol=1e-6)


def test_focal_alpha_scales_and_down_weights_easy_samples():
    z, y, _ = _data(3)
    np.testing.assert_allclose(_val("focal", z, y, gamma=2.0, alpha=0.25), 0.25 * _val("focal", z, y, gamma=2.0),
                               rtol=1e-6)
    per_class = [1.0, 0.0, 2.0, 1.0, 0.5]
    np.testing.assert_allclose(_val("focal", z, y, gamma=2.0, alpha=per_class),
                               np.asarray(per_class)[y] * _val("focal", z, y, gamma=2.0), rtol=1e-6)
    ratio = _val("focal", z, y, gamma=2.0) / _val("ce", z, y)
    np.testing.assert_allclose(ratio, (1 - _p_y(z, y)) ** 2, rtol=1e-4)


def test_mae_is_two_times_one_minus_p_y():
    z, y, _ = _data(4)
    np.testing.assert_allclose(_val("mae", z, y), 2 * (1 - _p_y(z, y)), rtol=1e-5, atol=1e-6)


def test_ce_label_smoothing_matches_numpy(batch):
    z, t = batch
    eps = 0.1
    tt = np.eye(C)[t] if t.ndim == 1 else t.astype(np.float64)
    zz = z.astype(np.float64)
    logp = zz - zz.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    ref = -(((1 - eps) * tt + eps / C) * logp).sum(1)
    np.testing.assert_allclose(_val("ce", z, t, label_smoothing=eps), ref, rtol=1e-5)


@pytest.mark.parametrize("name", ["bootstrap_soft", "bootstrap_hard"])
def test_bootstrap_beta1_is_ce(name, batch):
    z, t = batch
    np.testing.assert_allclose(_val(name, z, t, beta=1.0), _val("ce", z, t), rtol=1e-6)


def test_soft_bootstrap_is_ce_plus_entropy():
    z, y, _ = _data(5)
    p = np.exp(z - z.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    entropy = -(p * np.log(p)).sum(1)
    np.testing.assert_allclose(_val("bootstrap_soft", z, y, beta=0.6), 0.6 * _val("ce", z, y) + 0.4 * entropy,
                               rtol=1e-5)


@pytest.mark.parametrize("name", ["nce_rce", "nce_mae"])
@pytest.mark.parametrize("scale", [0.1, 3.0, 50.0])
def test_nce_is_in_unit_interval(name, scale, batch):
    z, t = batch
    v = _val(name, scale * z, t, alpha=1.0, beta=0.0)
    assert np.all(v >= 0) and np.all(v <= 1 + 1e-6)
    # NCE of a uniform prediction is 1/C for any target distribution
    np.testing.assert_allclose(_val(name, np.zeros_like(z), t, alpha=1.0, beta=0.0), np.full(N, 1 / C), rtol=1e-5)


# --------------------------------------------------------------------------------------- tensor helpers
def test_per_sample_ce_hard_soft_and_smoothing():
    z, y, soft = _data(6)
    zt = paddle.to_tensor(z)
    np.testing.assert_allclose(per_sample_ce(zt, paddle.to_tensor(y)).numpy(), _val("ce", z, y), rtol=1e-6)
    np.testing.assert_allclose(per_sample_ce(zt, paddle.to_tensor(soft)).numpy(), _val("ce", z, soft), rtol=1e-6)
    np.testing.assert_allclose(per_sample_ce(zt, paddle.to_tensor(y), label_smoothing=0.2).numpy(),
                               _val("ce", z, y, label_smoothing=0.2), rtol=1e-6)
    out = per_sample_ce(paddle.to_tensor(z.astype(np.float16)), paddle.to_tensor(y))
    assert out.dtype == paddle.float32 and out.shape == [N]
    with pytest.raises(ValueError, match=r"per_sample_ce: label_smoothing must be in \[0, 1\), got 1.0"):
        per_sample_ce(zt, paddle.to_tensor(y), label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"per_sample_ce: target has 3 labels but logits have N=8 rows"):
        per_sample_ce(zt, paddle.to_tensor(y[:3]))


def test_per_sample_ce_gradient_flows_to_logits():
    z, y, _ = _data(7)
    logits = paddle.to_tensor(z, stop_gradient=False)
    per_sample_ce(logits, paddle.to_tensor(y)).sum().backward()
    p = np.exp(z - z.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    np.testing.assert_allclose(logits.grad.numpy(), p - np.eye(C)[y], rtol=1e-5, atol=1e-6)


def test_to_one_hot_and_target_probs():
    y = np.array([0, 4, 2], dtype=np.int64)
    np.testing.assert_array_equal(to_one_hot(paddle.to_tensor(y), C).numpy(), np.eye(C, dtype=np.float32)[y])
    np.testing.assert_array_equal(to_one_hot(paddle.to_tensor(y.reshape(3, 1)), C).numpy(), np.eye(C)[y])
    assert to_one_hot(paddle.to_tensor(y), C).dtype == paddle.float32
    soft = np.full((3, C), 1 / C, dtype=np.float64)
    out = target_probs(paddle.to_tensor(soft), C)
    assert out.dtype == paddle.float32
    np.testing.assert_allclose(out.numpy(), soft, rtol=1e-7)
    with pytest.raises(DataError, match="to_one_hot: target must be integer labels.*use target_probs"):
        to_one_hot(paddle.to_tensor(soft), C)
    with pytest.raises(ValueError, match=r"to_one_hot: label 5 is out of range; labels must be in \[0, 4\]"):
        to_one_hot(paddle.to_tensor(np.array([0, 5])), C)
    with pytest.raises(ValueError, match="to_one_hot: num_classes must be an int >= 2, got 1"):
        to_one_hot(paddle.to_tensor(y), 1)
    with pytest.raises(ValueError, match=r"to_one_hot: hard labels must have shape \[N\] or \[N, 1\], got shape \[3, 2\]"):
        to_one_hot(paddle.to_tensor(np.zeros((3, 2), np.int64)), C)
    with pytest.raises(DataError, match="to_one_hot: target must be a paddle.Tensor, got ndarray"):
        to_one_hot(y, C)
