"""Class-weight formulas, the weighted sampler's class frequencies and reproducibility, and their wiring
into the loss (loss.class_weighting) and the train loader (data.sampler)."""

import numpy as np
import pytest

from robust_paddle import config as C
from robust_paddle.data import build_data
from robust_paddle.data.imbalance import (
    WeightedEpochBatchSampler,
    build_weighted_sampler,
    class_counts,
    class_weights,
    sample_weights,
)
from robust_paddle.pipeline.build import make_context, make_loaders

LABELS = np.array([0] * 100 + [1] * 10 + [2] * 1)


def normalised(w):
    w = np.asarray(w, dtype=np.float64)
    return w * len(w) / w.sum()


def test_inverse_frequency():
    np.testing.assert_allclose(class_weights(LABELS, num_classes=3, method="inverse"),
                               normalised([1 / 100, 1 / 10, 1 / 1]))


def test_inverse_sqrt():
    np.testing.assert_allclose(class_weights(LABELS, num_classes=3, method="inverse_sqrt"),
                               normalised([1 / 10, 1 / np.sqrt(10), 1.0]))


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999])
def test_effective_number_of_samples(beta):
    # Cui et al. 2019: E_n = (1 - beta^n) / (1 - beta); weight = 1 / E_n, normalised to sum to C
    eff = (1 - beta ** np.array([100, 10, 1])) / (1 - beta)
    np.testing.assert_allclose(class_weights(LABELS, num_classes=3, method="effective", beta=beta),
                               normalised(1 / eff), rtol=1e-10)


def test_effective_limits():
    np.testing.assert_allclose(class_weights(LABELS, num_classes=3, method="effective", beta=0.0), [1, 1, 1])
    near = class_weights(LABELS, num_classes=3, method="effective", beta=1 - 1e-9)
    np.testing.assert_allclose(near, class_weights(LABELS, num_classes=3, method="inverse"), rtol=1e-5)


def test_absent_class_gets_zero_and_rest_sum_to_present_count():
    w = class_weights(np.array([0, 0, 2]), num_classes=4, method="inverse")
    np.testing.assert_allclose(w, [2 * 0.5 / 1.5, 0, 2 * 1 / 1.5, 0])
    assert w.sum() == pytest.approx(2.0)


def test_checks():
    with pytest.raises(ValueError, match="class weighting 'log' is not known; choose one of: inverse, inverse_sqrt, effective"):
        class_weights(LABELS, num_classes=3, method="log")
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, 1\), got 1.0"):
        class_weights(LABELS, num_classes=3, method="effective", beta=1.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        class_counts(np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="at least one label"):
        class_weights(np.array([], dtype=np.int64), num_classes=3)
    with pytest.raises(ValueError, match="label 3 has no weight"):
        sample_weights(np.array([3]), np.ones(3))


class Labels:
    def __init__(self, labels, num_classes):
        self.labels, self.num_classes = labels, num_classes

    def __len__(self):
        return len(self.labels)


def test_weighted_sampler_balances_classes():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    sampler = build_weighted_sampler(Labels(labels, 3), batch_size=50, seed=0)
    draws = np.concatenate([labels[sampler.order(epoch)] for epoch in range(5)])
    observed = np.bincount(draws, minlength=3)
    expected = np.full(3, draws.size / 3)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    assert len(sampler) == 20 and sum(len(b) for b in sampler) == 1000


def test_weighted_sampler_frequencies_follow_arbitrary_weights():
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    sampler = WeightedEpochBatchSampler(Labels(np.zeros(4, np.int64), 2), weights=weights, batch_size=4, seed=1,
                                        num_samples=20000)
    freq = np.bincount(sampler.order(0), minlength=4) / 20000
    np.testing.assert_allclose(freq, weights / weights.sum(), atol=0.015)


def test_weighted_sampler_order_is_a_function_of_seed_and_epoch():
    ds = Labels(np.array([0] * 50 + [1] * 5), 2)
    a = build_weighted_sampler(ds, batch_size=8, seed=3)
    b = build_weighted_sampler(ds, batch_size=8, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert not np.array_equal(a.order(2), a.order(3))
    assert not np.array_equal(a.order(2), build_weighted_sampler(ds, batch_size=8, seed=4).order(2))


def test_weighted_sampler_checks():
    ds = Labels(np.zeros(3, np.int64), 2)
    with pytest.raises(ValueError, match=r"need one weight per sample \(3\), got 2"):
        WeightedEpochBatchSampler(ds, weights=np.ones(2), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="finite, >= 0 and not all zero"):
        WeightedEpochBatchSampler(ds, weights=np.zeros(3), batch_size=2, seed=0)


# ------------------------------------------------------------------------------------------------ wiring
def digits_cfg(**values):
    base = {"data": {"name": "digits", "subset": 300}, "model": {"name": "mlp"}}
    return C.with_values(C.from_dict(base), values)


def test_loss_class_weighting_passes_weights_to_the_loss():
    cfg = digits_cfg(**{"loss.class_weighting": "effective", "loss.class_weighting_beta": 0.99})
    data = build_data(cfg)
    loss = make_context(cfg, data).build_loss()
    ref = class_weights(data.train.labels, num_classes=data.num_classes, method="effective", beta=0.99)
    np.testing.assert_allclose(loss.class_weight.numpy(), ref, rtol=1e-6)
    assert make_context(digits_cfg(), data).build_loss().class_weight is None


def test_loss_class_weighting_conflicts_with_explicit_weight():
    cfg = digits_cfg(**{"loss.class_weighting": "inverse", "loss.params": {"weight": [1.0] * 10}})
    with pytest.raises(ValueError, match="loss.params.weight and loss.class_weighting='inverse' both set"):
        make_context(cfg, build_data(cfg))


def test_data_sampler_weighted_is_used_by_the_train_loader():
    cfg = digits_cfg(**{"data.sampler": "weighted", "data.batch_size": 32})
    loaders = make_loaders(cfg, build_data(cfg))
    sampler = loaders["train"].batch_sampler
    assert isinstance(sampler, WeightedEpochBatchSampler)
    x, y, idx = next(iter(loaders["train"]))
    assert list(x.shape)[0] == 32
    assert not isinstance(make_loaders(digits_cfg(), build_data(digits_cfg()))["train"].batch_sampler,
                          WeightedEpochBatchSampler)
    with pytest.raises(ValueError, match="data.sampler: 'balanced' is not allowed; choose one of: random, weighted"):
        digits_cfg(**{"data.sampler": "balanced"})
