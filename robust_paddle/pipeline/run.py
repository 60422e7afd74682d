"""Training and evaluation entry points: ``robust-paddle train`` and ``robust-paddle eval``.

``train(cfg)`` prepares the run folder, builds the run with the hooks the config asks for
(``pipeline.hooks.build_hooks``) and fits it; ``train.kfold`` hands over to ``pipeline.kfold``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from robust_paddle import config as config_mod
from robust_paddle.config import Config
from robust_paddle.data.identity import save_train_labels
from robust_paddle.data.noise import save_noise
from robust_paddle.data.tokenize import TOKENIZER_FILE
from robust_paddle.engine import distributed as dist
from robust_paddle.engine.checkpoint import resolve_checkpoint
from robust_paddle.errors import ConfigError
from robust_paddle.methods.base import check_method_settings
from robust_paddle.pipeline.build import build_run, compile_networks, load_run
from robust_paddle.pipeline.hooks import build_hooks
from robust_paddle.pipeline.label_workflow import write_label_source_outputs

logger = logging.getLogger(__name__)


def holds_results(out: str) -> bool:
    """The folder holds a run's results: ``metrics.json`` or a checkpoint (also in k-fold subfolders)."""
    for root, dirs, files in os.walk(out):
        if "metrics.json" in files or any(f.endswith(".pdckpt") for f in files):
            return True
        if os.path.relpath(root, out).count(os.sep) >= 2:
            dirs[:] = []
    return False


def prepare_output(cfg: Config, *, resume: bool) -> str:
    """Create the run folder; refuse to write a new run over an existing one (a folder whose run died
    before its first checkpoint is started again in place)."""
    out = cfg.output_dir
    if not resume and os.path.exists(os.path.join(out, "config.yaml")):
        if holds_results(out):
            raise ConfigError(f"output_dir {out!r} already holds a run; resume it with --resume {out} or choose "
                              f"another folder with -o output_dir=...")
        logger.warning("output_dir %s holds a run that stopped before its first checkpoint: starting it again", out)
    os.makedirs(out, exist_ok=True)
    return out


def train(cfg: Config, *, resume: str | None = None) -> dict[str, Any]:
    """Train from a config (or resume the run folder ``resume``: see ``pipeline/resume.py``); returns the
    metrics summary.

    Under ``paddle.distributed.launch`` with several processes this trains data-parallel
    (``docs/distributed.md``); rank 0 writes the run folder.
    """
    from robust_paddle.pipeline import resume as resume_mod

    check_method_settings(cfg)  # before anything is written: config.yaml records only settings that apply
    cfg = config_mod.drop_inert_settings(cfg)

    distributed = dist.init(cpu=cfg.train.device == "cpu")
    if distributed and cfg.train.kfold:
        raise ConfigError(f"train.kfold={cfg.train.kfold} trains K independent models, which is not data parallel; "
                         f"launch it as one process (this job has {dist.world_size()}), or unset train.kfold")
    if cfg.train.kfold and resume is not None:
        raise ConfigError("--resume is not supported for k-fold runs (train.kfold); start a new run")
    state, changes = None, {}
    if resume is not None:  # everything is read and checked before the folder is touched
        state = resume_mod.load_resume_state(resume)
        if state is None:
            logger.warning("--resume %s: no checkpoint yet (the run stopped during its first epoch): starting it "
                           "again from epoch 1", resume)
        else:
            changes = resume_mod.resume_changes(state["config"], cfg, source=resume)
            if resume_mod.finished(state, cfg, changes):
                logger.info("--resume %s: the run already finished (epoch %d of %d); nothing to do (raise "
                            "train.epochs to continue it)", resume, int(state["epoch"]), cfg.train.epochs)
                return resume_mod.finished_summary(state, resume)
    out = prepare_output(cfg, resume=resume is not None)
    dist.barrier()  # every rank has checked the folder before rank 0 writes config.yaml into it
    if cfg.train.kfold:
        from robust_paddle.pipeline.kfold import train_kfold

        return train_kfold(cfg, folds=cfg.train.kfold, output_dir=out).summary
    run = build_run(cfg, output_dir=out, hooks=build_hooks(cfg.train), distributed=distributed,
                    start_weights=resume is None)
    if state is not None:
        resume_mod.apply_resume(run, state, changes, source=resolve_checkpoint(resume))
    if cfg.train.compile == "to_static":
        compile_networks(run.method)
    if run.trainer.is_main:
        config_mod.save(cfg, os.path.join(out, "config.yaml"))
        save_train_labels(run.data.train, out)
        write_label_source_outputs(cfg, run.data, out)
        if run.data.tokenizer is not None:
            run.data.tokenizer.save(os.path.join(out, TOKENIZER_FILE))
        if run.data.noise is not None:
            save_noise(run.data.noise, out)
    return run.trainer.fit()


def evaluate(cfg: Config, checkpoint: str) -> dict[str, Any]:
    """Evaluate a checkpoint on the val and test splits; returns ``{split: metrics}``."""
    run = load_run(cfg, checkpoint)
    return run.trainer.evaluate_all()
