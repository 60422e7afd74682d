"""Typed compression stages: what one entry of ``slim.stages`` may say, checked where the config is loaded.

This module imports neither paddle nor paddleslim (``config.SlimConfig`` validates its stages through it).
Every error is a :class:`~robust_paddle.errors.ConfigError` naming the field, e.g.
``slim.stages[0].ratio: 1.5 is out of range; must be > 0 and < 1``.

Rules beyond the per-field checks:

* ``prune`` needs exactly one of ``ratio`` (uniform fraction of filters removed from every prunable conv) and
  ``flops_target`` (fraction of FLOPs to remove, with per-layer ratios from PaddleSlim's sensitivity analysis);
* at most one quantisation stage (``qat`` or ``ptq``), and it comes last: pruning an int8 program or
  quantising twice is not supported by PaddleSlim.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robust_paddle.errors import ConfigError
from robust_paddle.schema import build as _build
from robust_paddle.schema import param as _f

#: pruner name -> PaddleSlim dygraph class (``paddleslim.dygraph``)
PRUNERS = {"l1norm": "L1NormFilterPruner", "fpgm": "FPGMFilterPruner"}
#: PaddleSlim post-training calibration algorithms (``quant_post_static(algo=...)``)
PTQ_ALGOS = ("hist", "KL", "mse", "avg", "abs_max")
WEIGHT_QUANT_TYPES = ("channel_wise_abs_max", "abs_max")
#: QAT activation observers (``paddle.quantization.ImperativeQuantAware``); moving_average_abs_max is the one
#: Paddle Inference's oneDNN int8 passes read scales from
ACT_QUANT_TYPES = ("moving_average_abs_max",)
CALIBRATION_SPLITS = ("train", "val")
QUANT_STAGES = ("qat", "ptq")


def _open_unit(value: float | None, key: str) -> None:
    if value is not None and not 0.0 < value < 1.0:
        raise ConfigError(f"{key}: {value!r} is out of range; must be > 0 and < 1")


@dataclass(frozen=True)
class PruneStage:
    """Structured filter pruning of every ``Conv2D`` (PaddleSlim dygraph pruners), then robust fine-tuning.

    Attributes:
        pruner: ``l1norm`` (smallest L1-norm filters, https://arxiv.org/abs/1608.08710) or ``fpgm`` (filters
            nearest the geometric median, https://arxiv.org/abs/1811.00250).
        ratio: uniform fraction of filters removed from each prunable conv (its BN and the next layer's input
            channels follow); exclusive with ``flops_target``.
        flops_target: fraction of the network's FLOPs to remove; per-layer ratios come from PaddleSlim's
            sensitivity analysis (each conv pruned alone at 10%..90%) searched to reach the target.
        sensitivity_samples: samples of the validation split (else the training images) scored by the
            sensitivity analysis; the score is agreement with the unpruned model's predictions, which needs
            no labels, so label noise cannot bias the per-layer ratios.
        align: round the kept channels of each conv to a multiple of this (e.g. 8 for SIMD-friendly shapes).
        finetune_epochs: epochs of fine-tuning with the run's method and loss (None: ``slim.finetune_epochs``).
        lr: fine-tuning learning rate (None: ``0.1 * optimizer.lr``), scheduled by ``scheduler`` over the epochs.
        max_acc_drop: the stage fails its check when test accuracy drops by more than this vs its input.
    """

    name: str = "prune"
    pruner: str = _f("l1norm", choices=tuple(PRUNERS))
    ratio: float | None = None
    flops_target: float | None = None
    sensitivity_samples: int = _f(512, min=1)
    align: int | None = None
    finetune_epochs: int | None = None
    lr: float | None = None
    max_acc_drop: float = _f(0.02, min=0.0, max=1.0)


@dataclass(frozen=True)
class QATStage:
    """Quantisation-aware training (``paddleslim.QAT``) with robust fine-tuning; int8 weights on export.

    Attributes:
        weight_quantize_type: ``channel_wise_abs_max`` (per output channel) or ``abs_max``.
        activation_quantize_type: ``moving_average_abs_max``.
        moving_rate: decay of the activation-range moving average.
        calibration_batches: training batches run through the observers (BN frozen, no weight update) before
            fine-tuning, so the activation scales are set even with ``finetune_epochs: 0``.
        finetune_epochs / lr / max_acc_drop: as for ``prune``.
    """

    name: str = "qat"
    weight_quantize_type: str = _f("channel_wise_abs_max", choices=WEIGHT_QUANT_TYPES)
    activation_quantize_type: str = _f("moving_average_abs_max", choices=ACT_QUANT_TYPES)
    moving_rate: float = _f(0.9, min=0.0, max=1.0)
    calibration_batches: int = _f(8, min=0)
    finetune_epochs: int | None = None
    lr: float | None = None
    max_acc_drop: float = _f(0.02, min=0.0, max=1.0)


@dataclass(frozen=True)
class PTQStage:
    """Post-training static quantisation (``paddleslim.quant.quant_post_static``) of the stage's fp32 model.

    Attributes:
        algo: how activation ranges are chosen from the calibration set (``hist`` percentile, ``KL``, ``mse``,
            ``avg``, ``abs_max``).
        calibration_split: images calibrated on: ``train`` (the training images, no augmentation; their
            labels are not used) or ``val``.
        calibration_samples: at most this many samples, drawn with the run's seed.
        batch_size: calibration batch size.
        weight_quantize_type: ``channel_wise_abs_max`` or ``abs_max``.
        hist_percent: percentile of the ``hist`` algorithm.
        bias_correction: correct the bias of quantised weights (https://arxiv.org/abs/1810.05723).
        max_acc_drop: as for ``prune``.
    """

    name: str = "ptq"
    algo: str = _f("hist", choices=PTQ_ALGOS)
    calibration_split: str = _f("train", choices=CALIBRATION_SPLITS)
    calibration_samples: int = _f(256, min=1)
    batch_size: int = _f(32, min=1)
    weight_quantize_type: str = _f("channel_wise_abs_max", choices=WEIGHT_QUANT_TYPES)
    hist_percent: float = _f(0.9999, min=0.0, max=1.0, min_open=True)
    bias_correction: bool = False
    max_acc_drop: float = _f(0.02, min=0.0, max=1.0)


Stage = PruneStage | QATStage | PTQStage
STAGES: dict[str, type] = {"prune": PruneStage, "qat": QATStage, "ptq": PTQStage}


def parse_stage(data: Any, *, index: int) -> Stage:
    """One ``slim.stages[index]`` mapping -> its typed stage.

    Raises:
        ConfigError: not a mapping, unknown ``name`` or key, wrong type or out-of-range value (names the field).
    """
    key = f"slim.stages[{index}]"
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping like {{name: prune, ratio: 0.3}}, got {data!r}")
    name = data.get("name")
    if name not in STAGES:
        raise ConfigError(f"{key}.name: {name!r} is not a compression stage; choose one of: {', '.join(STAGES)}")
    stage = _build(STAGES[name], data, key)
    if isinstance(stage, PruneStage):
        if (stage.ratio is None) == (stage.flops_target is None):
            raise ConfigError(f"{key}: set exactly one of ratio (uniform, e.g. 0.3) and flops_target (e.g. 0.3); got "
                              f"ratio={stage.ratio!r}, flops_target={stage.flops_target!r}")
        _open_unit(stage.ratio, f"{key}.ratio")
        _open_unit(stage.flops_target, f"{key}.flops_target")
        if stage.align is not None and stage.align < 1:
            raise ConfigError(f"{key}.align: {stage.align!r} is out of range; must be >= 1 (or null)")
    if not isinstance(stage, PTQStage):
        if stage.finetune_epochs is not None and stage.finetune_epochs < 0:
            raise ConfigError(f"{key}.finetune_epochs: {stage.finetune_epochs!r} is out of range; must be >= 0 "
                              "(or null for slim.finetune_epochs)")
        if stage.lr is not None and stage.lr <= 0:
            raise ConfigError(f"{key}.lr: {stage.lr!r} is out of range; must be > 0 (or null for 0.1 * optimizer.lr)")
    return stage


def parse_stages(stages: list[Any]) -> list[Stage]:
    """``slim.stages`` -> typed stages, checking each one and their order (see the module docstring)."""
    if not isinstance(stages, list):
        raise ConfigError(f"slim.stages: expected a list of stage mappings, got {stages!r}")
    out = [parse_stage(s, index=i) for i, s in enumerate(stages)]
    quant = [i for i, s in enumerate(out) if s.name in QUANT_STAGES]
    if len(quant) > 1:
        raise ConfigError(f"slim.stages[{quant[1]}]: only one quantisation stage is allowed; "
                          f"slim.stages[{quant[0]}] is already '{out[quant[0]].name}'")
    if quant and quant[0] != len(out) - 1:
        i = quant[0]
        raise ConfigError(f"slim.stages[{i + 1}]: '{out[i + 1].name}' cannot follow the quantisation stage "
                          f"'{out[i].name}' (slim.stages[{i}]); quantisation must be the last stage")
    return out


def check_latency_batches(sizes: list[int]) -> None:
    """``slim.latency_batch_sizes``: a non-empty list of ints >= 1."""
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise ConfigError(f"slim.latency_batch_sizes: expected a non-empty list of ints >= 1, got {sizes!r}")


def stage_dict(stage: Stage) -> dict[str, Any]:
    """Plain dict of a stage (for reports)."""
    return dataclasses.asdict(stage)
