"""Trainer behaviour: hooks, checkpoints, early stopping, non-finite loss, AMP fallback, resume state."""

import json
import logging
import os

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint, save_checkpoint
from robust_paddle.engine.contract import Hook as EngineHook
from robust_paddle.engine.hooks import EarlyStoppingHook, is_better
from robust_paddle.engine.metrics import classification_metrics
from robust_paddle.engine.trainer import NonFiniteLossError
from robust_paddle.methods.standard import StandardMethod
from robust_paddle.ops import derive_seed
from robust_paddle.pipeline import run as run_mod
from robust_paddle.pipeline.build import build_run
from robust_paddle.registry import METHODS

FAST = ["data.subset=300", "train.progress=false", "train.visualdl=false", "train.report=false",
        "model.name=mlp", "data.batch_size=50"]


def cfg_for(tmp_path, *extra):
    return C.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml"),
                  FAST + [f"output_dir={tmp_path / 'run'}", *extra])


if "nan_after_first_epoch" not in METHODS:
    @METHODS.register("nan_after_first_epoch")
    class NanAfterFirstEpoch(StandardMethod):
        """Test method: a finite loss in epoch 1, NaN from epoch 2 on."""

        def train_step(self, batch, *, epoch, step):
            loss, terms = super().train_step(batch, epoch=epoch, step=step)
            return (loss * float("nan") if epoch >= 1 else loss), terms


def test_metrics_reference():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), num_classes=3)
    assert m["acc"] == 0.5
    assert m["per_class_recall"] == [0.5, 1.0, 0.0]
    assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # F1: class 0 = 2/3, class 1 = 1/2
    with pytest.raises(ValueError, match="differ in shape"):
        classification_metrics(np.array([0]), np.array([0, 1]), num_classes=2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn(seed):
    from sklearn.metrics import confusion_matrix, f1_score, recall_score

    rng = np.random.default_rng(seed)
    c = 7
    labels = rng.integers(0, c - 1, size=300)  # class 6 never a label: recall 0, F1 only from its predictions
    preds = np.where(rng.random(300) < 0.6, labels, rng.integers(0, c, size=300))
    m = classification_metrics(labels, preds, num_classes=c)
    classes = list(range(c))
    assert m["confusion"] == confusion_matrix(labels, preds, labels=classes).tolist()
    np.testing.assert_allclose(m["per_class_recall"],
                               recall_score(labels, preds, labels=classes, average=None, zero_division=0))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, preds, labels=classes, average="macro", zero_division=0))
    assert m["acc"] == pytest.approx(float(np.mean(labels == preds)))


def test_metrics_refuse_out_of_range_values():
    with pytest.raises(ValueError, match=r"preds must lie in \[0, 3\), got values in \[0, 3\]"):
        classification_metrics(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="empty set"):
        classification_metrics(np.array([]), np.array([]), num_classes=3)


def test_is_better_and_derive_seed():
    assert is_better(1.0, None, mode="max") and is_better(0.5, 0.4, mode="max")
    assert not is_better(0.5, 0.49, mode="max", min_delta=0.05)
    assert is_better(0.1, 0.2, mode="min") and not is_better(0.3, 0.2, mode="min")
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(1, 3)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStoppingHook(patience=0)


def test_train_writes_outputs_and_checkpoints(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=3", "train.checkpoint_every=2")
    summary = run_mod.train(cfg)
    out = tmp_path / "run"
    assert sorted(os.listdir(out / "checkpoints")) == ["best.pdckpt", "epoch_002.pdckpt", "latest.pdckpt"]
    assert (out / "config.yaml").exists() and (out / "noise.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3 and [r["epoch"] for r in metrics["history"]] == [1, 2, 3]
    for key in ("val/acc", "test/acc", "test/macro_f1", "train/loss", "train/lr", "val/acc_clean"):
        assert key in metrics["final"], key
    assert len(metrics["eval"]["test"]["per_class_recall"]) == 10
    n_test = np.array(metrics["eval"]["test"]["confusion"]).sum()
    assert n_test == np.array(summary["eval"]["test"]["confusion"]).sum() > 0
    state = load_checkpoint(str(out / "checkpoints" / "latest.pdckpt"))
    assert state["epoch"] == 3 and state["meta"]["num_classes"] == 10
    assert state["meta"]["input_shape"] == [1, 8, 8]
    best = load_checkpoint(str(out / "checkpoints" / "best.pdckpt"))
    assert best["epoch"] == summary["best"]["epoch"]


def test_refuses_to_overwrite_a_run(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=1")
    run_mod.train(cfg)
    before = (tmp_path / "run" / "checkpoints" / "latest.pdckpt").read_bytes()
    with pytest.raises(ValueError, match="already holds a run; resume it with --resume"):
        run_mod.train(cfg)
    assert (tmp_path / "run" / "checkpoints" / "latest.pdckpt").read_bytes() == before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=3", "method.name=nan_after_first_epoch")
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, batch 1; .*latest.pdckpt is kept"):
        run_mod.train(cfg)
    state = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "latest.pdckpt"))
    assert state["epoch"] == 1  # the epoch-1 checkpoint is intact


def test_early_stopping(tmp_path):
    # lr tiny -> no improvement after epoch 1 -> stop after patience epochs.
    cfg = cfg_for(tmp_path, "train.epochs=20", "train.early_stopping.patience=2",
                  "train.early_stopping.min_delta=0.5", "optimizer.lr=1e-6")
    summary = run_mod.train(cfg)
    assert summary["stopped_early_at"] == 3 and summary["epochs_run"] == 3


def test_amp_on_cpu_warns_and_trains_in_fp32(tmp_path, caplog):
    cfg = cfg_for(tmp_path, "train.epochs=1", "train.amp=O1")
    with caplog.at_level(logging.WARNING):
        summary = run_mod.train(cfg)
    assert "AMP only works on GPU" in caplog.text
    assert np.isfinite(summary["final"]["train/loss"])


def test_monitor_without_val_split_is_rejected(tmp_path):
    cfg = cfg_for(tmp_path, "data.val_split=0.0")
    with pytest.raises(ValueError, match=r"train.monitor is 'val/acc' but the run has no val split"):
        run_mod.train(cfg)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / "c.pdckpt")
    base = {"epoch": 1, "networks": {}, "config": {}, "meta": {}}
    save_checkpoint(base, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({**base, "epoch": 2}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pdckpt"]  # no temp file left behind


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(str(tmp_path / "nope.pdckpt"))
    paddle.save({"a": 1}, str(tmp_path / "x.pdckpt"))
    with pytest.raises(ValueError, match="is not a robust_paddle checkpoint"):
        load_checkpoint(str(tmp_path / "x.pdckpt"))
    (tmp_path / "junk.pdckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        load_checkpoint(str(tmp_path / "junk.pdckpt"))


def test_gradient_clipping_is_global_across_parameter_groups(tmp_path):
    # Clipping at a tiny norm: one plain-SGD step moves ALL parameters (decay and no-decay groups
    # together) by exactly lr * max_norm, because the raw gradient norm is far larger.
    cfg = cfg_for(tmp_path, "train.epochs=1", "train.grad_clip=0.001", "optimizer.momentum=0",
                  "optimizer.weight_decay=0", "scheduler.name=constant", "optimizer.lr=1.0", "data.subset=100",
                  "data.batch_size=100")
    run = build_run(cfg, output_dir=str(tmp_path / "x"), hooks=[])
    before = [p.numpy().copy() for p in run.method.parameters()]
    run.trainer._train_epoch()
    delta = np.sqrt(sum(((p.numpy() - b) ** 2).sum() for p, b in zip(run.method.parameters(), before)))
    assert run.trainer.global_step == 1
    assert delta == pytest.approx(0.001, rel=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("level", ["O1", "O2"])
def test_amp_on_gpu_trains_with_grad_scaler(tmp_path, level):
    # Needs a CUDA device (skipped elsewhere by conftest): AMP really runs, the scaler is active,
    # the loss stays finite and the checkpoint holds the scaler state for an exact resume.
    cfg = cfg_for(tmp_path, "train.epochs=2", f"train.amp={level}", "train.device=gpu", "model.name=small_cnn")
    summary = run_mod.train(cfg)
    assert np.isfinite(summary["final"]["train/loss"])
    assert summary["final"]["test/acc"] > 0.3
    state = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "latest.pdckpt"))
    assert state["scaler"] and state["scaler"]["scale"] > 0


def _weights(run):
    return {f"{n}.{k}": v.numpy().copy() for n, net in run.method.networks.items()
            for k, v in net.state_dict().items()}


def test_fit_epochs_interleaved_equals_each_run_fitted_alone(tmp_path):
    """Two runs driven epoch by epoch in turns (Trainer.fit_epochs, as benchmarks/method_cost.py --interleave does)
    end with the same weights and history as each fitted alone: every epoch reseeds, so nothing leaks between them."""
    from robust_paddle.pipeline.hooks import build_hooks

    def build(name, *extra):
        cfg = cfg_for(tmp_path / name, "train.epochs=3", *extra)
        with paddle.utils.unique_name.guard():
            return build_run(cfg, output_dir=cfg.output_dir, hooks=build_hooks(cfg.train))

    alone = [build("a1"), build("b1", "method.name=co_teaching")]
    for run in alone:
        run.trainer.fit()
    pair = [build("a2"), build("b2", "method.name=co_teaching")]
    gens = [run.trainer.fit_epochs() for run in pair]
    seen = [[next(g) for g in gens] for _ in range(3)]
    assert seen == [[0, 0], [1, 1], [2, 2]]
    assert [next(g, "done") for g in gens] == ["done", "done"]  # then after_train, and the generators end
    for solo, turn in zip(alone, pair):
        a, b = _weights(solo), _weights(turn)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        scalars = [[{k: v for k, v in h.items() if not k.startswith("time/")} for h in r.trainer.history]
                   for r in (solo, turn)]
        assert scalars[0] == scalars[1] and "val/acc" in scalars[0][-1]
    assert os.path.isfile(os.path.join(pair[0].trainer.cfg.output_dir, "metrics.json"))


class EndSpy(EngineHook):
    """Records how training ended: ``"after_train"``, or the exception's class name given to ``on_exception``."""

    def __init__(self):
        self.seen = []

    def after_train(self, trainer):
        self.seen.append("after_train")

    def on_exception(self, trainer, exc):
        self.seen.append(type(exc).__name__)


def test_fit_epochs_closed_early_stops_without_after_train(tmp_path):
    from robust_paddle.engine.contract import Hook

    calls = []

    class Spy(Hook):
        def after_train(self, trainer):
            calls.append("after_train")

    cfg = cfg_for(tmp_path, "train.epochs=3")
    run = build_run(cfg, output_dir=cfg.output_dir, hooks=[Spy()])
    gen = run.trainer.fit_epochs()
    assert next(gen) == 0
    gen.close()
    assert calls == [] and len(run.trainer.history) == 1 and not run.trainer._fitting
    with pytest.raises(StopIteration):
        next(gen)


def test_fit_epochs_closed_early_releases_the_hooks_and_resumes_like_the_whole_run(tmp_path):
    """Closing fit_epochs after epoch 2: no after_train, every hook's on_exception gets the GeneratorExit (VisualDL's
    writer is closed, not left open with its thread), latest.pdckpt is complete and resuming it ends exactly as the
    uninterrupted run."""
    from robust_paddle.pipeline.hooks import build_hooks
    from tests.method_helpers import assert_same_final

    spy = EndSpy()
    seen = spy.seen

    extra = ["train.epochs=4", "train.checkpoint_every=1", "train.visualdl=true"]
    cfg = cfg_for(tmp_path / "closed", *extra)
    with paddle.utils.unique_name.guard():  # trained in the guard too: the optimizer's slot names come from it
        run = build_run(cfg, output_dir=cfg.output_dir, hooks=[*build_hooks(cfg.train), spy])
        gen = run.trainer.fit_epochs()
        assert [next(gen), next(gen)] == [0, 1]
        gen.close()
    assert seen == ["GeneratorExit"]
    vdl = [h for h in run.trainer.hooks if hasattr(h, "writer")]
    assert vdl and all(h.writer is None for h in vdl)
    latest = os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt")
    assert load_checkpoint(latest)["epoch"] == 2
    with paddle.utils.unique_name.guard():
        full = run_mod.train(cfg_for(tmp_path / "full", *extra))
    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(cfg_for(tmp_path / "resumed", *extra), resume=latest)
    assert_same_final(full, resumed)


def test_fit_epochs_hands_an_error_to_on_exception_and_stops_early_like_fit(tmp_path):
    """Through the generator as through fit(): a NaN loss reaches every hook's on_exception (not after_train) and
    leaves the last good checkpoint; early stopping yields the epochs run, then after_train, then the end."""
    from robust_paddle.pipeline.hooks import build_hooks

    spy = EndSpy()
    seen = spy.seen

    cfg = cfg_for(tmp_path / "nan", "train.epochs=3", "method.name=nan_after_first_epoch", "train.checkpoint_every=1")
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=cfg.output_dir, hooks=[*build_hooks(cfg.train), spy])
        gen = run.trainer.fit_epochs()
        assert next(gen) == 0
        with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2"):
            next(gen)
    assert seen == ["NonFiniteLossError"]
    assert load_checkpoint(os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt"))["epoch"] == 1

    seen.clear()
    cfg = cfg_for(tmp_path / "stop", "train.epochs=20", "train.early_stopping.patience=2",
                  "train.early_stopping.min_delta=0.5", "optimizer.lr=1e-6")
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=cfg.output_dir, hooks=[*build_hooks(cfg.train), spy])
        assert list(run.trainer.fit_epochs()) == [0, 1, 2]
    assert seen == ["after_train"] and run.trainer.stopped_early_at == 3
