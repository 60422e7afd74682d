"""The hooks a run config asks for: ``build_hooks(cfg.train)``.

The engine's own hooks (eval, checkpoint, metrics.json, early stopping, VisualDL, EMA/SWA) and the label-quality
hooks (per-sample statistics, the report, calibration) are assembled here, above both, together with the
``train.hooks`` entries from the ``HOOKS`` registry (importing the modules below registers their names).
"""

from __future__ import annotations

from typing import Any

from robust_paddle.engine.ema import EMAHook, SWAHook
from robust_paddle.engine.hooks import CheckpointHook, EarlyStoppingHook, EvalHook, Hook, MetricsJsonHook
from robust_paddle.errors import ConfigError
from robust_paddle.quality.calibration import CalibrationHook
from robust_paddle.quality.report import ReportHook, SampleStatsHook
from robust_paddle.quality.visualdl import VisualDLHook
from robust_paddle.registry import HOOKS


def build_hooks(trainer_cfg: Any) -> list[Hook]:
    """The default hooks a run config asks for, plus ``train.hooks`` entries from the ``HOOKS`` registry."""
    hooks: list[Hook] = [EvalHook(), CheckpointHook(), MetricsJsonHook()]
    if trainer_cfg.early_stopping.patience > 0:
        hooks.append(EarlyStoppingHook(patience=trainer_cfg.early_stopping.patience,
                                       min_delta=trainer_cfg.early_stopping.min_delta))
    if trainer_cfg.visualdl:
        hooks.append(VisualDLHook())
    # per-sample loss / clean-probability statistics each epoch and the label-issue report at the end
    # (robust_paddle.quality.report); importing it also registers "sample_stats" and "report" for train.hooks
    if trainer_cfg.visualdl and trainer_cfg.diagnostics:
        hooks.append(SampleStatsHook())
    if trainer_cfg.report:
        hooks.append(ReportHook())
    # weight averaging and calibration (robust_paddle.engine.ema, robust_paddle.quality.calibration); importing them
    # also registers "ema", "swa" and "calibration" for train.hooks
    ema, swa = trainer_cfg.ema, trainer_cfg.swa
    if ema.enabled and swa.enabled:
        raise ConfigError("train.ema.enabled and train.swa.enabled are both true; they are exclusive because each "
                         "replaces the weights that are evaluated: enable one of them")
    if ema.enabled:
        hooks.append(EMAHook(decay=ema.decay, warmup=ema.warmup, eval=ema.eval))
    if swa.enabled:
        hooks.append(SWAHook(start_epoch=swa.start_epoch, lr=swa.lr, lr_min=swa.lr_min,
                             cycle_epochs=swa.cycle_epochs, update_bn=swa.update_bn))
    if trainer_cfg.calibration:
        hooks.append(CalibrationHook())
    # registers "compress" (slim.stages on the final checkpoint after training); paddleslim loads only when it runs
    import robust_paddle.pipeline.commands  # noqa: F401

    for i, spec in enumerate(trainer_cfg.hooks):
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"train.hooks[{i}]: each hook needs a 'name'; choose one of: {', '.join(HOOKS.names())}")
        name = spec.pop("name")
        hooks.append(HOOKS.build(name, field=f"train.hooks[{i}]", **spec))
    return sorted(hooks, key=lambda h: h.priority)
