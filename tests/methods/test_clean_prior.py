"""The annotators' prior clean probability (``data.annotations_prior``) in the selection methods: GMM divisions
(dividemix, gmm_correction) combine it with the loss mixture by Bayes' rule, small-loss selection (co_teaching,
co_teaching_plus, jocor) ranks by ``loss - log(prior)``."""

import dataclasses

import numpy as np
import paddle
import pytest
from method_helpers import log_softmax, toy_context

from robust_paddle.errors import DataError
from robust_paddle.methods.co_teaching import CoTeachingMethod, co_teaching_losses, jocor_losses
from robust_paddle.methods.correction import combine_clean_prior, loss_clean_probability
from robust_paddle.methods.gmm_correction import Division
from robust_paddle.methods.selection import prior_loss_offset


def tensor(a, dtype="float32"):
    return paddle.to_tensor(np.asarray(a), dtype=dtype)


def odds(p):
    return p / (1 - p)


def test_combine_clean_prior_is_bayes_rule_with_a_per_sample_prior():
    prob = np.array([0.9, 0.5, 0.2, 0.8, 0.6])  # mean 0.6: the mixture's clean share
    prior = np.array([0.99, 0.2, np.nan, 0.6, 0.9])
    out = combine_clean_prior(prob, prior)
    # odds(p') = odds(p) * odds(prior) / odds(0.6), by hand
    want0 = odds(0.9) * 99 / 1.5
    want1 = 1.0 * 0.25 / 1.5
    want4 = 1.5 * 9 / 1.5
    np.testing.assert_allclose(out, [want0 / (1 + want0), want1 / (1 + want1), 0.2, 0.8, want4 / (1 + want4)],
                               rtol=1e-9)
    assert out[4] > prob[4] and out[1] < prob[1]  # agreed-on samples move towards clean, disputed ones to noisy
    np.testing.assert_array_equal(combine_clean_prior(prob, None), prob)
    np.testing.assert_allclose(combine_clean_prior(prob, np.full(5, 0.6)), prob, rtol=1e-9)  # prior = share
    # a mixture that fell back to "all clean" carries no evidence: the prior is the division
    np.testing.assert_allclose(combine_clean_prior(np.ones(3), np.array([0.3, 0.9, np.nan])), [0.3, 0.9, 1.0],
                               rtol=1e-5)
    with pytest.raises(DataError, match=r"prob and prior must both be \[N\]"):
        combine_clean_prior(prob, prior[:3])
    with pytest.raises(DataError, match=r"must be in \[0, 1\]"):
        combine_clean_prior(prob, prior * 2)


def test_division_update_combines_the_mixture_with_the_prior():
    rng = np.random.default_rng(0)
    losses = np.r_[rng.normal(0.2, 0.05, 80), rng.normal(2.0, 0.3, 20)]
    prior = rng.uniform(0.05, 0.95, 100)
    plain, with_prior = Division(), Division()
    plain.update(losses, window=1, seed=3)
    with_prior.update(losses, window=1, seed=3, prior=prior)
    np.testing.assert_allclose(with_prior.prob, combine_clean_prior(plain.prob, prior), rtol=1e-5, atol=1e-7)
    ref, _, _ = loss_clean_probability((losses - losses.min()) / np.ptp(losses), seed=3, normalize=False)
    np.testing.assert_allclose(plain.prob, ref, rtol=1e-5, atol=1e-7)


def test_prior_loss_offset():
    off = prior_loss_offset(np.array([1.0, 0.5, np.nan, 0.0]))
    mean = (1.0 + 0.5 + 0.0) / 3  # an unanswered sample ranks like an average one
    np.testing.assert_allclose(off, [0.0, np.log(2), -np.log(mean), -np.log(1e-3)], rtol=1e-6)
    assert off.dtype == np.float32
    with pytest.raises(DataError, match=r"prior must be in \[0, 1\]"):
        prior_loss_offset(np.array([0.5, 1.5]))


def test_small_loss_selection_ranks_by_loss_minus_log_prior_and_trains_on_the_loss():
    l1 = tensor([0.1, 0.2, 0.3, 0.4])
    l2 = tensor([0.4, 0.3, 0.2, 0.1])
    off = tensor(prior_loss_offset(np.array([0.1, 0.9, 0.9, 0.9])))  # sample 0: the annotators disputed it
    _, _, p1, p2 = co_teaching_losses(l1, l2, keep_ratio=0.5)
    assert sorted(p1.numpy()) == [0, 1] and sorted(p2.numpy()) == [2, 3]
    loss1, loss2, p1, p2 = co_teaching_losses(l1, l2, keep_ratio=0.5, offset=off)
    # 0.1 - log 0.1 = 2.40 now ranks last for network 1; network 2 is unchanged
    assert sorted(p1.numpy()) == [1, 2] and sorted(p2.numpy()) == [2, 3]
    assert float(loss1) == pytest.approx((0.3 + 0.4) / 2) and float(loss2) == pytest.approx((0.3 + 0.2) / 2)
    z1 = tensor([[3.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 1.0]])
    y = [0, 1, 0, 1]
    ce = [-log_softmax(np.asarray(z1.numpy(), np.float64))[i, y[i]] for i in range(4)]
    lt = tensor(ce)
    _, pick, _ = jocor_losses(z1, z1, lt, lt, co_lambda=0.5, keep_ratio=0.5)
    assert sorted(pick.numpy()) == [0, 1]  # the smallest CE
    loss, pick, _ = jocor_losses(z1, z1, lt, lt, co_lambda=0.5, keep_ratio=0.5,
                                 offset=tensor(prior_loss_offset(np.array([0.01, 1.0, 1.0, 1.0]))))
    assert sorted(pick.numpy()) == [1, 2]
    assert float(loss) == pytest.approx((0.5 * 2 * ce[1] + 0.5 * 2 * ce[2]) / 2, rel=1e-5)  # KL = 0: same nets


def test_co_teaching_step_uses_the_context_prior():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    x = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
    batch = (tensor(x), tensor(labels, "int64"), tensor(np.arange(10), "int64"))
    for prior in (None, np.r_[np.full(5, 0.02), np.full(5, 0.98)]):
        ctx = toy_context(labels, dim=5, classes=3, seed=3, overrides=["train.epochs=30"])
        ctx = dataclasses.replace(ctx, clean_prior=prior)
        paddle.seed(3)  # initial weights independent of the tests that ran before (the prior must outweigh them)
        method = CoTeachingMethod(ctx, forget_rate=0.5, num_gradual=1)
        _, terms = method.train_step(batch, epoch=1, step=0)
        net1 = method.networks["net1"]
        z = x @ net1.fc.weight.numpy().astype(np.float64) + net1.fc.bias.numpy()
        ce1 = -log_softmax(z)[np.arange(10), labels]
        keep = np.argsort(ce1 - np.log(np.clip(prior, 1e-3, 1)) if prior is not None else ce1, kind="stable")[:5]
        net2 = method.networks["net2"]
        z2 = x @ net2.fc.weight.numpy().astype(np.float64) + net2.fc.bias.numpy()
        ce2 = -log_softmax(z2)[np.arange(10), labels]
        assert terms["loss2"].item() == pytest.approx(ce2[keep].mean(), rel=1e-5)  # net 2 learns net 1's picks
        if prior is not None:  # ln(0.98 / 0.02) = 3.9 outweighs the toy networks' loss differences
            assert sorted(keep) == [5, 6, 7, 8, 9]
