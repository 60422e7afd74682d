"""``train --resume RUN_DIR``: everything is checked before anything in the run folder is written.

Order: read the latest checkpoint (weights-only) -> compare the resumed config with the one the checkpoint
was trained with (only the keys below may differ) -> build the run and compare the model signature -> load
the state. Only then does ``train`` rewrite ``config.yaml`` and continue.

Keys a resume may change (``-o KEY=VALUE``; also in docs/architecture.md, "Resume"):

- applied, with the learning-rate schedule re-planned from the completed step count and logged:
  ``train.epochs``, ``optimizer.lr``, ``train.early_stopping.patience``;
- no effect on the trained weights: ``output_dir``, ``train.device``, ``train.progress``, ``train.visualdl``,
  ``train.report``, ``train.calibration``, ``train.log_every``, ``train.checkpoint_every``,
  ``train.eval_every``, ``data.num_workers``, ``data.eval_batch_size``, the ``export`` / ``slim`` sections,
  and ``train.hooks`` (extra hooks: what they do is the user's own).

Any other difference is refused with one line naming the key (a new run is the way to change it). A run
whose folder holds no checkpoint yet (it died during its first epoch) is started again in place; a run that
already reached ``train.epochs`` (or stopped early, with no schedule key changed) is left untouched.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from robust_paddle.config import Config, to_dict
from robust_paddle.engine.checkpoint import check_signature, load_checkpoint, resolve_checkpoint
from robust_paddle.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

#: applied at resume; the schedule is re-planned
RESUME_APPLIED = ("train.epochs", "optimizer.lr", "train.early_stopping.patience")
#: may differ at resume: they do not change what the checkpoint's weights mean
RESUME_FREE = ("output_dir", "train.device", "train.progress", "train.visualdl", "train.report",
               "train.calibration", "train.log_every", "train.checkpoint_every", "data.num_workers",
               "train.eval_every", "train.hooks", "data.eval_batch_size", "export", "slim")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict) or prefix.endswith("params"):  # params dicts compare as one value
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _free(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUME_FREE)


def resume_changes(saved_config: dict[str, Any], cfg: Config, *, source: str) -> dict[str, tuple[Any, Any]]:
    """``{key: (checkpoint value, new value)}`` of the :data:`RESUME_APPLIED` keys that differ.

    Keys only one side has (a config schema from another version) are not compared.

    Raises:
        ConfigError: a key outside :data:`RESUME_APPLIED` / :data:`RESUME_FREE` differs (all such keys named).
    """
    old = _flatten(json.loads(json.dumps(saved_config, default=str)))
    new = _flatten(json.loads(json.dumps(to_dict(cfg), default=str)))
    diff = {k: (old[k], new[k]) for k in new if k in old and old[k] != new[k] and not _free(k)}
    refused = [f"{k} ({json.dumps(a)} -> {json.dumps(b)})" for k, (a, b) in diff.items() if k not in RESUME_APPLIED]
    if refused:
        raise ConfigError(f"--resume: {', '.join(refused)} cannot change when resuming {source} (its weights were "
                          f"trained with the first value); at resume only {', '.join(RESUME_APPLIED)} (and run "
                          "options such as train.device) may change -- start a new run to change the others")
    return {k: v for k, v in diff.items() if k in RESUME_APPLIED}


def load_resume_state(run_dir: str) -> dict[str, Any] | None:
    """The latest checkpoint of ``run_dir`` (read weights-only), or None when the run never wrote one."""
    path = resolve_checkpoint(run_dir)
    if not os.path.exists(path):
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        if os.path.isdir(ckpt_dir) and any(f.endswith(".pdckpt") for f in os.listdir(ckpt_dir)):
            raise CheckpointError(f"--resume {run_dir}: {path} is missing although other checkpoints are there; "
                                  "copy the one to continue from to checkpoints/latest.pdckpt")
        return None
    return load_checkpoint(path)


def finished(state: dict[str, Any], cfg: Config, changes: dict[str, Any]) -> bool:
    """The checkpoint already holds the whole run: nothing to train, nothing to write."""
    done = int(state["epoch"])
    if done > cfg.train.epochs:
        raise ConfigError(f"train.epochs={cfg.train.epochs} is below the {done} epochs the checkpoint has "
                          "completed; give a larger value to continue")
    stopped = bool(state.get("stop_training")) and not ({"train.epochs", "train.early_stopping.patience"} & set(changes))
    return done >= cfg.train.epochs or stopped


def finished_summary(state: dict[str, Any], out: str) -> dict[str, Any]:
    """The summary a finished run reports (its ``metrics.json``, else the checkpoint's history)."""
    path = os.path.join(out, "metrics.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    history = list(state.get("history") or [])
    return {"epochs_run": len(history), "final": history[-1] if history else {}, "history": history}


def apply_resume(run: Any, state: dict[str, Any], changes: dict[str, tuple[Any, Any]], *, source: str) -> None:
    """Check the signature, load ``state`` into ``run.trainer`` and apply the changed schedule keys."""
    trainer = run.trainer
    check_signature(state, trainer.meta["signature"], source=source)
    trainer.load_state_dict(state, source=source)
    if trainer.scheduler is not None:
        # the schedule is a closed form of the step count with the (new) lr and length; the saved last_lr
        # belongs to the old plan, so recompute it (identical when nothing changed)
        trainer.scheduler.last_lr = trainer.scheduler.get_lr()
    if state.get("stop_training") and {"train.epochs", "train.early_stopping.patience"} & set(changes):
        trainer.start_epoch, trainer.stop_training = trainer.epoch, False
    if changes:
        lr = trainer.scheduler.last_lr if trainer.scheduler is not None else run.cfg.optimizer.lr
        logger.info("resume: %s; schedule re-planned: epochs %d..%d, learning rate now %.6g",
                    ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changes.items()), trainer.start_epoch + 1,
                    run.cfg.train.epochs, lr)
    logger.info("resumed %s at epoch %d", source, trainer.start_epoch)
