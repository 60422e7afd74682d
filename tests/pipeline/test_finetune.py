"""Freezing, per-group learning rates, model.pretrained in a run, and train.init_from vs --resume."""

import os

import numpy as np
import pytest

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.engine.hooks import Hook
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.pipeline import build as build_mod
from robust_paddle.pipeline import run as run_mod

FAST = ["data.subset=200", "train.progress=false", "train.visualdl=false", "train.report=false",
        "train.calibration=false", "data.noise.kind=none", "data.batch_size=50", "model.name=small_cnn",
        "train.checkpoint_every=1", "scheduler.name=constant"]


def cfg_for(out, *extra):
    return C.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml"),
                  FAST + [f"output_dir={out}", *extra])


class Snapshots(Hook):
    """Copies of the network's parameters before training and after every epoch."""

    priority = 1
    name = "snapshots"

    def __init__(self):
        self.states = []

    def _take(self, trainer):
        net = trainer.method.networks["net"]
        self.states.append({k: v.numpy().copy() for k, v in net.state_dict().items()})

    def before_train(self, trainer):
        self._take(trainer)

    def after_epoch(self, trainer):
        self._take(trainer)


def changed(a, b, keys):
    return [k for k in keys if not np.array_equal(a[k], b[k])]


def test_freezing_stops_backbone_gradients_then_unfreezing_restores_them(tmp_path):
    cfg = cfg_for(tmp_path / "r", "train.epochs=2", "model.freeze_epochs=1")
    snap = Snapshots()
    run = build_mod.build_run(cfg, output_dir=str(tmp_path / "r"), hooks=[snap])
    net = run.method.networks["net"]
    params = {k: p for k, p in net.named_parameters() if not p.stop_gradient}  # BN statistics still update
    head = [k for k in params if k.startswith("classifier.")]
    backbone = [k for k in params if not k.startswith("classifier.")]
    run.trainer.fit()
    s0, s1, s2 = snap.states
    assert changed(s0, s1, backbone) == [] and changed(s0, s1, head) == head  # epoch 1: head only
    assert changed(s1, s2, backbone) == backbone  # epoch 2: everything
    assert all(not p.stop_gradient for p in params.values())


def test_backbone_lr_multiplier_and_lr_scalars(tmp_path):
    cfg = cfg_for(tmp_path / "r", "train.epochs=3", "model.freeze_epochs=1", "optimizer.backbone_lr_mult=0.1",
                  "optimizer.lr=0.02")
    run = build_mod.build_run(cfg, output_dir=str(tmp_path / "r"))
    net = run.method.networks["net"]
    mults = {k: p.optimize_attr["learning_rate"] for k, p in net.named_parameters()}
    assert all(v == 1.0 for k, v in mults.items() if k.startswith("classifier."))
    assert all(v == pytest.approx(0.1) for k, v in mults.items() if not k.startswith("classifier."))
    run.trainer.fit()
    rows = run.trainer.history
    assert [r["lr/head"] for r in rows] == pytest.approx([0.02] * 3)
    assert [r["lr/backbone"] for r in rows] == pytest.approx([0.0, 0.002, 0.002])


def test_freeze_for_the_whole_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.freeze_epochs=2 freezes the backbone for the whole run"):
        build_mod.build_run(cfg_for(tmp_path / "r", "train.epochs=2", "model.freeze_epochs=2"),
                          output_dir=str(tmp_path / "r"))


def test_pretrained_run_writes_the_key_table_and_starts_from_the_weights(tmp_path):
    src = run_mod.train(cfg_for(tmp_path / "src", "train.epochs=1"))
    assert src
    ckpt = load_checkpoint(str(tmp_path / "src"))
    cfg = cfg_for(tmp_path / "ft", "train.epochs=1", f"model.pretrained={tmp_path / 'src'}")
    snap = Snapshots()
    run = build_mod.build_run(cfg, output_dir=str(tmp_path / "ft"), hooks=[snap], start_weights=True)
    run.trainer.fit()
    start = snap.states[0]
    for k, v in ckpt["networks"]["net"].items():
        np.testing.assert_array_equal(start[k], np.asarray(v))  # same classes: even the head is loaded
    table = (tmp_path / "ft" / "pretrained_keys.txt").read_text()
    assert "loaded   classifier.weight" in table and "0 re-initialised, 0 unused" in table
    with pytest.raises(ConfigError, match="train.init_from and model.pretrained/model.download both set"):
        build_mod.build_run(cfg_for(tmp_path / "x", f"model.pretrained={tmp_path / 'src'}",
                                  f"train.init_from={tmp_path / 'src'}"), output_dir=str(tmp_path / "x"),
                          start_weights=True)


def test_init_from_starts_a_new_schedule_while_resume_continues(tmp_path):
    run_mod.train(cfg_for(tmp_path / "a", "train.epochs=2", "scheduler.name=cosine"))
    a_last = load_checkpoint(str(tmp_path / "a"))
    # warm start: weights of A, epoch counter, optimizer and schedule new
    cfg_b = cfg_for(tmp_path / "b", "train.epochs=2", "scheduler.name=cosine", f"train.init_from={tmp_path / 'a'}")
    snap = Snapshots()
    run_b = build_mod.build_run(cfg_b, output_dir=str(tmp_path / "b"), hooks=[snap], start_weights=True)
    assert run_b.trainer.start_epoch == 0
    run_b.trainer.fit()
    for k, v in a_last["networks"]["net"].items():
        np.testing.assert_array_equal(snap.states[0][k], np.asarray(v))
    b_lr = [r["train/lr"] for r in run_b.trainer.history]
    assert b_lr == pytest.approx([r["train/lr"] for r in a_last["history"]])  # the cosine schedule from its start
    assert b_lr[0] > b_lr[1] and run_b.trainer.epoch == 1
    # resume: continues A's run at epoch 3 with A's optimizer and schedule
    summary = run_mod.train(cfg_for(tmp_path / "a", "train.epochs=3", "scheduler.name=cosine"),
                            resume=str(tmp_path / "a"))
    assert summary
    assert load_checkpoint(str(tmp_path / "a"))["epoch"] == 3


def test_init_from_needs_the_same_classes(tmp_path):
    run_mod.train(cfg_for(tmp_path / "a", "train.epochs=1"))
    cfg = cfg_for(tmp_path / "b", "train.epochs=1", "data.class_names=[a,b,c,d,e,f,g,h,i,j]",
                  f"train.init_from={tmp_path / 'a'}")
    with pytest.raises(CheckpointError, match="warm start needs the same classes"):
        build_mod.build_run(cfg, output_dir=str(tmp_path / "b"), start_weights=True)
