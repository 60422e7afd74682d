"""End to end: a 1-epoch run of every configs/tricks/*.yaml (small digits subset) and what each trick leaves
in the run folder."""

import glob
import json
import os
import shutil

import numpy as np
import pytest

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.pipeline import run as run_mod

TRICKS = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tricks")
CONFIGS = sorted(p for p in glob.glob(os.path.join(TRICKS, "*.yaml")) if not os.path.basename(p).startswith("_"))
COMMON = ["train.epochs=1", "data.subset=160", "data.batch_size=32", "model.params.channels=[8,16]",
          "train.progress=false", "train.visualdl=false", "train.report=false", "train.calibration=false"]
EXTRA = {  # a 1-epoch run needs the SWA phase (and k-fold) to fit in it
    "swa": ["train.swa.start_epoch=1"],
    "swa_cyclic": ["train.swa.start_epoch=1", "train.swa.cycle_epochs=1"],
    "kfold": ["train.kfold=2"],
    "grad_accum": ["data.batch_size=16"],
    "ema": ["train.calibration=true"],  # one run also checks the reliability diagram
}


def test_every_trick_has_a_config():
    names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
    assert {"ema", "swa", "swa_cyclic", "mixup", "cutmix", "label_smoothing", "rdrop", "fgm", "pgd",
            "class_weights", "weighted_sampler", "focal", "grad_accum", "kfold"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.splitext(os.path.basename(p))[0])
def test_one_epoch_run(path, tmp_path):
    name = os.path.splitext(os.path.basename(path))[0]
    out = tmp_path / name
    cfg = C.load(path, COMMON + EXTRA.get(name, []) + [f"output_dir={out}"])
    summary = run_mod.train(cfg)
    assert np.isfinite(summary["final"]["test/acc"])
    metrics = json.loads((out / "metrics.json").read_text())
    if name == "kfold":
        assert (out / "oof_probs.npy").exists() and (out / "fold_1" / "metrics.json").exists()
        return
    assert metrics["epochs_run"] == 1
    if name == "ema":
        assert (out / "reliability.png").exists() and "test/ece" in metrics["final"]
    state = load_checkpoint(str(out / "checkpoints" / "latest.pdckpt"))
    if name == "ema":
        ema = state["hooks"]["ema"]
        assert ema["num_updates"] == state["global_step"] > 0
        assert set(ema["shadow"]["net"]) == set(state["networks"]["net"])
    if name.startswith("swa"):
        assert (out / "checkpoints" / "swa.pdckpt").exists()
        assert "swa/test/acc" in metrics["final"] and metrics["final"]["swa/num_averaged"] == 1
    if name == "grad_accum":
        # 160 training samples -> 10 batches of 16 -> optimizer steps after batches 4, 8 and 10
        assert state["global_step"] == 3
    if name in ("fgm", "pgd"):
        assert "train/adv" in metrics["final"]
    if name == "rdrop":
        assert metrics["final"]["train/rdrop_kl"] > 0


def test_resume_with_ema_mixup_and_weighted_sampler_replays_the_uninterrupted_run(tmp_path):
    """The EMA shadow, the per-epoch mixing draws and the weighted sampler survive a resume exactly."""
    path = os.path.join(TRICKS, "ema.yaml")
    common = [o for o in COMMON if not o.startswith("train.epochs")] + [
        "method.params.mixup_alpha=0.4", "data.sampler=weighted"]
    full = C.load(path, common + ["train.epochs=2", "train.checkpoint_every=1", f"output_dir={tmp_path / 'full'}"])
    run_mod.train(full)
    # a run folder holding the run as it stood after epoch 1: resume it to the end
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "config.yaml", part / "config.yaml")
    shutil.copy(tmp_path / "full" / "checkpoints" / "epoch_001.pdckpt", part / "checkpoints" / "latest.pdckpt")
    run_mod.train(C.with_values(full, {"output_dir": str(part)}), resume=str(part))

    def history(name):
        return json.loads((tmp_path / name / "metrics.json").read_text())["history"]

    assert history("part") == history("full")
    a = load_checkpoint(str(tmp_path / "full" / "checkpoints" / "latest.pdckpt"))["hooks"]["ema"]
    b = load_checkpoint(str(tmp_path / "part" / "checkpoints" / "latest.pdckpt"))["hooks"]["ema"]
    assert a["num_updates"] == b["num_updates"]
    for k, v in a["shadow"]["net"].items():
        np.testing.assert_array_equal(v.numpy(), b["shadow"]["net"][k].numpy())
