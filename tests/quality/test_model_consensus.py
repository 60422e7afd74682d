"""quality/model_consensus.py: the model's probabilities as each sample's prior in a Dawid-Skene style EM."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from robust_paddle.data.crowd import simulate_crowd
from robust_paddle.errors import DataError
from robust_paddle.quality.annotators import Annotations, aggregate, with_model_answers
from robust_paddle.quality.model_consensus import aggregate_with_model


@pytest.fixture(scope="module")
def crowd():
    y = load_digits().target.astype(np.int64)
    c = simulate_crowd(y, num_classes=10, num_annotators=20, answers_per_sample=3, seed=1)
    rng = np.random.default_rng(0)
    # a model right 88 % of the time whose confidence says something: higher when right, flat-ish logits
    right = rng.uniform(size=y.size) < 0.88
    guess = np.where(right, y, (y + rng.integers(1, 10, y.size)) % 10)
    logits = rng.normal(0, 0.5, (y.size, 10))
    logits[np.arange(y.size), guess] += np.where(right, rng.uniform(1.0, 3.0, y.size), rng.uniform(0.3, 1.5, y.size))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, Annotations.from_arrays(c.sample, c.annotator, c.label), probs


def test_one_em_round_matches_numpy():
    # 3 samples, 2 annotators, 2 classes, gamma 1: one M step from the majority-vote start, then one E step
    ann = Annotations.from_arrays([0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1], [0, 0, 1, 0, 1, 1])
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    cons = aggregate_with_model(ann, probs, gamma=1.0, smoothing=1.0, max_iter=1)
    start = np.full((3, 2), 1e-3)
    np.add.at(start, (ann.sample, ann.label), 1.0)
    start /= start.sum(1, keepdims=True)
    acc = np.array([(start[0, 0] + start[1, 1] + start[2, 1] + 1) / (3 + 2),
                    (start[0, 0] + start[1, 0] + start[2, 1] + 1) / (3 + 2)])
    lik = np.ones((3, 2))
    for s, a, lab in zip(ann.sample, ann.annotator, ann.label):
        lik[s] *= np.where(np.arange(2) == lab, acc[a], 1 - acc[a])
    want = probs * lik
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(cons.posterior, want, rtol=1e-9)
    assert cons.method == "one_coin+model_prior" and cons.info["gamma"] == 1.0
    np.testing.assert_array_equal(cons.labels, want.argmax(1))


def test_the_model_prior_beats_the_model_as_an_annotator_and_majority_vote(crowd):
    y, ann, probs = crowd
    mv = aggregate(ann, num_samples=y.size, num_classes=10, method="majority_vote")
    as_answer = aggregate(with_model_answers(ann, probs), num_samples=y.size, num_classes=10, method="dawid_skene")
    prior = aggregate_with_model(ann, probs)
    acc = {k: float(np.mean(c.labels == y)) for k, c in (("mv", mv), ("answer", as_answer), ("prior", prior))}
    assert acc["prior"] > acc["answer"] + 0.005 and acc["prior"] > acc["mv"] + 0.1, acc
    assert prior.info["gamma"] in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
    full = aggregate_with_model(ann, probs, confusion="full")
    assert float(np.mean(full.labels == y)) > acc["mv"] + 0.1


def test_gamma_is_chosen_by_the_answers_likelihood(crowd):
    y, ann, probs = crowd
    chosen = aggregate_with_model(ann, probs)
    for g in (0.5, 4.0):  # the grid's ends fit the answers worse than the chosen value
        assert aggregate_with_model(ann, probs, gamma=g).info["log_likelihood"] <= chosen.info["log_likelihood"]


@pytest.mark.parametrize("kwargs,message", [
    ({"pred_probs": np.full((2, 3), 1 / 3)}, r"pred_probs must be \[N, C\] covering every answered sample"),
    ({"pred_probs": np.full((4, 3), 2.0)}, r"pred_probs must be probabilities in \[0, 1\]"),
    ({"pred_probs": np.full((4, 2), 0.5)}, r"labels must be in \[0, 2\)"),
    ({"confusion": "two_coin"}, "confusion 'two_coin' is not known; choose one of one_coin, full"),
    ({"gamma": []}, "gamma must be > 0"),
    ({"smoothing": 0}, "smoothing must be > 0"),
])
def test_bad_arguments_are_one_line(kwargs, message):
    ann = Annotations.from_arrays([0, 1, 2, 3], [0, 0, 1, 1], [0, 1, 2, 0])
    args = {"pred_probs": np.full((4, 3), 1 / 3), **kwargs}
    with pytest.raises(DataError, match=message):
        aggregate_with_model(ann, args.pop("pred_probs"), **args)
