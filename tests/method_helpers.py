"""Shared by the method tests: NumPy softmax references and a toy linear network with its MethodContext."""

import numpy as np
import paddle

from robust_paddle import config as C
from robust_paddle.losses import build_loss
from robust_paddle.methods.base import MethodContext
from robust_paddle.registry import METHODS


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def log_softmax(z):
    return np.log(softmax(z))


class Linear(paddle.nn.Layer):
    """One linear layer ``[B, dim] -> [B, classes]`` (train and eval mode agree, so NumPy can mirror it)."""

    def __init__(self, dim, classes):
        super().__init__()
        self.fc = paddle.nn.Linear(dim, classes)

    def forward(self, x):
        return self.fc(x)


def toy_context(labels, *, dim, classes, seed, overrides=(), clean=None, loss="ce", loss_params=None):
    """MethodContext over ``labels`` with a fresh :class:`Linear` per network and ``build_loss`` building
    ``loss`` (or the name a method asks for) with ``loss_params``."""
    cfg = C.load(None, [f"seed={seed}", *overrides])
    return MethodContext(cfg=cfg, num_classes=classes, input_shape=(dim,), train_labels=np.asarray(labels),
                         clean_labels=clean, build_network=lambda: Linear(dim, classes),
                         build_loss=lambda name=None, **kw: build_loss(name or loss, num_classes=classes,
                                                                       **{**(loss_params or {}), **kw}))


def assert_same_final(full, resumed):
    """A resumed run ends with the same final metrics as the uninterrupted one (timings excepted)."""
    import pytest

    a = {k: v for k, v in full["final"].items() if not k.startswith("time/")}
    b = {k: v for k, v in resumed["final"].items() if not k.startswith("time/")}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k


def log_trainer(**attrs):
    """A stand-in trainer with the real logging API (``log_scalar``, ``log_histogram``, ``save_artifact``)."""
    from robust_paddle.engine.logging_api import TrainerLog

    class LogTrainer(TrainerLog):
        def __init__(self) -> None:
            self.epoch_scalars, self.epoch_histograms, self.output_dir, self.is_main = {}, {}, "", True
            self.__dict__.update(attrs)

    return LogTrainer()


def build_method(cls, ctx, **params):
    """``cls`` built as a run builds it: through ``METHODS``, whose ``Params`` check ``params`` (the
    constructors take validated values)."""
    import robust_paddle.methods  # noqa: F401  (registers)

    name = next(n for n in METHODS.names() if METHODS.get(n) is cls)
    return METHODS.build(name, ctx, field="method.params", **params)


def train_and_resume(config: str, tmp_path, overrides):
    """Train ``configs/<config>`` for the run in ``overrides`` (checkpointing every epoch), train it again resumed
    from epoch 2, assert both end identically and return the two final checkpoints' ``method`` states."""
    import os

    import paddle

    from robust_paddle import config as C
    from robust_paddle.engine.checkpoint import load_checkpoint
    from robust_paddle.pipeline import run as run_mod

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fast = ["train.progress=false", "train.visualdl=false", "train.report=false", "train.checkpoint_every=1",
            *overrides]

    def cfg(out):
        return C.load(os.path.join(root, "configs", config), [*fast, f"output_dir={out}"])

    with paddle.utils.unique_name.guard():
        full = run_mod.train(cfg(tmp_path / "full"))
    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(cfg(tmp_path / "resumed"),
                                resume=str(tmp_path / "full" / "checkpoints" / "epoch_002.pdckpt"))
    assert_same_final(full, resumed)
    return tuple(load_checkpoint(str(tmp_path / d / "checkpoints" / "latest.pdckpt"))["method"]
                 for d in ("full", "resumed"))
