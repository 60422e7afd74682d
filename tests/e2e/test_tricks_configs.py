"""End to end: a 1-epoch run of every configs/tricks/*.yaml (small digits subset) and what each trick leaves
in the run folder."""

import glob
import json
import os

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.engine import run as run_mod

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
    state = paddle.load(str(out / "checkpoints" / "latest.pdckpt"))
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
