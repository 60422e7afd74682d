"""methods/elr.py: the ELR loss and target updates against NumPy, limits, state and parameter checks."""

import numpy as np
import paddle
import pytest

from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.methods.elr import ELRMethod, elr_targets_update
from tests.method_helpers import build_method, log_softmax, softmax, toy_context


def batch(rng, n=6, dim=4, classes=3):
    x = rng.normal(size=(n, dim)).astype("float32")
    y = rng.integers(0, classes, size=n)
    return x, y


def run_step(method, x, y, idx):
    return method.train_step((paddle.to_tensor(x), paddle.to_tensor(y), paddle.to_tensor(idx)), epoch=0, step=0)


def test_target_update_matches_the_formula():
    t = np.array([[0.2, 0.8], [0.0, 0.0]], dtype=np.float32)
    p = np.array([[1.0, 0.0], [0.3, 0.7]], dtype=np.float32)
    got = elr_targets_update(t, p, beta=0.7)
    clipped = np.clip(p, 1e-4, 1 - 1e-4)
    clipped /= clipped.sum(1, keepdims=True)
    assert np.allclose(got, 0.7 * t + 0.3 * clipped)


def test_loss_is_ce_plus_lambda_log_one_minus_inner_product():
    rng = np.random.default_rng(0)
    x, y = batch(rng)
    idx = np.array([4, 0, 7, 2, 9, 1])
    paddle.seed(0)
    m = ELRMethod(toy_context(np.zeros(10, dtype=np.int64), dim=4, classes=3, seed=0), beta=0.6, lam=2.0)
    m.targets[idx] = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    before = m.targets[idx].copy()
    z = m.networks["net"](paddle.to_tensor(x)).numpy()
    loss, terms = run_step(m, x, y, idx)
    p = softmax(z)
    t = elr_targets_update(before, p, beta=0.6)
    ce = -log_softmax(z)[np.arange(6), y].mean()
    ref = ce + 2.0 * np.mean(np.log(1 - (t * p).sum(1)))
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    assert float(terms["task"]) == pytest.approx(ce, rel=1e-5)
    assert np.allclose(m.targets[idx], t, atol=1e-6)
    untouched = np.setdiff1d(np.arange(10), idx)
    assert not m.targets[untouched].any()


def test_lambda_zero_is_plain_ce():
    rng = np.random.default_rng(1)
    x, y = batch(rng)
    paddle.seed(0)
    m = ELRMethod(toy_context(np.zeros(6, dtype=np.int64), dim=4, classes=3, seed=0), lam=0.0)
    z = m.networks["net"](paddle.to_tensor(x)).numpy()
    loss, _ = run_step(m, x, y, np.arange(6))
    assert float(loss) == pytest.approx(-log_softmax(z)[np.arange(6), y].mean(), rel=1e-5)


def test_clean_probability_state_and_checks():
    labels = np.array([0, 2, 1])
    m = ELRMethod(toy_context(labels, dim=4, classes=3, seed=0))
    assert m.clean_probability() is None
    m.targets[:] = [[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]
    assert np.allclose(m.clean_probability(), [0.9, 0.8, 0.3])
    other = ELRMethod(toy_context(labels, dim=4, classes=3, seed=0))
    other.set_state_dict(m.state_dict())
    assert np.array_equal(other.targets, m.targets)
    with pytest.raises(CheckpointError, match=r"ELR targets of shape \[2, 3\], this run needs \[3, 3\]"):
        other.set_state_dict({"targets": np.zeros((2, 3))})
    with pytest.raises(ConfigError, match=r"^method.params.beta: 1.5 is out of range; must be <= 0.999999 and >= 0.0$"):
        build_method(ELRMethod, toy_context(labels, dim=4, classes=3, seed=0), beta=1.5)
    with pytest.raises(ConfigError, match=r"^method.params.lam: expected float, got 'big' \(str\)$"):
        build_method(ELRMethod, toy_context(labels, dim=4, classes=3, seed=0), lam="big")


def test_digits_run_resumes_exactly_and_its_clean_probability_finds_the_noise(tmp_path):
    from tests.method_helpers import train_and_resume

    ma, mb = train_and_resume("elr/digits.yaml", tmp_path, ["data.subset=300", "train.epochs=3"])
    a = ma["targets"]
    b = mb["targets"]
    np.testing.assert_allclose(a, b, atol=1e-6)
    table = np.load(tmp_path / "full" / "train_labels.npy")
    clean_prob = a[np.arange(len(table)), table["label"]]
    noisy = table["label"] != table["clean_label"]
    assert clean_prob[~noisy].mean() > 1.5 * clean_prob[noisy].mean()  # 3 short epochs: early learning only
