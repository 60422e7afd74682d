"""Every registered loss against a NumPy reference, plus the shared contract (shapes, reductions, hard vs
soft targets, sample and class weights, gradients, AMP inputs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle

from robust_paddle.losses import LOSSES, build_loss

N, C = 6, 4
A = -4.0


# ------------------------------------------------------------------------------------ NumPy references
def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _ce(z, t, label_smoothing=0.0):
    t = (1 - label_smoothing) * t + label_smoothing / t.shape[1]
    return -(t * _log_softmax(z)).sum(1)


def _lq(p, q):
    return (1 - p**q) / q


def _gce(z, t, q=0.7):
    return (t * _lq(np.exp(_log_softmax(z)), q)).sum(1)


def _tgce(z, t, q=0.7, k=0.5):
    p = np.exp(_log_softmax(z))
    return (t * np.where(p > k, _lq(p, q), _lq(k, q))).sum(1)


def _rce(z, t, log_zero=A):
    return -(np.exp(_log_softmax(z)) * np.maximum(np.log(np.maximum(t, 1e-300)), log_zero)).sum(1)


def _mae(z, t):
    return np.abs(np.exp(_log_softmax(z)) - t).sum(1)


def _nce(z, t):
    lp = _log_softmax(z)
    return (t * lp).sum(1) / lp.sum(1)


def _focal(z, t, gamma=2.0, alpha=None):
    lp = _log_softmax(z)
    a = np.ones(z.shape[1]) if alpha is None else np.broadcast_to(np.asarray(alpha, float), (z.shape[1],))
    return -(a * t * (1 - np.exp(lp)) ** gamma * lp).sum(1)


def _boot(z, t, beta, hard):
    p = np.exp(_log_softmax(z))
    pred = np.eye(z.shape[1])[p.argmax(1)] if hard else p
    return -((beta * t + (1 - beta) * pred) * _log_softmax(z)).sum(1)


#: name -> [(params, reference(z, t) -> [N])]: the defaults first, then non-default settings.
REFERENCES = {
    "ce": [({}, _ce), ({"label_smoothing": 0.2}, lambda z, t: _ce(z, t, 0.2))],
    "gce": [({}, _gce), ({"q": 0.3}, lambda z, t: _gce(z, t, 0.3))],
    "truncated_gce": [({}, _tgce), ({"q": 0.4, "k": 0.3}, lambda z, t: _tgce(z, t, 0.4, 0.3))],
    "sce": [({}, lambda z, t: 0.1 * _ce(z, t) + _rce(z, t)),
            ({"alpha": 2.0, "beta": 0.5, "log_zero": -6.0}, lambda z, t: 2 * _ce(z, t) + 0.5 * _rce(z, t, -6.0))],
    "nce_rce": [({}, lambda z, t: _nce(z, t) + _rce(z, t)),
                ({"alpha": 10.0, "beta": 0.1}, lambda z, t: 10 * _nce(z, t) + 0.1 * _rce(z, t))],
    "nce_mae": [({}, lambda z, t: _nce(z, t) + _mae(z, t)),
                ({"alpha": 3.0, "beta": 0.5}, lambda z, t: 3 * _nce(z, t) + 0.5 * _mae(z, t))],
    "focal": [({}, _focal), ({"gamma": 0.5, "alpha": 0.25}, lambda z, t: _focal(z, t, 0.5, 0.25)),
              ({"gamma": 1.0, "alpha": [1.0, 0.5, 2.0, 0.0]}, lambda z, t: _focal(z, t, 1.0, [1.0, 0.5, 2.0, 0.0]))],
    "mae": [({}, _mae)],
    "bootstrap_soft": [({}, lambda z, t: _boot(z, t, 0.95, False)), ({"beta": 0.5}, lambda z, t: _boot(z, t, 0.5, False))],
    "bootstrap_hard": [({}, lambda z, t: _boot(z, t, 0.8, True)), ({"beta": 0.3}, lambda z, t: _boot(z, t, 0.3, True))],
}
NAMES = sorted(REFERENCES)
CASES = [(name, params, ref) for name in NAMES for params, ref in REFERENCES[name]]


# ----------------------------------------------------------------------------------------------- data
def _data(seed: int = 0, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    z = (scale * rng.standard_normal((N, C))).astype(np.float32)
    y = rng.integers(0, C, N).astype(np.int64)
    soft = rng.dirichlet(np.ones(C), N).astype(np.float32)
    return z, y, soft


def _t(a: np.ndarray, *, grad: bool = False) -> paddle.Tensor:
    t = paddle.to_tensor(a)
    t.stop_gradient = not grad
    return t


def _np(x: paddle.Tensor) -> np.ndarray:
    return np.asarray(x.numpy(), dtype=np.float64)


def test_every_registered_loss_has_a_reference():
    assert set(LOSSES.names()) == set(REFERENCES)


def test_loss_classes_follow_house_style():
    for name in LOSSES:
        cls = LOSSES.get(name)
        assert issubclass(cls, paddle.nn.Layer) and cls.__name__.endswith("Loss")
        assert "arxiv.org/abs/" in (cls.__doc__ or ""), name


# ------------------------------------------------------------------------------------- values vs NumPy
@pytest.mark.parametrize("name,params,ref", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_matches_numpy_reference_for_hard_and_soft_targets(name, params, ref):
    z, y, soft = _data()
    loss = build_loss(name, num_classes=C, reduction="none", **params)
    np.testing.assert_allclose(_np(loss(_t(z), _t(y))), ref(z.astype(np.float64), np.eye(C)[y]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(loss(_t(z), _t(soft))), ref(z.astype(np.float64), soft.astype(np.float64)),
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_for_each_reduction(name):
    z, y, soft = _data()
    for target in (_t(y), _t(soft)):
        assert build_loss(name, num_classes=C, reduction="none")(_t(z), target).shape == [N]
        for red in ("mean", "sum"):
            out = build_loss(name, num_classes=C, reduction=red)(_t(z), target)
            assert out.shape == [] and out.dtype == paddle.float32


@pytest.mark.parametrize("name", NAMES)
def test_hard_labels_equal_their_one_hot_soft_targets(name):
    z, y, _ = _data(1)
    loss = build_loss(name, num_classes=C, reduction="none")
    hard = _np(loss(_t(z), _t(y)))
    np.testing.assert_allclose(_np(loss(_t(z), _t(np.eye(C, dtype=np.float32)[y]))), hard, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_np(loss(_t(z), _t(y.reshape(N, 1)))), hard, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_np(loss(_t(z), _t(y.astype(np.int32)))), hard, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_sum_is_mean_times_n_and_mean_of_none(name):
    z, y, soft = _data(2)
    for target in (_t(y), _t(soft)):
        none = _np(build_loss(name, num_classes=C, reduction="none")(_t(z), target))
        mean = float(build_loss(name, num_classes=C, reduction="mean")(_t(z), target))
        total = float(build_loss(name, num_classes=C, reduction="sum")(_t(z), target))
        assert total == pytest.approx(mean * N, rel=1e-5)
        assert mean == pytest.approx(none.mean(), rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sample_weight_multiplies_per_sample_losses(name):
    z, y, _ = _data(3)
    w = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0], dtype=np.float32)
    none = _np(build_loss(name, num_classes=C, reduction="none")(_t(z), _t(y)))
    np.testing.assert_allclose(_np(build_loss(name, num_classes=C, reduction="none")(_t(z), _t(y), _t(w))),
                               none * w, rtol=1e-6, atol=1e-7)
    mean = float(build_loss(name, num_classes=C)(_t(z), _t(y), _t(w)))
    assert mean == pytest.approx((none * w).mean(), rel=1e-5)  # mean over N, not over sum(w)
    total = float(build_loss(name, num_classes=C, reduction="sum")(_t(z), _t(y), _t(w.reshape(N, 1))))
    assert total == pytest.approx((none * w).sum(), rel=1e-5)
    ones = float(build_loss(name, num_classes=C)(_t(z), _t(y), _t(np.ones(N, np.float32))))
    assert ones == pytest.approx(none.mean(), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_class_weights_scale_each_sample_by_its_target_weight(name):
    z, y, soft = _data(4)
    cw = [0.5, 2.0, 1.0, 3.0]
    plain = build_loss(name, num_classes=C, reduction="none")
    weighted = build_loss(name, num_classes=C, reduction="none", weight=cw)
    np.testing.assert_allclose(_np(weighted(_t(z), _t(y))), np.asarray(cw)[y] * _np(plain(_t(z), _t(y))), rtol=1e-5)
    np.testing.assert_allclose(_np(weighted(_t(z), _t(soft))), soft @ np.asarray(cw) * _np(plain(_t(z), _t(soft))),
                               rtol=1e-5)
    mean = float(build_loss(name, num_classes=C, weight=cw)(_t(z), _t(y)))
    assert mean == pytest.approx((np.asarray(cw)[y] * _np(plain(_t(z), _t(y)))).mean(), rel=1e-5)
    uniform = build_loss(name, num_classes=C, reduction="none", weight=[1.0] * C)
    np.testing.assert_allclose(_np(uniform(_t(z), _t(y))), _np(plain(_t(z), _t(y))), rtol=1e-6)


@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])
@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_even_for_saturated_logits(name, scale):
    z, y, soft = _data(5, scale=scale)
    kwargs = {"gamma": 0.5} if name == "focal" else {}  # (1-p)^gamma with gamma < 1 is the risky case
    for target in (_t(y), _t(soft)):
        logits = _t(z, grad=True)
        out = build_loss(name, num_classes=C, weight=[1.0, 2.0, 0.5, 1.0], **kwargs)(logits, target)
        out.backward()
        assert math.isfinite(float(out))
        assert np.all(np.isfinite(logits.grad.numpy()))


@pytest.mark.parametrize("name", NAMES)
def test_a_small_gradient_step_lowers_the_loss(name):
    z, y, _ = _data(6, scale=0.5)  # unsaturated: p_y ~ 1/C, non-zero gradients everywhere
    kwargs = {"k": 0.05} if name == "truncated_gce" else {}  # the default k=0.5 would truncate every p_y ~ 1/4
    loss = build_loss(name, num_classes=C, **kwargs)
    logits = _t(z, grad=True)
    before = loss(logits, _t(y))
    before.backward()
    after = loss(_t(z - 1e-2 * logits.grad.numpy()), _t(y))
    assert float(after) < float(before)


@pytest.mark.parametrize("name", NAMES)
def test_half_precision_logits_are_computed_in_float32(name):
    z, y, soft = _data(7)
    z16 = z.astype(np.float16)
    loss = build_loss(name, num_classes=C, reduction="none")
    for target, t64 in ((_t(y), np.eye(C)[y]), (_t(soft.astype(np.float16)), soft.astype(np.float16).astype(np.float64))):
        out = loss(_t(z16), target)
        assert out.dtype == paddle.float32
        ref = _np(loss(_t(z16.astype(np.float32)), _t(t64.astype(np.float32))))
        np.testing.assert_allclose(_np(out), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_float64_inputs_are_accepted(name):
    z, y, soft = _data(8)
    loss = build_loss(name, num_classes=C)
    a = float(loss(_t(z.astype(np.float64)), _t(soft.astype(np.float64)), _t(np.ones(N))))
    assert a == pytest.approx(float(loss(_t(z), _t(soft))), rel=1e-6)


@pytest.mark.filterwarnings("ignore:amp_guard can only be enabled")
@pytest.mark.parametrize("level", ["O1", "O2"])
def test_losses_inside_auto_cast_return_float32_and_backpropagate(level):
    # On a CPU-only build auto_cast is inert (the bf16/fp16 logits tests cover the casting there); on a
    # GPU this runs the losses inside a real O1/O2 region.
    z, y, soft = _data(9)
    net = paddle.nn.Linear(C, C)
    x = _t(z)
    for name in NAMES:
        with paddle.amp.auto_cast(level=level, dtype="bfloat16"):
            out = build_loss(name, num_classes=C)(net(x), _t(y)) + build_loss(name, num_classes=C)(net(x), _t(soft))
        assert out.dtype == paddle.float32, name
        out.backward()
        assert np.all(np.isfinite(net.weight.grad.astype("float32").numpy())), name
        net.clear_gradients()


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_logits_get_float32_loss_and_gradients_flow_back(name):
    z, y, _ = _data(10)
    logits = paddle.to_tensor(z).astype("bfloat16")
    logits.stop_gradient = False
    out = build_loss(name, num_classes=C)(logits, _t(y))
    out.backward()
    assert out.dtype == paddle.float32 and logits.grad.dtype == paddle.bfloat16
    assert np.all(np.isfinite(logits.grad.astype("float32").numpy()))
