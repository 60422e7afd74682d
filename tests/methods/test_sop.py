"""methods/sop.py: SOP's loss and its u/v step against NumPy, update directions, state, parameter checks,
and an exactly resumed digits run."""

import numpy as np
import paddle
import pytest

from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.methods.sop import SOPMethod
from tests.method_helpers import build_method, log_softmax, softmax, toy_context

EPS = 1e-4


def np_sop_loss(z, y, u, v, *, balance=0.0):
    """NumPy mirror of the reference loss (float64); u [B, 1], v [B, C]."""
    c = z.shape[1]
    onehot = np.eye(c)[y]
    u_sq = np.clip(u ** 2 * onehot, 0, 1 - EPS)
    v_sq = np.clip(v ** 2 * (1 - onehot), 0, 1 - EPS)
    q = np.clip(softmax(z) + u_sq - v_sq, EPS, None)
    q = np.clip(q / np.maximum(q.sum(1, keepdims=True), EPS), EPS, 1.0)
    ce = -(onehot * np.log(q)).sum(1).mean()
    hard = np.eye(c)[z.argmax(1)]
    mse = ((hard + u_sq - v_sq - onehot) ** 2).sum() / len(y)
    bal = -np.log(np.clip(q.mean(0), EPS, 1.0)).mean()
    return ce, mse, bal


def numeric_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        a, b = x.copy(), x.copy()
        a[i] += h
        b[i] -= h
        g[i] = (f(a) - f(b)) / (2 * h)
    return g


def make(labels, seed=0, **params):
    paddle.seed(seed)
    return build_method(SOPMethod, toy_context(np.asarray(labels), dim=4, classes=3, seed=seed), **params)


def step(m, x, y, idx):
    return m.train_step((paddle.to_tensor(x), paddle.to_tensor(y), paddle.to_tensor(idx)), epoch=0, step=0)


@pytest.mark.parametrize("balance", [0.0, 0.1])
def test_loss_and_the_u_v_step_match_numpy(balance):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)).astype("float32")
    y = np.array([0, 2, 1, 1, 0])
    idx = np.array([3, 0, 6, 2, 5])
    m = make(np.zeros(8, dtype=np.int64), lr_u=0.7, lr_v=2.0, balance=balance)
    m.u[idx] = rng.uniform(0.1, 0.6, size=(5, 1)).astype(np.float32)  # away from the 1e-8 start: real gradients
    m.v[idx] = rng.uniform(0.1, 0.6, size=(5, 3)).astype(np.float32)
    u0, v0 = m.u.copy(), m.v.copy()
    z = m.networks["net"](paddle.to_tensor(x)).numpy().astype(np.float64)
    loss, terms = step(m, x, y, idx)
    ce, mse, bal = np_sop_loss(z, y, u0[idx].astype(np.float64), v0[idx].astype(np.float64))
    assert float(terms["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(terms["mse"]) == pytest.approx(mse, rel=1e-5)
    assert float(loss) == pytest.approx(ce + mse + balance * bal, rel=1e-5)
    # u learns through CE (+ balance) only, v through the squared error only (the reference's detaches)
    gu = numeric_grad(lambda u: (lambda r: r[0] + balance * r[2])(np_sop_loss(z, y, u, v0[idx].astype(np.float64))),
                      u0[idx].astype(np.float64))
    gv = numeric_grad(lambda v: np_sop_loss(z, y, u0[idx].astype(np.float64), v)[1], v0[idx].astype(np.float64))
    np.testing.assert_allclose(m.u[idx], u0[idx] - 0.7 * gu, atol=2e-5)
    np.testing.assert_allclose(m.v[idx], v0[idx] - 2.0 * gv, atol=2e-5)
    rest = np.setdiff1d(np.arange(8), idx)
    assert np.array_equal(m.u[rest], u0[rest]) and np.array_equal(m.v[rest], v0[rest])


def test_network_gradient_is_the_corrected_cross_entropy_only():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 4)).astype("float32")
    y = np.array([1, 0, 2, 1])
    m = make(np.zeros(4, dtype=np.int64))
    m.u[:] = 0.5
    m.v[:] = 0.4
    u0, v0 = m.u.copy(), m.v.copy()
    net = m.networks["net"]
    loss, _ = step(m, x, y, np.arange(4))
    loss.backward()
    got = net.fc.bias.grad.numpy()
    w, b = net.fc.weight.numpy().astype(np.float64), net.fc.bias.numpy().astype(np.float64)
    ref = numeric_grad(lambda bb: np_sop_loss(x.astype(np.float64) @ w + bb, y, u0, v0)[0], b)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_u_grows_on_a_contradicted_label_and_v_on_the_predicted_class():
    """A sample labelled 0 that the network confidently calls 2: u (label share) and v[2] both grow; a
    sample whose label agrees with the prediction keeps u and v where they started."""
    m = make(np.zeros(2, dtype=np.int64), lr_u=1.0, lr_v=1.0)
    net = m.networks["net"]
    net.fc.weight.set_value(np.zeros((4, 3), dtype=np.float32))
    net.fc.bias.set_value(np.array([0.0, 0.0, 6.0], dtype=np.float32))
    m.u[:] = 0.05
    m.v[:] = 0.05
    x = np.zeros((2, 4), dtype=np.float32)
    step(m, x, np.array([0, 2]), np.array([0, 1]))
    assert m.u[0, 0] > 0.05 and m.v[0, 2] > 0.05  # noisy sample: the corruption is absorbed
    assert m.v[0, 1] < 0.05                       # no push towards a class nobody predicts
    assert m.u[1, 0] < 0.051 and np.all(m.v[1] <= 0.05 + 1e-7)  # clean sample stays sparse


def test_repeated_rows_in_a_batch_add_their_steps():
    m = make(np.zeros(3, dtype=np.int64), lr_u=1.0, lr_v=1.0)
    m.u[:] = 0.3
    m.v[:] = 0.3
    x = np.zeros((2, 4), dtype=np.float32)
    twin = make(np.zeros(3, dtype=np.int64), lr_u=1.0, lr_v=1.0)
    twin.u[:], twin.v[:] = 0.3, 0.3
    step(m, x, np.array([1, 1]), np.array([2, 2]))
    step(twin, x[:1], np.array([1]), np.array([2]))
    # one row twice in a batch of 2 = the same per-sample gradient (1/2 each) added twice
    np.testing.assert_allclose(m.u[2] - 0.3, twin.u[2] - 0.3, rtol=1e-4)


def test_consistency_uses_a_second_view_and_adds_the_kl():
    rng = np.random.default_rng(2)
    x, x2 = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(3, 4)).astype("float32")
    y = np.array([0, 1, 2])
    m = make(np.zeros(3, dtype=np.int64), consistency=0.9)
    assert m.loader_views(None) == ((1, True),) and make([0]).loader_views(None) == ()
    z1 = m.networks["net"](paddle.to_tensor(x)).numpy().astype(np.float64)
    z2 = m.networks["net"](paddle.to_tensor(x2)).numpy().astype(np.float64)
    loss, terms = m.train_step(tuple(paddle.to_tensor(a) for a in (x, y, np.arange(3), x2)), epoch=0, step=0)
    p1 = softmax(z1)
    kl = (p1 * (np.log(p1) - log_softmax(z2))).sum(1).mean()
    ce, mse, _ = np_sop_loss(z1, y, m.u[:3].astype(np.float64) * 0, m.v[:3].astype(np.float64) * 0)
    assert float(terms["consistency"]) == pytest.approx(kl, rel=1e-5)
    assert float(loss) == pytest.approx(ce + mse + 0.9 * kl, rel=1e-4)


def test_clean_probability_state_and_checks():
    labels = np.array([0, 2, 1])
    m = make(labels)
    assert np.allclose(m.clean_probability(), 1.0)
    m.u[:, 0] = [0.0, 0.5, 2.0]
    assert np.allclose(m.clean_probability(), [1.0, 0.75, 0.0])
    other = make(labels, seed=3)
    other.set_state_dict(m.state_dict())
    assert np.array_equal(other.u, m.u) and np.array_equal(other.v, m.v)
    with pytest.raises(CheckpointError, match=r"SOP v of shape \[3, 2\], this run needs \[3, 3\]"):
        other.set_state_dict({"u": m.u, "v": np.zeros((3, 2))})
    with pytest.raises(CheckpointError, match=r"SOP u of shape None"):
        other.set_state_dict({"targets": m.u})
    with pytest.raises(ConfigError, match=r"^method.params.lr_u: 0.0 is out of range; must be > 0.0$"):
        make(labels, lr_u=0.0)
    with pytest.raises(ConfigError, match=r"^method.params.balance: expected float, got 'x' \(str\)$"):
        make(labels, balance="x")


def test_registry_names_bad_params():
    from robust_paddle.registry import METHODS

    with pytest.raises(ConfigError, match=r"^method.params.consistency: -1.0 is out of range; must be >= 0.0$"):
        METHODS.build("sop", None, field="method.params", consistency=-1)
    with pytest.raises(ConfigError, match=r"^method.params: unknown key\(s\) lr for method 'sop'"):
        METHODS.build("sop", None, field="method.params", lr=1)


def test_digits_run_resumes_exactly_and_u_marks_the_noise(tmp_path):
    from tests.method_helpers import train_and_resume

    ma, mb = train_and_resume("sop/digits.yaml", tmp_path, ["data.subset=400", "train.epochs=4"])
    a = ma
    b = mb
    np.testing.assert_allclose(a["u"], b["u"], atol=1e-6)
    np.testing.assert_allclose(a["v"], b["v"], atol=1e-6)
    table = np.load(tmp_path / "full" / "train_labels.npy")
    noisy = table["label"] != table["clean_label"]
    u_sq = a["u"][:, 0] ** 2
    assert u_sq[noisy].mean() > 3 * u_sq[~noisy].mean()  # u absorbs the flipped labels
