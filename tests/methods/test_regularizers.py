"""Mixup / cutmix label mixing and box area, R-Drop KL vs NumPy, FGM norm and direction, PGD ball, and the
``standard`` method's regulariser options."""

import numpy as np
import paddle
import pytest
from method_helpers import build_method

from robust_paddle import config as C
from robust_paddle.losses import build_loss
from robust_paddle.methods.base import MethodContext
from robust_paddle.methods.regularizers import (
    adversarial_loss,
    cutmix,
    fgm_perturbation,
    mixup_batch,
    pgd_perturbation,
    project_l2,
)
from robust_paddle.methods.standard import StandardMethod
from robust_paddle.models import build_model
from robust_paddle.ops import symmetric_kl

C_, N = 4, 6


def one_hot(y, c=C_):
    return np.eye(c, dtype=np.float32)[y]


def np_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_mixup_mixes_inputs_and_labels_with_beta_lambda():
    rng_x = np.random.default_rng(0)
    x = rng_x.normal(size=(N, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    out = mixup_batch(paddle.to_tensor(x), paddle.to_tensor(y), alpha=0.4, num_classes=C_, rng=np.random.default_rng(7))
    ref = np.random.default_rng(7)
    lam, perm = ref.beta(0.4, 0.4), ref.permutation(N)
    assert out.lam == pytest.approx(lam)
    np.testing.assert_array_equal(out.perm, perm)
    np.testing.assert_allclose(out.x.numpy(), lam * x + (1 - lam) * x[perm], rtol=1e-6)
    np.testing.assert_allclose(out.target.numpy(), lam * one_hot(y) + (1 - lam) * one_hot(y[perm]), rtol=1e-6)
    np.testing.assert_allclose(out.target.numpy().sum(1), 1.0, rtol=1e-6)


def test_mixup_of_soft_targets_is_linear():
    t = np_softmax(np.random.default_rng(1).normal(size=(N, C_))).astype(np.float32)
    out = mixup_batch(paddle.zeros([N, 2]), paddle.to_tensor(t), alpha=1.0, num_classes=C_, rng=np.random.default_rng(2))
    np.testing.assert_allclose(out.target.numpy(), out.lam * t + (1 - out.lam) * t[out.perm], rtol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_cutmix_box_area_matches_label_weight(seed):
    rng_x = np.random.default_rng(seed)
    x = rng_x.normal(size=(N, 2, 9, 7)).astype(np.float32)
    y = rng_x.integers(0, C_, N)
    out = cutmix(paddle.to_tensor(x), paddle.to_tensor(y), alpha=1.0, num_classes=C_, rng=np.random.default_rng(seed))
    y0, y1, x0, x1 = out.box
    mask = np.zeros((9, 7), bool)
    mask[y0:y1, x0:x1] = True
    assert out.lam == pytest.approx(1 - mask.sum() / mask.size)
    mixed = out.x.numpy()
    np.testing.assert_array_equal(mixed[:, :, mask], x[out.perm][:, :, mask])
    np.testing.assert_array_equal(mixed[:, :, ~mask], x[:, :, ~mask])
    np.testing.assert_allclose(out.target.numpy(), out.lam * one_hot(y) + (1 - out.lam) * one_hot(y[out.perm]),
                               rtol=1e-6)


def test_cutmix_box_size_follows_lambda_when_inside_the_image():
    # a box that is not clipped has side ~ sqrt(1 - lam) of the image
    lam0 = np.random.default_rng(8).beta(2.0, 2.0)
    out = cutmix(paddle.zeros([2, 1, 100, 100]), paddle.to_tensor([0, 1]), alpha=2.0, num_classes=2,
                 rng=np.random.default_rng(8))
    y0, y1, x0, x1 = out.box
    assert 0 < y0 and y1 < 100 and 0 < x0 and x1 < 100  # seed 8 draws a box inside the image
    assert y1 - y0 == x1 - x0 == int(100 * np.sqrt(1 - lam0))
    assert out.lam == pytest.approx(lam0, abs=0.02)


def test_mix_checks():
    with pytest.raises(ValueError, match=r"cutmix_alpha needs image inputs \[N, C, H, W\]"):
        cutmix(paddle.zeros([2, 5]), paddle.to_tensor([0, 1]), alpha=1.0, num_classes=2, rng=np.random.default_rng())
    with pytest.raises(ValueError, match="mixup_alpha must be a number > 0, got 0"):
        mixup_batch(paddle.zeros([2, 5]), paddle.to_tensor([0, 1]), alpha=0, num_classes=2, rng=np.random.default_rng())


def test_symmetric_kl_matches_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, C_)), rng.normal(size=(5, C_))
    p, q = np_softmax(a), np_softmax(b)
    ref = 0.5 * ((p * np.log(p / q)).sum(1) + (q * np.log(q / p)).sum(1)).mean()
    got = 0.5 * symmetric_kl(paddle.to_tensor(a, dtype="float32"), paddle.to_tensor(b, dtype="float32"), reduction="mean")
    assert float(got) == pytest.approx(ref, rel=1e-5)
    assert float(0.5 * symmetric_kl(paddle.to_tensor(a, dtype="float32"), paddle.to_tensor(a, dtype="float32"), reduction="mean")) == 0.0
    with pytest.raises(ValueError, match="symmetric_kl needs two"):
        0.5 * symmetric_kl(paddle.zeros([2, 3]), paddle.zeros([2, 4]), reduction="mean")


def test_fgm_perturbation_has_norm_epsilon_per_sample_along_the_gradient():
    g = np.random.default_rng(4).normal(size=(N, 3, 2)).astype(np.float32)
    g[2] = 0.0  # a zero gradient gives no perturbation
    r = fgm_perturbation(paddle.to_tensor(g), epsilon=0.3).numpy()
    norms = np.linalg.norm(r.reshape(N, -1), axis=1)
    np.testing.assert_allclose(np.delete(norms, 2), 0.3, rtol=1e-5)
    assert norms[2] == 0.0
    cos = (r * g).reshape(N, -1).sum(1) / (norms * np.linalg.norm(g.reshape(N, -1), axis=1) + 1e-12)
    np.testing.assert_allclose(np.delete(cos, 2), 1.0, rtol=1e-5)


def test_project_l2_only_shrinks_outside_the_ball():
    d = np.array([[3.0, 4.0], [0.3, 0.4]], dtype=np.float32)
    np.testing.assert_allclose(project_l2(paddle.to_tensor(d), epsilon=1.0).numpy(), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)


def linear_setup():
    paddle.seed(0)
    net = paddle.nn.Linear(5, C_)
    rng = np.random.default_rng(5)
    x = paddle.to_tensor(rng.normal(size=(N, 5)).astype(np.float32))
    y = paddle.to_tensor(rng.integers(0, C_, N))
    return net, x, y, build_loss("ce", num_classes=C_)


def test_fgm_adversarial_loss_uses_the_input_gradient():
    net, x, y, loss_fn = linear_setup()
    x.stop_gradient = False
    clean = loss_fn(net(x), y)
    adv, r = adversarial_loss(net, x, clean, loss_fn, y, kind="fgm", epsilon=0.5, alpha=0.1, steps=1)
    # analytic input gradient of the mean CE of a linear model: (softmax - onehot) W^T / N
    z = x.numpy() @ net.weight.numpy() + net.bias.numpy()
    g = (np_softmax(z) - one_hot(y.numpy())) @ net.weight.numpy().T / N
    ref = 0.5 * g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(r.numpy(), ref, rtol=1e-4, atol=1e-6)
    assert float(adv) > float(clean)  # the perturbation increases the loss
    (adv + clean).backward()  # the clean graph was retained for the trainer's backward
    assert net.weight.grad is not None


def test_pgd_stays_in_the_epsilon_ball_and_beats_fgm_start():
    net, x, y, loss_fn = linear_setup()
    eps = 0.4
    delta = pgd_perturbation(lambda z: loss_fn(net(z), y), x, epsilon=eps, alpha=0.3, steps=5)
    norms = np.linalg.norm(delta.numpy().reshape(N, -1), axis=1)
    assert np.all(norms <= eps * (1 + 1e-5))
    np.testing.assert_allclose(norms, eps, rtol=1e-4)  # steps of 0.3 reach the boundary
    assert float(loss_fn(net(x + delta), y)) > float(loss_fn(net(x), y))
    # one step with alpha >= eps is FGM
    one = pgd_perturbation(lambda z: loss_fn(net(z), y), x, epsilon=eps, alpha=eps, steps=1)
    x2 = x.detach()
    x2.stop_gradient = False
    (g,) = paddle.grad(loss_fn(net(x2), y), [x2])
    np.testing.assert_allclose(one.numpy(), fgm_perturbation(g, epsilon=eps).numpy(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------ standard method options
def method(**params):
    cfg = C.from_dict({"seed": 3, "model": {"name": "mlp"}})
    paddle.seed(0)
    net = build_model("mlp", num_classes=C_, input_shape=(1, 4, 4), hidden=[8], dropout=0.3)
    ctx = MethodContext(cfg=cfg, num_classes=C_, input_shape=(1, 4, 4), train_labels=np.zeros(1, np.int64),
                        clean_labels=None, build_network=lambda: net,
                        build_loss=lambda name=None, **kw: build_loss("ce", num_classes=C_))
    return build_method(StandardMethod, ctx, **params)


def batch():
    rng = np.random.default_rng(9)
    return (paddle.to_tensor(rng.normal(size=(N, 1, 4, 4)).astype(np.float32)),
            paddle.to_tensor(rng.integers(0, C_, N)), paddle.to_tensor(np.arange(N)))


def test_standard_mixup_loss_equals_ce_on_mixed_batch():
    m = method(mixup_alpha=0.5)
    m.eval()  # no dropout, so the reference forward is identical
    x, y, idx = batch()
    loss, terms = m.train_step((x, y, idx), epoch=2, step=0)
    ref = np.random.default_rng([3, 2, 0x6D6978])
    lam, perm = ref.beta(0.5, 0.5), ref.permutation(N)
    xm = lam * x.numpy() + (1 - lam) * x.numpy()[perm]
    t = lam * one_hot(y.numpy()) + (1 - lam) * one_hot(y.numpy()[perm])
    p = np_softmax(m.networks["net"](paddle.to_tensor(xm)).numpy())
    assert float(loss) == pytest.approx(float(-(t * np.log(p)).sum(1).mean()), rel=1e-5)
    assert set(terms) == {"loss"}


@pytest.mark.parametrize("params,terms", [
    ({"cutmix_alpha": 1.0}, {"loss"}),
    ({"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.5}, {"loss"}),
    ({"rdrop_alpha": 1.0}, {"loss", "task", "rdrop_kl"}),
    ({"adversarial": "fgm"}, {"loss", "task", "adv"}),
    ({"adversarial": "pgd", "adv_steps": 2}, {"loss", "task", "adv"}),
    ({"adversarial": "fgm", "adv_target": "embedding", "rdrop_alpha": 0.5}, {"loss", "task", "adv", "rdrop_kl"}),
])
def test_standard_options_return_one_finite_loss_that_trains(params, terms):
    m = method(**params)
    loss, got = m.train_step(batch(), epoch=0, step=0)
    assert set(got) == terms and np.isfinite(float(loss))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_rdrop_term_is_positive_with_dropout_and_loss_combines_terms():
    m = method(rdrop_alpha=2.0)
    loss, t = m.train_step(batch(), epoch=0, step=0)
    assert float(t["rdrop_kl"]) > 0
    m.eval()
    loss, t = m.train_step(batch(), epoch=0, step=0)  # no dropout: both passes agree
    assert float(t["rdrop_kl"]) == pytest.approx(0.0, abs=1e-7)
    assert float(loss) == pytest.approx(float(t["task"]), rel=1e-6)


def test_standard_option_checks():
    with pytest.raises(ValueError, match="method.params.adversarial: 'vat' is not allowed; choose one of: none, fgm, pgd"):
        method(adversarial="vat")
    with pytest.raises(ValueError, match="method.params.adv_target: 'logits' is not allowed"):
        method(adversarial="fgm", adv_target="logits")
    with pytest.raises(ValueError, match=r"^method.params.mixup_alpha: -1.0 is out of range; must be >= 0.0$"):
        method(mixup_alpha=-1)
    with pytest.raises(ValueError, match=r"^method.params.adv_epsilon: 0.0 is out of range; must be > 0.0$"):
        method(adversarial="fgm", adv_epsilon=0)
    with pytest.raises(ValueError, match=r"^method.params.adv_steps: 0 is out of range; must be >= 1$"):
        method(adversarial="pgd", adv_steps=0)
    with pytest.raises(ValueError, match=r"^method.params.mix_prob: 2.0 is out of range; must be <= 1.0 and >= 0.0$"):
        method(mix_prob=2)
    with pytest.raises(ValueError, match=r"^method.params.adv_alpha: 0.0 is out of range; must be > 0.0$"):
        method(adversarial="pgd", adv_alpha=0)
