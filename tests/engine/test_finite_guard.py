"""The non-finite guard beyond the loss (issue 15): the inputs of the first batches, weights that explode while
the loss stays finite, and evaluation logits. Each stops the run with NonFiniteLossError (a TrainingError)
before a hook writes anything, so the last good checkpoint is kept; the CLI prints one line."""

import os

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.engine.finite import check_logits
from robust_paddle.engine.hooks import Hook
from robust_paddle.engine.trainer import NonFiniteLossError
from robust_paddle.errors import TrainingError
from robust_paddle.methods.standard import StandardMethod
from robust_paddle.pipeline import build as build_mod
from robust_paddle.pipeline import run as run_mod
from robust_paddle.registry import HOOKS, METHODS

FAST = ["data.subset=300", "train.progress=false", "train.visualdl=false", "train.report=false",
        "model.name=mlp", "data.batch_size=50", "train.calibration=false"]


def cfg_for(tmp_path, *extra):
    return C.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml"),
                  FAST + [f"output_dir={tmp_path / 'run'}", *extra])


if "poison_weights" not in HOOKS:
    @HOOKS.register("poison_weights")
    class PoisonWeightsHook(Hook):
        """Test hook: after the last optimizer step of epoch 2 one weight becomes inf (the loss of every step
        stayed finite)."""

        name = "poison_weights"

        def after_step(self, trainer, terms):
            steps = len(trainer.loaders["train"])
            if trainer.epoch == 1 and trainer.global_step == 2 * steps:
                p = trainer.method.networks["net"].parameters()[-1]
                p.set_value(paddle.full(p.shape, float("inf"), dtype=p.dtype))

if "inf_logits_from_epoch_2" not in METHODS:
    @METHODS.register("inf_logits_from_epoch_2")
    class InfLogitsFromEpoch2(StandardMethod):
        """Test method: trains normally; its evaluation logits are inf from epoch 2 on."""

        poison = False

        def before_epoch(self, trainer):
            self.poison = trainer.epoch >= 1

        def predict(self, x):
            out = super().predict(x)
            return out * float("inf") if self.poison else out


def test_non_finite_loss_error_is_a_training_error():
    assert issubclass(NonFiniteLossError, TrainingError) and issubclass(NonFiniteLossError, RuntimeError)


def test_exploding_weights_stop_before_evaluation_and_checkpoint(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=3", "train.hooks=[{name: poison_weights}]")
    with pytest.raises(NonFiniteLossError, match=r"^weights of network 'net' became non-finite \(.+\) in epoch 2; "
                       r"training stopped and the last good checkpoint .*latest.pdckpt is kept"):
        run_mod.train(cfg)
    ckpt = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(str(ckpt / "latest.pdckpt"))["epoch"] == 1
    assert load_checkpoint(str(ckpt / "best.pdckpt"))["epoch"] == 1  # no garbage "best" epoch


def test_non_finite_evaluation_logits_stop_the_run(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=3", "method.name=inf_logits_from_epoch_2")
    with pytest.raises(NonFiniteLossError, match=r"^the network's logits are NaN/Inf for \d+ of \d+ samples "
                       r"\(first: dataset index \d+\) after epoch 2; training stopped and the last good checkpoint"):
        run_mod.train(cfg)
    assert load_checkpoint(str(tmp_path / "run" / "checkpoints" / "latest.pdckpt"))["epoch"] == 1


class NanInFirstBatch:
    """The train loader, with sample 1 of its first batch set to NaN."""

    def __init__(self, loader):
        self.loader, self.batch_sampler = loader, loader.batch_sampler

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for i, (x, y, idx) in enumerate(self.loader):
            if i == 0:
                arr = x.numpy()
                arr[1] = np.nan
                x = paddle.to_tensor(arr)
            yield x, y, idx


def test_non_finite_inputs_of_the_first_batches_are_named(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=1")
    run = build_mod.build_run(cfg, output_dir=str(tmp_path / "run"), hooks=[])
    run.trainer.loaders["train"] = NanInFirstBatch(run.loaders["train"])
    first = next(iter(run.loaders["train"]))
    with pytest.raises(NonFiniteLossError, match=rf"^input batch 1 of epoch 1 holds NaN/Inf values: dataset index "
                       rf"{int(first[2].numpy()[1])} \(1 sample\(s\) in the batch\); training stopped and no checkpoint"):
        run.trainer.fit()


def test_check_logits_names_the_rows():
    logits = np.zeros((4, 3), dtype=np.float32)
    check_logits(logits, np.arange(4))
    logits[2, 1] = np.nan
    with pytest.raises(NonFiniteLossError, match=r"NaN/Inf for 1 of 4 samples \(first: dataset index 12\); the "
                       r"weights have diverged"):
        check_logits(logits, np.arange(10, 14))
