"""K-fold: split properties, out-of-fold probabilities, averaged logits and the run folder of train.kfold."""

import json

import numpy as np
import pytest

from robust_paddle import config as C
from robust_paddle.data import build_data
from robust_paddle.pipeline import run as run_mod
from robust_paddle.pipeline.kfold import fold_data, kfold_splits, train_kfold

FAST = {"data": {"name": "digits", "subset": 150, "batch_size": 32, "val_split": 0.1, "test_split": 0.2},
        "model": {"name": "mlp", "params": {"hidden": [16]}}, "optimizer": {"lr": 0.1},
        "train": {"epochs": 1, "progress": False, "visualdl": False, "report": False, "calibration": False,
                  "checkpoint_every": 0}}


def test_splits_partition_and_stratify():
    labels = np.repeat(np.arange(3), [30, 12, 6])
    splits = kfold_splits(labels, folds=3, seed=0)
    held = np.concatenate([h for _, h in splits])
    np.testing.assert_array_equal(np.sort(held), np.arange(48))
    for fit, h in splits:
        assert np.intersect1d(fit, h).size == 0 and fit.size + h.size == 48
        np.testing.assert_array_equal(np.bincount(labels[h], minlength=3), [10, 4, 2])
    assert [list(h) for _, h in kfold_splits(labels, folds=3, seed=0)] == [list(h) for _, h in splits]


def test_split_checks():
    with pytest.raises(ValueError, match=r"folds \(train.kfold\) must be an int >= 2, got 1"):
        kfold_splits(np.zeros(10, int), folds=1, seed=0)
    with pytest.raises(ValueError, match="folds=5 exceeds the 3 training samples"):
        kfold_splits(np.zeros(3, int), folds=5, seed=0)
    # a class smaller than K: plain (unstratified) folds still cover every sample once
    splits = kfold_splits(np.array([0] * 9 + [1]), folds=3, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([h for _, h in splits])), np.arange(10))


def test_fold_data_keeps_one_label_array_for_train_and_train_eval():
    cfg = C.from_dict(FAST)
    bundle = build_data(cfg)
    fd = fold_data(bundle, np.arange(10))
    assert len(fd.train) == 10 and fd.train_eval.labels is fd.train.labels
    assert fd.test is bundle.test


def test_out_of_fold_probabilities_and_ensemble_logits():
    cfg = C.from_dict(FAST)
    bundle = build_data(cfg)
    res = train_kfold(cfg, folds=2, data=bundle)
    n = len(bundle.train)
    assert res.oof_probs.shape == (n, bundle.num_classes)
    np.testing.assert_allclose(res.oof_probs.sum(1), 1.0, rtol=1e-6)
    assert np.all(np.abs(res.oof_logits).sum(1) > 0)  # every sample was predicted by its held-out model
    assert res.test_logits.shape == (len(bundle.test), bundle.num_classes)
    ens = res.summary["kfold"]["ensemble_test"]
    assert ens["acc"] == pytest.approx(float(np.mean(res.test_logits.argmax(1) == bundle.test.labels)))
    assert res.summary["final"]["test/acc"] == ens["acc"]
    # the label-issue report's cross-validated probabilities are these
    from robust_paddle.pipeline.kfold import cross_val_pred_probs

    np.testing.assert_allclose(cross_val_pred_probs(cfg, folds=2, data=bundle), res.oof_probs, rtol=1e-5, atol=1e-7)


def test_train_kfold_from_config_writes_fold_runs(tmp_path):
    cfg = C.from_dict({**FAST, "output_dir": str(tmp_path / "kf"), "train": {**FAST["train"], "kfold": 2}})
    summary = run_mod.train(cfg)
    out = tmp_path / "kf"
    for name in ("config.yaml", "oof_probs.npy", "test_logits.npy", "kfold.json", "metrics.json"):
        assert (out / name).exists(), name
    for k in range(2):
        assert (out / f"fold_{k}" / "metrics.json").exists()
        assert (out / f"fold_{k}" / "checkpoints" / "latest.pdckpt").exists()
    assert json.loads((out / "metrics.json").read_text())["final"]["test/acc"] == summary["final"]["test/acc"]
    assert summary["epochs_run"] == 1
    assert np.load(out / "oof_probs.npy").shape[1] == 10
    with pytest.raises(ValueError, match="--resume is not supported for k-fold runs"):
        run_mod.train(C.with_values(cfg, {"output_dir": str(tmp_path / "kf2")}), resume=str(out))
