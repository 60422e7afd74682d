"""Entry points that work on a trained checkpoint: ``robust-paddle report``, ``export`` and ``compress``.

Each checks its request, rebuilds the run with the checkpoint's weights (``pipeline.build.load_run``) and
hands it to the layer that does the work (``quality.report.write_report``, ``deploy.export.export_run``,
``compress.command.compress_run``).

The ``compress`` hook runs the config's ``slim.stages`` on the final checkpoint right after training.
Enable it with ``train.hooks: [{name: compress}]`` (options: ``checkpoint: latest | best``, ``out``: folder
relative to the run folder, default ``compressed``). It runs after every built-in hook (the checkpoint and
``metrics.json`` are written by then), on the main process only, and calls
:func:`compress_command`, so the result is exactly what ``robust-paddle compress
-c <run>/config.yaml --checkpoint <run>/checkpoints/<checkpoint>.pdckpt --out <run>/<out>`` writes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from robust_paddle import config as config_mod
from robust_paddle.config import Config
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.engine.hooks import Hook
from robust_paddle.errors import ConfigError
from robust_paddle.pipeline.build import load_run
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

CHECKPOINTS = ("latest", "best")


@HOOKS.register("compress")
class CompressHook(Hook):
    """Compresses the run's ``checkpoint`` (``latest`` or ``best``) into ``<output_dir>/<out>`` after training.

    Args:
        checkpoint: which checkpoint of the run to compress.
        out: output folder, relative to the run folder (or absolute).
    """

    priority = 95
    name = "compress"

    def __init__(self, *, checkpoint: str = "latest", out: str = "compressed") -> None:
        if checkpoint not in CHECKPOINTS:
            raise ConfigError(f"train.hooks compress.checkpoint: {checkpoint!r} is not allowed; choose one of: "
                             f"{', '.join(CHECKPOINTS)}")
        if not isinstance(out, str) or not out:
            raise ConfigError(f"train.hooks compress.out: expected a folder name, got {out!r}")
        self.checkpoint, self.out = checkpoint, out
        self.report: dict[str, Any] | None = None

    def before_train(self, trainer: Trainer) -> None:
        if not trainer.cfg.slim.stages:
            raise ConfigError("train.hooks has the 'compress' hook but slim.stages is empty; add stages, e.g. "
                             "slim: {stages: [{name: prune, ratio: 0.3}, {name: qat}]}")

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        path = os.path.join(trainer.checkpoint_dir, f"{self.checkpoint}.pdckpt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"compress hook: {path} was not written; keep the checkpoint hook enabled")
        out = self.out if os.path.isabs(self.out) else os.path.join(trainer.output_dir, self.out)
        logger.info("compressing %s into %s", path, out)
        self.report = compress_command(trainer.cfg, path, out_dir=out)


def _run_dir(checkpoint: str) -> str:
    """The run folder of a checkpoint path (``RUN/checkpoints/x.pdckpt``) or of a run folder itself."""
    path = os.path.abspath(checkpoint)
    if os.path.isdir(path):
        return path
    parent = os.path.dirname(path)
    return os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent


def report_command(cfg: Config, checkpoint: str, *, out_dir: str | None = None) -> dict[str, Any]:
    """``robust-paddle report``: load ``checkpoint`` (a .pdckpt file or a run folder) and write the report.

    Args:
        cfg: the run's config (its data section rebuilds the same training set and noisy labels).
        checkpoint: checkpoint file or run folder (uses ``checkpoints/latest.pdckpt``).
        out_dir: report folder. Default: the checkpoint's run folder when it holds no report yet, else
            ``RUN/reports/<checkpoint name>/`` -- a report replaces files only in a folder ``out_dir`` names.

    Returns:
        The summary dict without the matrices (what the CLI prints).

    Raises:
        ConfigError: no ``out_dir``, and both default folders already hold a report.
    """
    from robust_paddle.errors import ConfigError
    from robust_paddle.quality.report import CSV_NAME, SUMMARY_NAME, write_report

    run_dir = _run_dir(checkpoint)
    if out_dir is None:
        def has_report(folder: str) -> bool:
            return any(os.path.exists(os.path.join(folder, f)) for f in (CSV_NAME, SUMMARY_NAME))

        name = os.path.splitext(os.path.basename(checkpoint))[0] if os.path.isfile(checkpoint) else "latest"
        for out_dir in (run_dir, os.path.join(run_dir, "reports", name)):
            if not has_report(out_dir):
                break
        else:
            raise ConfigError(f"report: {out_dir} already holds a report (and so does the run folder); pass "
                              f"--out {out_dir} to replace it, or --out ANOTHER_FOLDER")
        logger.info("report: writing to %s", out_dir)
    run = load_run(cfg, checkpoint, output_dir=run_dir)
    summary = write_report(run, out_dir=out_dir)
    return {k: v for k, v in summary.items() if not k.endswith("matrix") and k != "class_names"}


def export_command(cfg: Config, checkpoint: str, *, out_dir: str, formats: Sequence[str] | None = None) -> dict[str, Any]:
    """``robust-paddle export``: export ``checkpoint`` to ``out_dir`` in ``formats`` (default
    ``cfg.export.formats``) and prove parity (``deploy/export.py`` describes the steps).

    Returns:
        The report also written to ``out_dir/export_report.json``.

    Raises:
        ValueError: bad formats / network / EMA request, or ``out_dir`` already holds an export.
        ParityError: an exported model disagrees with the dygraph model (the report is written first).
    """
    from robust_paddle.deploy.export import export_run, prepare_export

    fmts = prepare_export(cfg, out_dir, formats)
    state = load_checkpoint(checkpoint)
    # rebuilt on CPU: the references must come from the CPU kernels the CPU predictors are compared with
    run = load_run(config_mod.with_values(cfg, {"train.device": "cpu"}), checkpoint, state=state)
    os.makedirs(out_dir, exist_ok=True)  # only once the checkpoint has loaded and matched the config
    return export_run(run, state, checkpoint=checkpoint, out_dir=out_dir, formats=fmts)


def compress_command(cfg: Config, checkpoint: str, *, out_dir: str, print_table: bool = True) -> dict[str, Any]:
    """``robust-paddle compress``: compress ``checkpoint`` with ``cfg.slim.stages`` into ``out_dir``
    (``compress/command.py`` describes the steps).

    Returns:
        The report written to ``out_dir/compress_report.json``.

    Raises:
        ValueError: no stages, invalid stages, ``out_dir`` already holds a report, empty calibration set,
            or a model without prunable convs (each names the field).
        ImportError: PaddleSlim is not installed (says ``pip install robust_paddle[slim]``).
        RuntimeError: this Paddle version cannot run a stage (names the stage and the version).
        CompressionCheckError: a stage failed its checks (after the report is written).
    """
    from robust_paddle.compress.command import compress_run, prepare_compress

    stages, slim = prepare_compress(cfg, out_dir)
    state = load_checkpoint(checkpoint)
    run = load_run(config_mod.with_values(cfg, {"train.amp": "none"}), checkpoint, output_dir=out_dir, state=state)
    os.makedirs(out_dir, exist_ok=True)  # only once the checkpoint has loaded and matched the config
    return compress_run(cfg, run, state, checkpoint=checkpoint, out_dir=out_dir, stages=stages, slim=slim,
                        print_table=print_table)
