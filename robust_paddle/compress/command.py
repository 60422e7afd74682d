"""``robust-paddle compress``: run the ``slim.stages`` of a config on a trained checkpoint.

Steps of ``pipeline.commands.compress_command`` (:func:`prepare_compress`, then :func:`compress_run`):

1. Check the stages (``compress.spec``), that PaddleSlim is installed and that this Paddle can run each
   stage, before any work; refuse an ``out_dir`` that already holds a report.
2. Rebuild the run (``pipeline.build.load_run``) with the checkpoint's weights and method state (GMM division,
   refined labels ...), plus its EMA weights when export would use them (``export.wants_ema``).
3. Save the network ``export.network`` selects as the fp32 input model ``input/`` (``export.save_static``)
   and measure it (``compress.measure``).
4. Run each stage in order; stage *i* works in ``NN_<name>/`` and its *before* is the previous model:

   * ``prune``: prune every network of the method in place (``compress.prune``), fine-tune with the run's
     method and loss (``compress.finetune``), save fp32; check: the saved program reproduces the pruned
     network (``export.parity_atol``) and the test accuracy drop is at most ``max_acc_drop``;
   * ``qat``: wrap the networks with fake-quant layers (``compress.quant.build_qat``), calibrate the
     activation observers, fine-tune robustly, ``save_quantized_model`` (int8 weights); check: accuracy drop;
   * ``ptq``: ``quant_post_static`` of the previous fp32 model with a calibration DataLoader; check: accuracy
     drop.

   Every stage folder holds a Paddle Inference model with ``inference.yml`` (servable by ``robust-paddle
   serve``), and fine-tuning stages a ``metrics.json``.
5. Write ``compress_report.json`` (per stage: config, before/after measurements, details such as pruning
   ratios and sensitivities, fine-tuning summary, checks), print the table, and raise
   :class:`CompressionCheckError` after writing when a check failed.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle

from robust_paddle import _compat
from robust_paddle.compress.backend import (
    count_flops,
    count_params,
    import_paddleslim,
    mkldnn_available,
    quiet_paddleslim,
)
from robust_paddle.compress.finetune import finetune, finetune_lr
from robust_paddle.compress.measure import agreement, format_table, measure_model
from robust_paddle.compress.spec import PruneStage, PTQStage, QATStage, Stage, parse_stages, stage_dict
from robust_paddle.config import Config
from robust_paddle.deploy.predictor import MODEL_PREFIX, ModelInfo, PaddlePredictor
from robust_paddle.errors import ConfigError, RobustPaddleError

logger = logging.getLogger(__name__)

REPORT_FILE = "compress_report.json"
INPUT_DIR = "input"


class CompressionCheckError(RobustPaddleError, ValueError):
    """A compressed model failed its parity or accuracy check (the report was written first)."""


@dataclass
class Current:
    """The model a stage starts from: its saved prefix, measurements, test predictions and fp32 network size."""

    prefix: str
    stats: dict[str, Any]
    preds: dict[str, np.ndarray]
    params: int
    flops: int
    int8: bool = False


@dataclass
class Session:
    """What every stage needs: the rebuilt run, the config, where to write, and measurement settings."""

    cfg: Config
    run: Any
    out_dir: str
    start_epoch: int
    source: dict[str, Any]
    input_shape: list[int] = field(default_factory=list)

    def export_net(self) -> paddle.nn.Layer:
        """The network export would save (``export.network``, optional softmax head), in eval mode."""
        from robust_paddle.deploy.export import SoftmaxHead

        net = self.run.method.export_network(self.cfg.export.network)
        net = SoftmaxHead(net) if self.cfg.export.softmax else net
        net.eval()
        return net

    def measure(self, prefix: str, *, int8: bool, params: int, flops: int) -> Current:
        sc = self.cfg.slim
        stats, preds = measure_model(prefix, int8=int8, params=params, flops=flops, loaders=self.run.loaders,
                                     batch_sizes=sc.latency_batch_sizes, iters=sc.latency_iters, threads=sc.threads)
        return Current(prefix=prefix, stats=stats, preds=preds, params=params, flops=flops, int8=int8)

    def write_info(self, prefix: str, *, stage: str, int8: bool) -> str:
        """``inference.yml`` beside a saved model, so ``robust-paddle serve`` can load the folder."""
        from robust_paddle.deploy.export import INPUT_NAME, model_version

        data, cfg = self.run.data, self.cfg
        out_name = PaddlePredictor(prefix, optimized=False).output_name
        interface = {"input_shape": self.input_shape, "softmax": cfg.export.softmax, "mean": list(data.mean),
                     "std": list(data.std), "class_names": [str(c) for c in data.class_names], "model": cfg.model.name,
                     "model_params": cfg.model.params, "network": cfg.export.network, "stage": stage, "int8": int8}
        info = ModelInfo(model_dir=os.path.dirname(prefix), input_name=INPUT_NAME, input_shape=tuple(self.input_shape),
                         kind="image" if len(self.input_shape) == 3 else "tabular", output_name=out_name,
                         softmax=cfg.export.softmax, mean=tuple(data.mean), std=tuple(data.std),
                         class_names=tuple(str(c) for c in data.class_names),
                         model_version=model_version(prefix, interface), source={**self.source, "stage": stage,
                                                                                 "int8": int8})
        return info.save()


# ------------------------------------------------------------------------------------------------- stages
def save_fp32(session: Session, out_dir: str, *, stage: str) -> tuple[str, dict[str, Any]]:
    """Save the current fp32 export network to ``out_dir`` and check the program reproduces it exactly."""
    from robust_paddle.deploy.export import check_runner, parity_batch, save_static

    ec = session.cfg.export
    net = session.export_net()
    x = parity_batch(session.run.data, ec.batch_for_parity)
    with paddle.no_grad():
        refs = (net(paddle.to_tensor(x)).numpy(), net(paddle.to_tensor(x[:1])).numpy())
    os.makedirs(out_dir, exist_ok=True)
    # to_static converts forward in place: save a copy so later stages keep training the dygraph network
    prefix = save_static(copy.deepcopy(net), out_dir, input_shape=session.input_shape)
    parity = check_runner(PaddlePredictor(prefix, optimized=False), x, refs, atol=ec.parity_atol, rtol=0.0)
    session.write_info(prefix, stage=stage, int8=False)
    return prefix, parity


def sensitivity_set(session: Session, samples: int) -> np.ndarray:
    """Validation inputs (else training images) for the pruning sensitivity analysis, ``[n, ...]`` float32."""
    from robust_paddle.compress.quant import calibration_array

    data = session.run.data
    ds = data.val if data.val is not None and len(data.val) > 0 else data.train_eval
    return calibration_array(ds, samples=samples, seed=session.cfg.seed, field="sensitivity set")


def check_batch(session: Session) -> np.ndarray:
    """A real input batch (the export parity batch) for the pruned-network forward checks."""
    from robust_paddle.deploy.export import parity_batch

    return parity_batch(session.run.data, session.cfg.export.batch_for_parity)


def check_prune_stages(session: Session, stages: list[Stage]) -> None:
    """Trial-prune a copy of every network for every prune stage and run it on a real batch, before anything
    is written (``prune.check_prunable``); raises ConfigError naming the stage, the network and the layer."""
    from robust_paddle.compress.prune import check_prunable

    batch = None
    for i, stage in enumerate(stages):
        if not isinstance(stage, PruneStage):
            continue
        batch = check_batch(session) if batch is None else batch
        for name, net in session.run.method.networks.items():
            check_prunable(net, stage, batch, input_shape=session.input_shape,
                           num_classes=session.run.data.num_classes, field=f"slim.stages[{i}]", network=name)


def run_prune(session: Session, stage: PruneStage, index: int, stage_dir: str) -> tuple[str, bool, dict, dict]:
    from robust_paddle.compress.prune import prune_network, sensitivity_file

    field_name = f"slim.stages[{index}]"
    score = None
    if stage.flops_target is not None:
        xs = paddle.to_tensor(sensitivity_set(session, stage.sensitivity_samples))
        ref = session.export_net()(xs).numpy().argmax(1)

        @paddle.no_grad()
        def score() -> float:  # label-free: agreement with the unpruned model, immune to label noise
            return float(np.mean(session.export_net()(xs).numpy().argmax(1) == ref))

    os.makedirs(stage_dir, exist_ok=True)
    batch = check_batch(session)
    details = {name: prune_network(net, stage, input_shape=session.input_shape, score=score,
                                   sen_file=sensitivity_file(stage_dir, name), field=field_name,
                                   check_batch=batch, num_classes=session.run.data.num_classes, network=name)
               for name, net in session.run.method.networks.items()}
    ft = finetune(session.run, start_epoch=session.start_epoch, epochs=_epochs(session, stage), output_dir=stage_dir,
                  lr=finetune_lr(session.cfg, stage.lr), meta=session.run.trainer.meta)
    prefix, parity = save_fp32(session, stage_dir, stage="prune")
    return prefix, False, {"networks": details, "finetune": ft}, {"program": parity}


def run_qat(session: Session, stage: QATStage, index: int, stage_dir: str) -> tuple[str, bool, dict, dict]:
    from robust_paddle.compress.quant import build_qat, calibrate_observers, save_qat_model

    quanter = build_qat(stage)
    nets = list(session.run.method.networks.values())
    for net in nets:
        quanter.quantize(net)  # in place: the method keeps training the same Layer objects
    calibrated = calibrate_observers(nets, session.run.loaders["train_eval"], batches=stage.calibration_batches)
    os.makedirs(stage_dir, exist_ok=True)
    ft = finetune(session.run, start_epoch=session.start_epoch, epochs=_epochs(session, stage), output_dir=stage_dir,
                  lr=finetune_lr(session.cfg, stage.lr), meta=session.run.trainer.meta)
    net = session.export_net()
    from robust_paddle.deploy.export import parity_batch

    x = parity_batch(session.run.data, session.cfg.export.batch_for_parity)
    with paddle.no_grad():
        ref = net(paddle.to_tensor(x)).numpy()
    prefix = save_qat_model(quanter, net, os.path.join(stage_dir, MODEL_PREFIX), input_shape=session.input_shape)
    out = PaddlePredictor(prefix, int8=True, optimized=False)(x)
    # the saved program rounds like Paddle Inference, not like the dygraph fake-quant layers: recorded, not gated
    sim = {"max_abs_diff": float(np.abs(out - ref).max()), "argmax_agreement": float(np.mean(out.argmax(1) == ref.argmax(1))),
           "passed": True, "gated": False}
    session.write_info(prefix, stage="qat", int8=True)
    return prefix, True, {"calibration_batches": calibrated, "finetune": ft}, {"program": sim}


def run_ptq(session: Session, stage: PTQStage, index: int, stage_dir: str, current: Current) -> tuple[str, bool, dict, dict]:
    from robust_paddle.compress.quant import calibration_array, quantize_post_static

    field_name = f"slim.stages[{index}].calibration_split"
    data = session.run.data
    ds = data.train_eval if stage.calibration_split == "train" else data.val
    x = calibration_array(ds, samples=stage.calibration_samples, seed=session.cfg.seed, field=field_name)
    os.makedirs(stage_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=stage_dir) as tmp:
        source = current.prefix
        if _compat.model_file(source).endswith(".json"):
            # PaddleSlim's PTQ reads legacy .pdmodel programs only: on Paddle 3.x (PIR .json) the current
            # network is saved once more as a legacy program for it
            from robust_paddle.deploy.export import save_static

            source = save_static(copy.deepcopy(session.export_net()), tmp, input_shape=session.input_shape,
                                 legacy=True)
        info = quantize_post_static(os.path.dirname(source), stage_dir, x, stage=stage,
                                    model_filename=os.path.basename(_compat.model_file(source)),
                                    params_filename=os.path.basename(_compat.params_file(source)),
                                    field=field_name)
    prefix = os.path.join(stage_dir, MODEL_PREFIX)
    session.write_info(prefix, stage="ptq", int8=True)
    return prefix, True, info, {}


def _epochs(session: Session, stage: PruneStage | QATStage) -> int:
    return session.cfg.slim.finetune_epochs if stage.finetune_epochs is None else int(stage.finetune_epochs)


def _summary(stage: Stage, details: dict[str, Any], before: Current, after: Current, cfg: Config) -> str:
    ft = details.get("finetune", {})
    tuned = f", fine-tuned {ft['epochs']} epoch(s) with {cfg.method.name}/{cfg.loss.name}" if ft.get("epochs") else ""
    if isinstance(stage, PruneStage):
        how = f"ratio {stage.ratio}" if stage.ratio is not None else f"flops_target {stage.flops_target}"
        removed = 1.0 - after.flops / max(before.flops, 1)
        return f"prune {stage.pruner} {how} (FLOPs -{100 * removed:.1f}%){tuned}"
    if isinstance(stage, QATStage):
        return f"qat int8 {stage.weight_quantize_type}/{stage.activation_quantize_type}{tuned}"
    return f"ptq int8 {stage.algo}, {details.get('calibration_samples')} {stage.calibration_split} calibration samples"


def accuracy_check(before: dict[str, Any], after: dict[str, Any], *, max_drop: float) -> dict[str, Any]:
    """Test accuracy (else training accuracy vs clean labels) may drop by at most ``max_drop``."""
    for key in ("test_acc", "train_acc_clean"):
        if key in before and key in after:
            drop = float(before[key] - after[key])
            return {"metric": key, "before": before[key], "after": after[key], "drop": drop, "max_drop": max_drop,
                    "passed": drop <= max_drop + 1e-12}
    return {"metric": None, "passed": True, "skipped": "no test split and no clean training labels"}


# ---------------------------------------------------------------------------------------------- command
def prepare_compress(cfg: Config, out_dir: str) -> tuple[list[Stage], Any]:
    """Check ``cfg.slim.stages`` before any work: stages valid, PaddleSlim installed, this Paddle able to
    run each stage, ``out_dir`` free (created once the checkpoint has loaded). Returns the stages and the
    paddleslim module.

    Raises:
        ValueError: no stages, invalid stages, or ``out_dir`` already holds a report (each names the field).
        ImportError: PaddleSlim is not installed (says ``pip install robust_paddle[slim]``).
        RuntimeError: this Paddle version cannot run a stage (names the stage and the version).
    """
    stages = parse_stages(cfg.slim.stages)
    if not stages:
        raise ConfigError("slim.stages is empty; add stages to the config, e.g. slim: {stages: [{name: prune, "
                         "ratio: 0.3}, {name: qat}]}")
    for stage in stages:
        slim = import_paddleslim(stage.name)
    if os.path.exists(os.path.join(out_dir, REPORT_FILE)):
        raise ConfigError(f"--out {out_dir} already holds a compression ({REPORT_FILE}); choose another folder")
    return stages, slim


def compress_run(cfg: Config, run: Any, state: dict[str, Any], *, checkpoint: str, out_dir: str,
                 stages: list[Stage], slim: Any, print_table: bool = True) -> dict[str, Any]:
    """Compress the loaded ``run`` (``checkpoint`` rebuilt with ``train.amp: none``; ``state`` is the loaded
    checkpoint) with ``stages`` into ``out_dir`` (see the module docstring; ``pipeline.commands.compress_command``
    checks with :func:`prepare_compress` and loads the run).

    Returns:
        The report written to ``out_dir/compress_report.json``.

    Raises:
        ConfigError: a text run (token-id models are not compressed here; ``export`` deploys them).
        ValueError: empty calibration set, or a model without prunable convs (each names the field).
        CompressionCheckError: a stage failed its checks (after the report is written).
    """
    from robust_paddle.deploy.export import load_ema_weights, wants_ema

    if getattr(run.data, "tokenizer", None) is not None:
        with contextlib.suppress(OSError):
            os.rmdir(out_dir)  # created empty by the caller; nothing is written
        raise ConfigError("robust-paddle compress supports image and tabular runs; this is a text run "
                          f"(data.name: {cfg.data.name}, model: {cfg.model.name}): filter pruning removes conv "
                          "filters and the int8 stages calibrate float inputs, while text models take int64 token "
                          "ids; deploy it with `robust-paddle export` (Paddle Inference, ONNX, Serving) instead")
    use_ema = wants_ema(cfg, state)
    if use_ema:
        load_ema_weights(run.method.networks, state, checkpoint=checkpoint)
    source = {"checkpoint": os.path.abspath(checkpoint), "epoch": int(state["epoch"]), "method": cfg.method.name,
              "loss": cfg.loss.name, "model": cfg.model.name, "network": cfg.export.network, "ema": use_ema,
              "dataset": cfg.data.name}
    session = Session(cfg=cfg, run=run, out_dir=out_dir, start_epoch=int(state["epoch"]), source=source,
                      input_shape=[int(s) for s in run.data.input_shape])

    try:
        with quiet_paddleslim():
            check_prune_stages(session, stages)  # a model that cannot be pruned is refused before any write
    except Exception:
        with contextlib.suppress(OSError):
            os.rmdir(out_dir)  # prepare_compress created it; removed only when still empty
        raise
    net = session.export_net()
    prefix, parity = save_fp32(session, os.path.join(out_dir, INPUT_DIR), stage="input")
    current = session.measure(prefix, int8=False, params=count_params(net), flops=count_flops(net, session.input_shape))
    report: dict[str, Any] = {
        "out_dir": os.path.abspath(out_dir), "source": source,
        "environment": {"paddle": paddle.__version__, "paddleslim": getattr(slim, "__version__", None),
                        "threads": cfg.slim.threads, "mkldnn": mkldnn_available()},
        "input": {"dir": os.path.dirname(prefix), "stats": current.stats, "parity": parity}, "stages": []}
    first = current
    for i, stage in enumerate(stages):
        stage_dir = os.path.join(out_dir, f"{i:02d}_{stage.name}")
        logger.info("stage %d/%d: %s", i + 1, len(stages), stage.name)
        params, flops = current.params, current.flops  # quantisation keeps the network's size and ops
        fresh = not os.path.exists(stage_dir)
        try:
            with quiet_paddleslim():
                if isinstance(stage, PruneStage):
                    prefix, int8, details, checks = run_prune(session, stage, i, stage_dir)
                    net = session.export_net()
                    params, flops = count_params(net), count_flops(net, session.input_shape)
                elif isinstance(stage, QATStage):
                    prefix, int8, details, checks = run_qat(session, stage, i, stage_dir)
                else:
                    prefix, int8, details, checks = run_ptq(session, stage, i, stage_dir, current)
        except BaseException:
            if fresh:  # no half-written stage folder is left behind
                shutil.rmtree(stage_dir, ignore_errors=True)
            raise
        after = session.measure(prefix, int8=int8, params=params, flops=flops)
        checks["accuracy"] = accuracy_check(current.stats, after.stats, max_drop=stage.max_acc_drop)
        failed = [k for k, c in checks.items() if not c["passed"]]
        report["stages"].append({
            "index": i, "name": stage.name, "config": stage_dict(stage), "dir": stage_dir,
            "summary": _summary(stage, details, current, after, cfg), "before": current.stats, "after": after.stats,
            "agreement_with_input": agreement(current.preds.get("test"), after.preds.get("test")),
            "details": details, "checks": checks, "passed": not failed,
            "check_summary": "all checks passed" if not failed else f"failed: {', '.join(failed)}"})
        current = after
    report["final"] = {"dir": os.path.dirname(current.prefix), "stats": current.stats,
                       "agreement_with_input": agreement(first.preds.get("test"), current.preds.get("test"))}
    report["passed"] = all(s["passed"] for s in report["stages"]) and parity["passed"]
    path = os.path.join(out_dir, REPORT_FILE)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
    if print_table:
        print(format_table(report))
        print(f"final model: {report['final']['dir']}  (report: {path})")
    failed = [f"stage {s['index']} ({s['name']}): {s['check_summary']}" for s in report["stages"] if not s["passed"]]
    if not parity["passed"]:
        failed.insert(0, f"input export parity: max|diff| {parity.get('max_abs_diff')}")
    if failed:
        raise CompressionCheckError(f"compression checks failed: {'; '.join(failed)}; see {path}")
    return report
