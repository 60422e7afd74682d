"""Tiny trained runs shared by tests/test_export.py and tests/test_serve.py.

Each run is trained once per pytest session under ``tmp_path_factory.getbasetemp()/export-runs/<name>`` (the
second test file finds the checkpoint the first one wrote) and exported likewise on demand.
"""

from __future__ import annotations

import os

import robust_paddle  # noqa: F401  (before paddle: zlib preload)
from robust_paddle import config as C

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "quickstart.yaml")
FAST = ["data.subset=240", "data.noise.kind=none", "train.epochs=1", "data.batch_size=40", "train.progress=false",
        "train.visualdl=false", "train.report=false", "train.calibration=false", "train.checkpoint_every=0",
        "optimizer.lr=0.1", "data.val_split=0.05", "data.test_split=0.1"]

#: name -> overrides of one model family / method
RUNS = {
    "mlp": ["model.name=mlp", "model.params={hidden: [32]}"],
    "small_cnn": ["model.name=small_cnn", "model.params={channels: [8, 16]}", "train.epochs=3",
                  "data.subset=600"],
    "resnet18_cifar": ["model.name=resnet18_cifar", "model.params={width: 4}"],
    "preact_resnet18": ["model.name=preact_resnet18", "model.params={width: 4}"],
    # a paddle.vision network (3 channels); a small subset keeps its CPU training short
    "vision_resnet18": ["model.name=resnet18", "data.channels=3", "data.subset=80"],
    "co_teaching": ["model.name=mlp", "model.params={hidden: [32]}", "method.name=co_teaching",
                    "method.params={forget_rate: 0.2, num_gradual: 1}"],
    "ema": ["model.name=mlp", "model.params={hidden: [32]}", "train.ema.enabled=true", "train.ema.decay=0.9"],
}


def run_config(base: str, name: str, *extra: str) -> C.Config:
    return C.load(CONFIG, FAST + RUNS[name] + [f"output_dir={os.path.join(base, name)}", *extra])


def trained_run(tmp_path_factory, name: str) -> tuple[C.Config, str]:
    """(config, checkpoint path) of the run ``name``; trains it the first time it is asked for."""
    from robust_paddle.pipeline.run import train

    base = str(tmp_path_factory.getbasetemp() / "export-runs")
    cfg = run_config(base, name)
    ckpt = os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt")
    if not os.path.exists(ckpt):
        train(cfg)
    return cfg, ckpt


def exported(tmp_path_factory, name: str, *, formats: tuple[str, ...] = ("paddle",), tag: str = "",
             overrides: tuple[str, ...] = ()) -> tuple[C.Config, str, dict]:
    """(config, export folder, report) of run ``name`` exported once per session with ``formats``."""
    import json

    from robust_paddle.deploy.export import REPORT_FILE
    from robust_paddle.pipeline.commands import export_command

    cfg, ckpt = trained_run(tmp_path_factory, name)
    if overrides:
        cfg = C.load(CONFIG, FAST + RUNS[name] + [f"output_dir={cfg.output_dir}", *overrides])
    out = str(tmp_path_factory.getbasetemp() / "exports" / f"{name}-{'-'.join(formats)}{tag}")
    report_path = os.path.join(out, REPORT_FILE)
    if os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as fh:
            return cfg, out, json.load(fh)
    return cfg, out, export_command(cfg, ckpt, out_dir=out, formats=list(formats))
