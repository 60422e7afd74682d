"""Degenerate estimator and mixture cases (issue 15): all-equal losses, mixtures that do not separate, and
classes without training samples in forward correction. Each falls back with a warning, never aborts."""

import json
import logging
import os
import re
from types import SimpleNamespace

import numpy as np
import paddle
import pytest
from method_helpers import toy_context

from robust_paddle import config as C
from robust_paddle.methods import correction, gmm_correction
from robust_paddle.methods.correction import gmm_noise_rate, loss_clean_probability, mixture_failure
from robust_paddle.methods.forward_correction import (
    ForwardCorrectionMethod,
    anchor_transition,
    identity_rows_for_absent_classes,
)
from robust_paddle.methods.gmm_correction import Division
from robust_paddle.pipeline import run as run_mod

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_all_equal_losses_make_every_sample_clean_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="robust_paddle.methods.correction"):
        prob, gmm, reason = loss_clean_probability(np.zeros(50), seed=0, where="unit")
    np.testing.assert_array_equal(prob, np.ones(50))
    assert gmm is None and reason == "all 50 losses equal 0.0"
    assert "unit: all 50 losses equal 0.0; every sample is treated as clean" in caplog.text
    assert gmm_noise_rate(np.full(10, 2.5)) == 0.0


@pytest.mark.parametrize("weights, means, match", [
    ([0.9995, 0.0005], [0.1, 0.9], r"one component is empty \(weights \[0.9995, 0.0005\] over 1000 samples\)"),
    ([0.5, 0.5], [0.3, 0.3004], r"the components' means are equal \(gap 0.0004 <= 0.001"),
    ([0.5, 0.5], [np.nan, 0.3], "not finite"),
])
def test_mixture_failure_names_why_a_mixture_does_not_separate(weights, means, match):
    fake = SimpleNamespace(weights_=np.array(weights), means_=np.array(means).reshape(2, 1))
    assert re.search(match, mixture_failure(fake, 1000) or "")


def test_a_mixture_that_does_not_separate_falls_back_to_all_clean(monkeypatch, caplog):
    losses = np.random.default_rng(0).random(200)
    fake = SimpleNamespace(weights_=np.array([1.0, 0.0]), means_=np.array([[0.4], [0.5]]))
    monkeypatch.setattr(correction, "fit_loss_gmm", lambda *a, **k: (np.linspace(0, 1, 200), fake))
    with caplog.at_level(logging.WARNING, logger="robust_paddle.methods.correction"):
        prob, gmm, reason = loss_clean_probability(losses, seed=0, where="dividemix net1, epoch 3")
    np.testing.assert_array_equal(prob, np.ones(200))
    assert gmm is None and reason.startswith("one component is empty")
    assert "dividemix net1, epoch 3: the loss mixture does not separate two populations" in caplog.text


def test_a_separating_mixture_is_kept():
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.normal(0.1, 0.02, 300), rng.normal(2.0, 0.2, 100)])
    prob, gmm, reason = loss_clean_probability(losses, seed=0)
    assert reason is None and gmm is not None
    assert prob[:300].mean() > 0.95 and prob[300:].mean() < 0.05


def test_division_of_all_zero_losses_keeps_every_sample():
    d = Division()
    d.update(np.zeros(40, dtype=np.float32), window=2, seed=0)
    np.testing.assert_array_equal(d.prob, np.ones(40, dtype=np.float32))
    d.update(np.zeros(40, dtype=np.float32), window=2, seed=1)  # the averaged history is flat too
    np.testing.assert_array_equal(d.prob, np.ones(40, dtype=np.float32))


def test_gmm_run_on_perfectly_fitted_data_finishes_with_a_report(tmp_path, monkeypatch, caplog):
    """Every per-sample loss exactly 0 at the end of warm-up: the run used to abort (exit 2) there."""
    real = gmm_correction.train_set_losses
    monkeypatch.setattr(gmm_correction, "train_set_losses",
                        lambda trainer: np.zeros_like(real(trainer)))
    cfg = C.load(os.path.join(CONFIGS, "gmm_correction", "digits.yaml"),
                 ["data.subset=200", "train.progress=false", "train.visualdl=false", "model.name=mlp",
                  "data.batch_size=50", "train.epochs=2", "method.params.warmup_epochs=1", "data.noise.kind=none",
                  f"output_dir={tmp_path / 'r'}"])
    with caplog.at_level(logging.WARNING), paddle.utils.unique_name.guard():
        summary = run_mod.train(cfg)
    assert summary["epochs_run"] == 2
    assert "gmm_correction net, epoch 1: all 200 losses equal 0.0; every sample is treated as clean" in caplog.text
    assert summary["history"][-1]["select/labeled_ratio"] == 1.0
    assert (tmp_path / "r" / "label_issues.csv").is_file()


# ------------------------------------------------------------------------------ forward correction
def absent_class_probs():
    """3 classes, class 2 never given: a well-fitted network's softmax on 60 samples of classes 0 and 1."""
    labels = np.repeat([0, 1], 30)
    probs = np.full((60, 3), 0.01)
    probs[np.arange(60), labels] = 0.98
    return labels, probs / probs.sum(1, keepdims=True)


def test_anchor_row_of_an_absent_class_points_at_another_class_and_is_replaced():
    labels, probs = absent_class_probs()
    t = anchor_transition(probs)
    assert t[2].argmax() != 2 and t[2].max() > 0.9  # the fault: another class's mass would move to class 2
    fixed, absent = identity_rows_for_absent_classes(t, labels)
    assert absent.tolist() == [2]
    np.testing.assert_array_equal(fixed[2], [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(fixed[:2], t[:2])


@pytest.mark.parametrize("estimator", ["anchor", "confident_joint"])
def test_forward_correction_states_identity_rows_in_transition_json(tmp_path, estimator):
    labels, probs = absent_class_probs()
    method = ForwardCorrectionMethod(toy_context(labels.tolist(), dim=4, classes=3, seed=0), transition="auto",
                                     warmup_epochs=1, estimator=estimator, reinit=False)
    trainer = SimpleNamespace(epoch=1, output_dir=str(tmp_path), is_main=True,
                              loaders={"train_eval": SimpleNamespace(dataset=SimpleNamespace(labels=labels))},
                              predict_logits=lambda loader: (np.log(probs), np.arange(60)),
                              train_set_logits=lambda: np.log(probs),
                              save_artifact=lambda name, data: (tmp_path / name).write_text(json.dumps(data)))
    method.before_epoch(trainer)
    np.testing.assert_array_equal(method.t[2], [0.0, 0.0, 1.0])
    saved = json.loads((tmp_path / "transition.json").read_text())
    assert saved["identity_rows"] == [2] and saved["transition"][2] == [0.0, 0.0, 1.0]
    restored = ForwardCorrectionMethod(toy_context(labels.tolist(), dim=4, classes=3, seed=0), warmup_epochs=1)
    restored.set_state_dict(method.state_dict())
    assert restored.estimate["identity_rows"] == [2]
