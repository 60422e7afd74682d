"""Optimizers: every registry entry steps, no-decay grouping, NumPy references, checks and clipping."""

import math

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle
from paddle import nn

from robust_paddle import _compat
from robust_paddle.config import OptimizerConfig
from robust_paddle.errors import ConfigError
from robust_paddle.optim import OPTIMIZERS, NAdam, RAdam, build_grad_clip, build_optimizer, split_decay_params
from robust_paddle.optim.optimizers import make_nadam, make_radam

# the hand-written NAdam/RAdam serve Paddle 2.6 only; Paddle 3 ships its own (picked by make_nadam/make_radam)
hand_written_only = pytest.mark.skipif(_compat.IS_PADDLE3, reason="Paddle 3 ships NAdam/RAdam; the hand-written ones serve Paddle 2.6")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 4)).astype("float32")
Y = RNG.normal(size=(6, 3)).astype("float32")
W0 = RNG.normal(size=(4, 3)).astype("float32")
B0 = RNG.normal(size=(3,)).astype("float32")


def small_net() -> nn.Layer:
    paddle.seed(1)
    return nn.Sequential(nn.Conv2D(1, 2, 3, padding=1), nn.BatchNorm2D(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


def linear() -> nn.Linear:
    lin = nn.Linear(4, 3)
    lin.weight.set_value(W0)
    lin.bias.set_value(B0)
    return lin


def quad_step(lin: nn.Linear, opt: paddle.optimizer.Optimizer) -> None:
    """One step on 0.5 * ||X W + b - Y||^2."""
    loss = 0.5 * ((lin(paddle.to_tensor(X)) - paddle.to_tensor(Y)) ** 2).sum()
    loss.backward()
    opt.step()
    opt.clear_grad()


def quad_grads(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = X.astype(np.float64) @ w + b - Y
    return X.T.astype(np.float64) @ d, d.sum(0)


def cfg(name: str, **kw) -> OptimizerConfig:
    return OptimizerConfig(name=name, **kw)


# ----------------------------------------------------------------------------------------- every entry
@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_takes_a_step(name):
    net = small_net()
    before = [p.numpy().copy() for p in net.parameters()]
    opt = build_optimizer(cfg(name), net.parameters(), learning_rate=0.01)
    out = net(paddle.to_tensor(RNG.normal(size=(4, 1, 4, 4)).astype("float32")))
    nn.functional.cross_entropy(out, paddle.to_tensor([0, 1, 2, 0])).backward()
    opt.step()
    changed = [not np.allclose(b, p.numpy()) for b, p in zip(before, net.parameters())]
    assert any(changed)
    assert all(np.isfinite(p.numpy()).all() for p in net.parameters())


def test_registry_has_the_documented_optimizers():
    assert set(OPTIMIZERS.names()) == {"sgd", "rmsprop", "adam", "nadam", "adamax", "adamw", "radam"}


# ---------------------------------------------------------------------------------------- no-decay groups
def test_no_decay_split_holds_exactly_biases_and_norm_params():
    net = small_net()
    conv, bn, lin = net[0], net[1], net[4]
    decay, no_decay = split_decay_params(net.parameters(), no_decay_norm_bias=True)
    assert {p.name for p in decay} == {conv.weight.name, lin.weight.name}
    # BN running statistics are (non-trainable) parameters in Paddle; the optimizer skips them.
    assert {p.name for p in no_decay} == {conv.bias.name, bn.weight.name, bn.bias.name, lin.bias.name,
                                          bn._mean.name, bn._variance.name}
    decay, no_decay = split_decay_params(net.parameters(), no_decay_norm_bias=False)
    assert len(decay) == len(net.parameters()) and no_decay == []


@pytest.mark.parametrize("no_decay_norm_bias", [True, False])
def test_a_tensor_marked_no_weight_decay_is_never_decayed(no_decay_norm_bias):
    net = small_net()
    lin = net[4]
    lin.weight.no_weight_decay = True
    decay, no_decay = split_decay_params(net.parameters(), no_decay_norm_bias=no_decay_norm_bias)
    assert lin.weight.name in {p.name for p in no_decay} and lin.weight.name not in {p.name for p in decay}
    assert net[0].weight.name in {p.name for p in decay}
    build_optimizer(cfg("sgd", weight_decay=0.01), net.parameters(), learning_rate=0.1)
    assert lin.weight.regularizer is None and isinstance(net[0].weight.regularizer, paddle.regularizer.L2Decay)


def test_build_optimizer_sets_the_decay_on_each_tensor():
    net = small_net()
    build_optimizer(cfg("adam", weight_decay=0.01), net.parameters(), learning_rate=0.1)
    for p in net.parameters():
        if len(p.shape) > 1:
            assert isinstance(p.regularizer, paddle.regularizer.L2Decay) and p.regularizer._coeff == 0.01
        else:
            assert p.regularizer is None
    build_optimizer(cfg("adam", weight_decay=0.01, no_decay_norm_bias=False), net.parameters(), learning_rate=0.1)
    assert all(p.regularizer is not None for p in net.parameters())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_zero_gradient_step_decays_only_the_decay_group(name):
    """With zero loss gradients, only weight decay moves parameters: weights move, biases/BN stay."""
    net = small_net()
    opt = build_optimizer(cfg(name, weight_decay=0.1, momentum=0.9 if name == "sgd" else 0.0),
                          net.parameters(), learning_rate=0.1)
    before = {p.name: p.numpy().copy() for p in net.parameters()}
    (net(paddle.ones([2, 1, 4, 4])) * 0.0).sum().backward()
    opt.step()
    for p in net.parameters():
        if p.stop_gradient:  # BN running statistics, updated by the forward pass itself
            continue
        moved = not np.allclose(before[p.name], p.numpy())
        assert moved == (len(p.shape) > 1), (name, p.name)


def test_adamw_decay_is_decoupled_even_after_another_optimizer_tagged_the_params():
    net = small_net()
    build_optimizer(cfg("sgd", weight_decay=0.5), net.parameters(), learning_rate=0.1)  # sets regularizers
    opt = build_optimizer(cfg("adamw", weight_decay=0.5), net.parameters(), learning_rate=0.1)
    w = net[4].weight.numpy().copy()
    (net(paddle.ones([2, 1, 4, 4])) * 0.0).sum().backward()
    opt.step()
    np.testing.assert_allclose(net[4].weight.numpy(), w * (1 - 0.1 * 0.5), rtol=1e-6)


# ------------------------------------------------------------------------------------- NumPy references
def ref_sgd(steps, *, lr, mu, wd, nesterov):
    w, b = W0.astype(np.float64), B0.astype(np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    for _ in range(steps):
        gw, gb = quad_grads(w, b)
        gw = gw + wd * w  # bias is in the no-decay group
        vw, vb = mu * vw + gw, mu * vb + gb
        if nesterov:
            w, b = w - lr * (gw + mu * vw), b - lr * (gb + mu * vb)
        else:
            w, b = w - lr * vw, b - lr * vb
    return w, b


@pytest.mark.parametrize("momentum,nesterov", [(0.9, True), (0.9, False), (0.0, False)])
def test_sgd_matches_numpy(momentum, nesterov):
    lin = linear()
    opt = build_optimizer(cfg("sgd", momentum=momentum, nesterov=nesterov, weight_decay=0.01),
                          lin.parameters(), learning_rate=0.01)
    for _ in range(5):
        quad_step(lin, opt)
    w, b = ref_sgd(5, lr=0.01, mu=momentum, wd=0.01, nesterov=nesterov)
    np.testing.assert_allclose(lin.weight.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.bias.numpy(), b, rtol=1e-5, atol=1e-6)


def ref_nadam(steps, *, lr, betas, eps, wd, psi=4e-3):
    b1, b2 = betas
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    mu_prod = 1.0
    for t in range(1, steps + 1):
        grads = list(quad_grads(*params))
        grads[0] = grads[0] + wd * params[0]
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        mu_prod *= mu_t
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i] / (1 - b2**t)) + eps
            params[i] = (params[i] - lr * (1 - mu_t) / (1 - mu_prod) * g / denom
                         - lr * mu_next / (1 - mu_prod * mu_next) * m[i] / denom)
    return params


def ref_radam(steps, *, lr, betas, eps, wd):
    b1, b2 = betas
    params = [W0.astype(np.float64), B0.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, steps + 1):
        grads = list(quad_grads(*params))
        grads[0] = grads[0] + wd * params[0]
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
            if rho_t > 5:
                rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
                adaptive = math.sqrt(1 - b2**t) / (np.sqrt(v[i]) + eps)
                params[i] = params[i] - lr * m_hat * rect * adaptive
            else:
                params[i] = params[i] - lr * m_hat
    return params


@pytest.mark.parametrize("name,ref", [("nadam", ref_nadam), ("radam", ref_radam)])
@pytest.mark.parametrize("betas,steps", [((0.9, 0.999), 6), ((0.8, 0.9), 8)])  # RAdam rectifies from t=6 (rho_5=4.996)
def test_nadam_and_radam_match_numpy(name, ref, betas, steps):
    """Whichever implementation this Paddle gets (its own on 3.x, the hand-written one on 2.6)."""
    lin = linear()
    opt = build_optimizer(cfg(name, weight_decay=0.05, params={"betas": list(betas), "epsilon": 1e-6}),
                          lin.parameters(), learning_rate=0.01)
    trace = []
    for t in range(1, steps + 1):
        quad_step(lin, opt)
        w, b = ref(t, lr=0.01, betas=betas, eps=1e-6, wd=0.05)
        trace.append((lin.weight.numpy().copy(), w, lin.bias.numpy().copy(), b))
    for got_w, w, got_b, b in trace:
        np.testing.assert_allclose(got_w, w, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got_b, b, rtol=1e-5, atol=1e-7)


def test_radam_never_rectifies_when_beta2_is_small():
    lin = linear()
    opt = make_radam(0.01, lin.parameters(), betas=(0.9, 0.5))
    for _ in range(5):
        quad_step(lin, opt)
    w, b = ref_radam(5, lr=0.01, betas=(0.9, 0.5), eps=1e-8, wd=0.0)
    np.testing.assert_allclose(lin.weight.numpy(), w, rtol=1e-5, atol=1e-7)


def test_make_picks_paddles_own_optimizer_on_paddle3():
    lin = linear()
    for make, cls, name in ((make_nadam, NAdam, "NAdam"), (make_radam, RAdam, "RAdam")):
        opt = make(0.01, lin.parameters())
        want = getattr(paddle.optimizer, name) if _compat.IS_PADDLE3 else cls
        assert type(opt) is want


@pytest.mark.parametrize("cls", [make_nadam, make_radam])
def test_state_round_trips_and_follows_a_scheduler(cls):
    """Resume: a fresh optimizer loaded from state_dict continues exactly like the original.

    unique_name.guard() gives each build the tensor names of a fresh process (as a resumed run has).
    """
    with paddle.utils.unique_name.guard():
        sched = paddle.optimizer.lr.StepDecay(0.01, step_size=1, gamma=0.5)
        a = linear()
        opt_a = cls(sched, a.parameters())
        for _ in range(3):
            quad_step(a, opt_a)
            sched.step()
        assert opt_a.get_lr() == pytest.approx(0.01 * 0.5**3)
        weights = {k: v.numpy().copy() for k, v in a.state_dict().items()}
        state = {k: (v.numpy().copy() if hasattr(v, "numpy") else v) for k, v in opt_a.state_dict().items()}
        quad_step(a, opt_a)
    with paddle.utils.unique_name.guard():
        b = linear()
        b.set_state_dict(weights)
        opt_b = cls(0.01 * 0.5**3, b.parameters())
        opt_b.set_state_dict(state)
        quad_step(b, opt_b)
    np.testing.assert_allclose(a.weight.numpy(), b.weight.numpy(), rtol=1e-6)
    np.testing.assert_allclose(a.bias.numpy(), b.bias.numpy(), rtol=1e-6)


# --------------------------------------------------------------------------------------------- checks
def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'.*adamw"):
        build_optimizer(cfg("lion"), linear().parameters(), learning_rate=0.1)


def test_unknown_params_name_the_field_and_allowed_keys():
    with pytest.raises(ValueError, match=r"optimizer.params: unknown key\(s\) beta1 for optimizer 'adam'; "
                                         r"allowed: betas, epsilon"):
        build_optimizer(cfg("adam", params={"beta1": 0.8}), linear().parameters(), learning_rate=0.1)
    with pytest.raises(ValueError, match=r"unknown key\(s\) learning_rate .*optimizer.lr"):
        build_optimizer(cfg("sgd", params={"learning_rate": 0.8}), linear().parameters(), learning_rate=0.1)


@pytest.mark.parametrize("name,params,match", [
    ("adam", {"betas": [0.9]}, r"optimizer.params.betas: expected \[beta1, beta2\]"),
    ("nadam", {"betas": [0.9, 1.0]}, r"optimizer.params.betas\[1\]: 1.0 is out of range"),
    ("radam", {"epsilon": -1}, "optimizer.params.epsilon: -1 is out of range"),
    ("rmsprop", {"rho": "high"}, "optimizer.params.rho: expected a number"),
    ("rmsprop", {"centered": 1}, "optimizer.params.centered: expected true/false"),
])
def test_bad_param_values(name, params, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(cfg(name, params=params), linear().parameters(), learning_rate=0.1)


def test_nesterov_checks():
    with pytest.raises(ValueError, match="optimizer.nesterov: true is only supported by 'sgd'.*nadam"):
        build_optimizer(cfg("adam", nesterov=True), linear().parameters(), learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer.nesterov: true needs optimizer.momentum > 0"):
        build_optimizer(cfg("sgd", nesterov=True, momentum=0.0), linear().parameters(), learning_rate=0.1)


def test_learning_rate_and_parameter_checks():
    with pytest.raises(ValueError, match="parameters is empty"):
        build_optimizer(cfg("sgd"), [], learning_rate=0.1)
    with pytest.raises(ConfigError, match="learning_rate: expected a float or a paddle LRScheduler"):
        build_optimizer(cfg("sgd"), linear().parameters(), learning_rate="0.1")
    with pytest.raises(ValueError, match="learning_rate: must be > 0"):
        build_optimizer(cfg("sgd"), linear().parameters(), learning_rate=0.0)


# ------------------------------------------------------------------------------------------- clipping
def test_build_grad_clip():
    assert build_grad_clip(0) is None
    assert isinstance(build_grad_clip(1.0), paddle.nn.ClipGradByGlobalNorm)
    with pytest.raises(ValueError, match="train.grad_clip: expected a number >= 0"):
        build_grad_clip(-1.0)


def test_grad_clip_bounds_the_update_norm():
    lin = linear()
    opt = build_optimizer(cfg("sgd", momentum=0.0, weight_decay=0.0), lin.parameters(), learning_rate=1.0,
                          grad_clip=build_grad_clip(0.5))
    w, b = lin.weight.numpy().copy(), lin.bias.numpy().copy()
    gw, gb = quad_grads(W0.astype(np.float64), B0.astype(np.float64))
    assert math.sqrt((gw**2).sum() + (gb**2).sum()) > 0.5  # clipping is active
    quad_step(lin, opt)
    step = np.concatenate([(w - lin.weight.numpy()).ravel(), (b - lin.bias.numpy()).ravel()])
    assert np.linalg.norm(step) == pytest.approx(0.5, rel=1e-4)


@hand_written_only
@pytest.mark.parametrize("cls", [NAdam, RAdam])
def test_hand_written_master_weights_for_float16(cls):
    """multi_precision (AMP O2): float32 master weights are updated, the float16 tensor is their copy."""
    init = (np.arange(6).reshape(2, 3) / 8.0 - 0.3).astype("float32")
    target = paddle.to_tensor(np.linspace(-1, 1, 6).reshape(2, 3).astype("float32"))
    p16 = paddle.create_parameter([2, 3], dtype="float16", default_initializer=nn.initializer.Constant(0.0))
    p16.set_value(paddle.to_tensor(init).astype("float16"))
    p32 = paddle.create_parameter([2, 3], dtype="float32")
    p32.set_value(init)
    opt16, opt32 = cls(0.01, [p16], multi_precision=True), cls(0.01, [p32])
    for _ in range(8):
        ((p16.astype("float32") - target) ** 2).sum().backward()
        opt16.step()
        opt16.clear_grad()
        ((p32 - target) ** 2).sum().backward()
        opt32.step()
        opt32.clear_grad()
    (master,) = opt16._master_weights.values()
    assert p16.dtype == paddle.float16 and master.dtype == paddle.float32
    np.testing.assert_allclose(p16.numpy().astype("float32"), master.numpy(), rtol=1e-3)  # one float16 ulp
    np.testing.assert_allclose(master.numpy(), p32.numpy(), atol=2e-3)
