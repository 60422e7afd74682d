"""ECE and reliability bins vs a hand computation, plots, the calibration hook and the VisualDL per-class
recall scalars / confusion image."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from robust_paddle import config as C
from robust_paddle.ops import softmax
from robust_paddle.quality.calibration import (
    CalibrationHook,
    confusion_image,
    expected_calibration_error,
    plot_reliability,
    reliability_curve,
)
from robust_paddle.quality.visualdl import VisualDLHook


def probs_with_conf(conf, c=4):
    """Rows whose top class 0 has probability ``conf`` and the rest share the remainder."""
    conf = np.asarray(conf, dtype=np.float64)
    p = np.repeat(((1 - conf) / (c - 1))[:, None], c, axis=1)
    p[:, 0] = conf
    return p


def test_ece_by_hand():
    # 5 bins of width 0.2. Confidences 0.3, 0.35 (bin 2), 0.9, 0.95, 0.99 (bin 5)
    conf = [0.3, 0.35, 0.9, 0.95, 0.99]
    labels = np.array([0, 1, 0, 0, 1])  # correct: yes, no, yes, yes, no
    p = probs_with_conf(conf)
    # bin 2: acc 1/2, conf 0.325 -> |0.5 - 0.325| * 2/5 ; bin 5: acc 2/3, conf 0.9467 -> |..| * 3/5
    ref = abs(0.5 - 0.325) * 2 / 5 + abs(2 / 3 - (0.9 + 0.95 + 0.99) / 3) * 3 / 5
    assert expected_calibration_error(p, labels, n_bins=5) == pytest.approx(ref)
    curve = reliability_curve(p, labels, n_bins=5)
    np.testing.assert_array_equal(curve["counts"], [0, 2, 0, 0, 3])
    np.testing.assert_allclose(curve["accuracy"][[1, 4]], [0.5, 2 / 3])
    np.testing.assert_allclose(curve["confidence"][[1, 4]], [0.325, (0.9 + 0.95 + 0.99) / 3])
    assert np.isnan(curve["accuracy"][0]) and np.isnan(curve["confidence"][2])
    np.testing.assert_allclose(curve["edges"], [0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_bins_are_right_closed():
    # a confidence on an edge belongs to the bin that it closes: 0.4 -> (0.2, 0.4], 0.6 -> (0.4, 0.6]
    curve = reliability_curve(probs_with_conf([0.4, 0.6, 1.0], c=4), np.array([0, 0, 0]), n_bins=5)
    np.testing.assert_array_equal(curve["counts"], [0, 1, 1, 0, 1])


def test_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 20000)
    correct = rng.random(20000) < conf
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(probs_with_conf(conf), labels) < 0.02
    assert expected_calibration_error(probs_with_conf(np.full(1000, 0.99)), np.ones(1000, int)) == pytest.approx(0.99)


def test_checks():
    with pytest.raises(ValueError, match="apply softmax to logits first"):
        reliability_curve(np.array([[2.0, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match=r"labels has 2 entries but probs has 1 rows"):
        reliability_curve(np.array([[0.5, 0.5]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="n_bins must be an int >= 1, got 0"):
        reliability_curve(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)
    with pytest.raises(ValueError, match="calibration split must be 'test' or 'val'"):
        CalibrationHook(split="train")


def test_plots(tmp_path):
    p = softmax(np.random.default_rng(1).normal(size=(50, 3)) * 3)
    path = plot_reliability(reliability_curve(p, np.zeros(50, int)), str(tmp_path / "r.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    img = confusion_image(np.array([[5, 1], [2, 7]]), class_names=["a", "b"])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    with pytest.raises(ValueError, match="square"):
        confusion_image(np.zeros((2, 3)))


class FakeLoader(list):
    def __init__(self, labels):
        super().__init__()
        self.dataset = SimpleNamespace(labels=np.asarray(labels))


def fake_trainer(tmp_path, logits, labels, *, splits=("test",)):
    calls = []

    class Ctx:
        def __enter__(self):
            calls.append("enter")

        def __exit__(self, *a):
            calls.append("exit")

    history = [{"epoch": 1}]
    loaders = {s: FakeLoader(labels) for s in splits}
    return SimpleNamespace(is_main=True, loaders=loaders, output_dir=str(tmp_path), history=history, calls=calls,
                           evaluation_weights=Ctx, predict_logits=lambda loader: (logits, np.arange(len(labels))))


def test_calibration_hook_writes_diagram_json_and_ece(tmp_path):
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(40, 3)) * 2, rng.integers(0, 3, 40)
    trainer = fake_trainer(tmp_path, logits, labels, splits=("val",))  # no test split: falls back to val
    CalibrationHook(n_bins=10).after_train(trainer)
    assert trainer.calls == ["enter", "exit"]  # predictions ran with the evaluation (EMA) weights
    ref = expected_calibration_error(softmax(logits), labels, n_bins=10)
    assert trainer.history[-1]["val/ece"] == pytest.approx(ref)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["split"] == "val" and saved["ece"] == pytest.approx(ref) and sum(saved["counts"]) == 40
    assert (tmp_path / "reliability.png").exists()


class RecordingWriter:
    def __init__(self):
        self.scalars, self.images = {}, {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = value

    def add_histogram(self, **kw):
        pass

    def add_image(self, tag, img, step):
        self.images[tag] = img

    def add_hparams(self, **kw):
        pass

    def flush(self):
        pass

    def close(self):
        pass


def test_visualdl_logs_per_class_recall_and_confusion_image():
    hook = VisualDLHook()
    hook.writer = writer = RecordingWriter()
    details = {"test": {"per_class_recall": [1.0, 0.5], "confusion": [[3, 0], [1, 1]]}}
    trainer = SimpleNamespace(epoch=0, epoch_scalars={"epoch": 1, "test/acc": 0.8}, epoch_histograms={},
                              eval_details=details, meta={"class_names": ["cat", "dog"]},
                              cfg=C.from_dict({"train": {"epochs": 3, "eval_every": 2}}), history=[],
                              last_eval_scalars=lambda: {"test/acc": 0.8}, is_eval_epoch=lambda: False)
    hook.after_epoch(trainer)
    assert writer.scalars["test/recall/cat"] == 1.0 and writer.scalars["test/recall/dog"] == 0.5
    writer.scalars.clear()
    trainer.epoch_scalars = {"epoch": 2, "train/loss": 0.3}  # no evaluation this epoch: no recall scalars
    hook.after_epoch(trainer)
    assert not any("recall" in k for k in writer.scalars)
    hook.after_train(trainer)
    assert writer.images["test/confusion"].dtype == np.uint8
