"""StandardMethod with the annotators' consensus: soft targets and agreement weights change the loss exactly."""

import dataclasses

import numpy as np
import paddle
import pytest

from robust_paddle.methods.standard import StandardMethod
from tests.method_helpers import log_softmax, toy_context


def step_loss(ctx, x, y, idx):
    paddle.seed(0)
    m = StandardMethod(ctx)
    net = m.networks["net"]
    loss, _ = m.train_step((paddle.to_tensor(x), paddle.to_tensor(y), paddle.to_tensor(idx)), epoch=0, step=0)
    z = net(paddle.to_tensor(x)).numpy()
    return float(loss), z


def test_soft_targets_replace_the_labels():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 4)).astype("float32"), np.array([0, 1, 2, 0, 1, 2])
    idx = np.array([5, 3, 1, 0, 2, 4])
    soft = rng.dirichlet(np.ones(3), size=6)
    ctx = dataclasses.replace(toy_context(y, dim=4, classes=3, seed=0), soft_targets=soft)
    loss, z = step_loss(ctx, x, y, idx)
    assert loss == pytest.approx(float(np.mean(-(soft[idx] * log_softmax(z)).sum(1))), rel=1e-5)


def test_agreement_weights_multiply_the_per_sample_losses():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(5, 4)).astype("float32"), np.array([0, 1, 2, 0, 1])
    idx = np.arange(5)
    w = np.array([1.0, 0.5, 0.0, 1.0, 0.25])
    plain = toy_context(y, dim=4, classes=3, seed=0)
    weighted = dataclasses.replace(plain, sample_weights=w)
    loss, z = step_loss(weighted, x, y, idx)
    per = -log_softmax(z)[np.arange(5), y]
    assert loss == pytest.approx(float(np.mean(w * per)), rel=1e-5)  # reduce_loss: mean of the weighted losses
    unweighted, _ = step_loss(plain, x, y, idx)
    assert unweighted == pytest.approx(float(per.mean()), rel=1e-5) and unweighted != pytest.approx(loss)
