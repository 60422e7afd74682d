"""quality/annotators.py: reading answers, crowd-kit consensus, annotator quality, bad input."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.datasets import load_digits

from robust_paddle.data.crowd import simulate_crowd
from robust_paddle.errors import DataError
from robust_paddle.quality.annotators import AGGREGATION_METHODS, Annotations, aggregate, read_annotations


@pytest.fixture(scope="module")
def crowd():
    y = load_digits().target[:600]
    return y, simulate_crowd(y, num_classes=10, num_annotators=20, answers_per_sample=3, seed=0)


def test_majority_vote_matches_a_hand_count():
    ann = Annotations.from_arrays([0, 0, 0, 1, 1, 1, 2, 2], [0, 1, 2, 0, 1, 2, 0, 1], [1, 1, 0, 2, 2, 2, 0, 1])
    out = aggregate(ann, num_samples=4, num_classes=3, method="majority_vote")
    assert out.labels.tolist() == [1, 2, 0, -1]  # sample 2 ties between 0 and 1 -> lowest; sample 3 unanswered
    assert np.allclose(out.posterior[0], [1 / 3, 2 / 3, 0]) and np.allclose(out.posterior[2], [0.5, 0.5, 0])
    assert np.allclose(out.agreement[:3], [2 / 3, 1.0, 0.5]) and np.isnan(out.agreement[3])
    assert out.num_answers.tolist() == [3, 3, 2, 0]
    assert np.allclose(out.annotator_confusion.sum(axis=2), 1.0)


@pytest.mark.parametrize("method", AGGREGATION_METHODS)
def test_every_method_beats_or_matches_single_answers(crowd, method):
    y, c = crowd
    out = aggregate(Annotations.from_arrays(c.sample, c.annotator, c.label), num_samples=y.size, num_classes=10,
                    method=method, seed=0)
    single = np.mean(c.label == y[c.sample])
    assert np.mean(out.labels == y) > single
    assert out.posterior.shape == (y.size, 10) and np.allclose(out.posterior.sum(axis=1), 1.0)
    assert out.annotator_confusion.shape == (20, 10, 10)


def test_dawid_skene_beats_majority_vote_and_ranks_annotators(crowd):
    y, c = crowd
    ann = Annotations.from_arrays(c.sample, c.annotator, c.label)
    mv = aggregate(ann, num_samples=y.size, num_classes=10, method="majority_vote")
    ds = aggregate(ann, num_samples=y.size, num_classes=10, method="dawid_skene")
    assert np.mean(ds.labels == y) >= np.mean(mv.labels == y) + 0.03
    assert spearmanr(ds.annotator_accuracy, c.accuracy).statistic > 0.8


def write(tmp_path, text, name="a.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_read_answers_with_names_and_indices(tmp_path):
    p = write(tmp_path, "sample,annotator,label\n0,ann,cat\n1,ann,1\n1,bob,dog\n1,bob,dog\n0,bob,0\n")
    ann = read_annotations(p, sample_index={"0": 0, "1": 1}, num_classes=2, class_names=["cat", "dog"])
    assert ann.sample.tolist() == [0, 1, 1, 0] and ann.label.tolist() == [0, 1, 1, 0]
    assert ann.annotator_names == ["ann", "bob"] and ann.lines.tolist() == [2, 3, 4, 6]


@pytest.mark.parametrize("text,message", [
    ("sample,annotator,label\n9,a,0\n0,a,1\n", r"a\.csv:2: sample '9' is not in the training set"),
    ("sample,annotator,label\n0,a,0\n1,a,7\n", r"a\.csv:3: label 7 is outside \[0, 2\)"),
    ("sample,annotator,label\n0,a,0\n0,a,1\n", r"a\.csv:3: annotator 'a' labels sample '0' 1, but 0 on line 2"),
    ("sample,annotator,label\n0,a,0\n1,a,1\n0,b,1\n", r"a\.csv:4: annotator 'b' gave only one answer"),
    ("item,annotator,label\n0,a,0\n", r"a\.csv:2: no sample / sample_id / path / id column"),
    ("sample,annotator,label\n0,a,bird\n", r"a\.csv:2: label 'bird' is neither a class index"),
])
def test_bad_answer_files_name_the_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_annotations(write(tmp_path, text), sample_index={"0": 0, "1": 1}, num_classes=2,
                         class_names=["cat", "dog"])


def test_a_good_model_as_one_more_annotator_raises_consensus_accuracy(crowd):
    from robust_paddle.quality.annotators import with_model_answers

    y, c = crowd
    rng = np.random.default_rng(0)
    probs = np.full((y.size, 10), 0.01)
    right = rng.uniform(size=y.size) < 0.9  # a model that is right 90 % of the time
    probs[np.arange(y.size), np.where(right, y, (y + 1) % 10)] = 0.91
    ann = Annotations.from_arrays(c.sample, c.annotator, c.label)
    plain = aggregate(ann, num_samples=y.size, num_classes=10, method="dawid_skene")
    both = aggregate(with_model_answers(ann, probs), num_samples=y.size, num_classes=10, method="dawid_skene")
    assert both.annotator_names[-1] == "model" and both.annotator_answers[-1] == y.size
    assert np.mean(both.labels == y) > np.mean(plain.labels == y) + 0.02
    assert abs(both.annotator_accuracy[-1] - 0.9) < 0.05
