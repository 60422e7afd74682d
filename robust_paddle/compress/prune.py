"""Structured filter pruning with PaddleSlim's dygraph pruners (in place, on the method's networks).

A *collection* is one conv's output channels together with everything that must shrink with them (its
BatchNorm, the next conv's or fc's input channels, residual partners); PaddleSlim finds them by tracing the
network once on a ``[1, *input_shape]`` input. Two ways to choose how much of each collection to remove:

* ``ratio``: the same fraction of filters everywhere (the L1-norm or FPGM criterion picks which);
* ``flops_target``: PaddleSlim's sensitivity analysis (``FilterPruner.sensitive``) prunes each collection
  alone at 10%..90% and scores the network; :func:`search_ratios` then raises the ratios of the least
  sensitive layers first until the FLOPs reduction reaches the target.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import paddle

from robust_paddle.compress.backend import count_flops, count_params, import_paddleslim
from robust_paddle.compress.spec import PRUNERS, PruneStage
from robust_paddle.errors import ConfigError

logger = logging.getLogger(__name__)


def build_pruner(net: paddle.nn.Layer, pruner: str, *, input_shape: Sequence[int]) -> Any:
    """``L1NormFilterPruner`` or ``FPGMFilterPruner`` over ``net`` (traced on ``[1, *input_shape]``).

    Raises:
        ValueError: unknown pruner name (lists the choices).
    """
    if pruner not in PRUNERS:
        raise ConfigError(f"pruner: {pruner!r} is not a PaddleSlim filter pruner; choose one of: {', '.join(PRUNERS)}")
    slim = import_paddleslim("prune")
    cls = getattr(slim.dygraph, PRUNERS[pruner])
    net.eval()
    return cls(net, [1, *[int(s) for s in input_shape]])


def prunable(pruner: Any) -> list[str]:
    """Parameter names of the convs whose filters can be pruned (master of each collection)."""
    return [c.master_name for c in pruner.collections if c.master_name not in pruner.skip_vars]


def align_ratios(net: paddle.nn.Layer, ratios: dict[str, float], align: int | None) -> dict[str, float]:
    """Round each conv's kept filters to a multiple of ``align`` (at least ``align``); no-op for None."""
    if not align:
        return dict(ratios)
    shapes = {p.name: p.shape for p in net.parameters()}
    out = {}
    for name, ratio in ratios.items():
        dim = int(shapes[name][0])
        kept = max(align, int(round((1.0 - ratio) * dim / align)) * align)
        out[name] = max(0.0, float(dim - min(kept, dim)) / dim)
    return out


def check_pruned_forward(net: paddle.nn.Layer, batch: np.ndarray, *, num_classes: int, field: str,
                         network: str) -> None:
    """Run a pruned ``net`` on a real ``batch`` [B, *input_shape]; a model PaddleSlim could not prune
    consistently is refused with one line naming the layer (or the forward code) that failed.

    PaddleSlim traces the ops between a conv and the layers that consume its channels; a forward that
    reshapes conv features by hand (``x.reshape([-1, 256])``) hides the consumer, so the next layer keeps
    its old input size and fails, or the fixed reshape silently changes the batch size.

    Raises:
        ConfigError: the forward fails (names the innermost layer running at the time and Paddle's first
            message line) or the output is not ``[B, num_classes]``.
    """
    from robust_paddle.errors import ConfigError

    layers = dict(net.named_sublayers())
    running: list[str] = []
    handles = []
    def enter(name: str) -> Any:
        return lambda _layer, _inputs: running.append(name)  # returns None: the inputs stay as they are

    def leave(name: str) -> Any:
        def hook(_layer: Any, _inputs: Any, _output: Any) -> None:  # must return None (else replaces the output)
            if running and running[-1] == name:
                running.pop()
        return hook

    for name, layer in layers.items():
        handles.append(layer.register_forward_pre_hook(enter(name)))
        handles.append(layer.register_forward_post_hook(leave(name)))
    hint = _HINT
    net.eval()
    try:
        with paddle.no_grad():
            out = net(paddle.to_tensor(np.ascontiguousarray(batch, dtype=np.float32)))
    except Exception as e:  # noqa: BLE001 - Paddle raises assorted error types for shape mismatches
        text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        where = (f"layer {running[-1]!r} ({type(layers[running[-1]]).__name__})" if running
                 else "the network's own forward code between its layers")
        raise ConfigError(f"{field}: cannot prune network {network!r} consistently: after pruning, {where} fails on "
                          f"a real batch ({text[:200]}); {hint}") from None
    finally:
        for h in handles:
            h.remove()
    shape = list(out.shape) if hasattr(out, "shape") else None
    if shape != [int(batch.shape[0]), int(num_classes)]:
        raise ConfigError(f"{field}: cannot prune network {network!r} consistently: after pruning, a batch of "
                          f"{batch.shape[0]} gives output shape {shape}, expected {[int(batch.shape[0]), num_classes]}; "
                          f"{hint}")


_HINT = ("PaddleSlim cannot follow a reshape/view of conv features in the model's forward, so the layer after it "
         "keeps its old size; drop the prune stage for this model or flatten with paddle.flatten / nn.Flatten")


def prune_vars_or_refuse(pruner: Any, net: paddle.nn.Layer, ratios: dict[str, float], *, field: str,
                         network: str) -> Any:
    """``pruner.prune_vars(ratios, axis=0)``; PaddleSlim's own failure on an inconsistent model (an
    AssertionError about mask lengths) becomes one ConfigError naming the parameter and its layer."""
    from robust_paddle.errors import ConfigError

    try:
        return pruner.prune_vars(ratios, axis=0)
    except Exception as e:  # noqa: BLE001 - PaddleSlim asserts (or raises assorted errors) on such graphs
        text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        found = re.search(r"var name: ([\w.]+)", text)
        names = {p.name: n for n, p in net.named_parameters()}
        where = "a layer it follows"
        if found and found.group(1) in names:
            param = names[found.group(1)]
            layer = param.rsplit(".", 1)[0]
            kind = type(dict(net.named_sublayers()).get(layer)).__name__
            where = f"parameter {param!r} of layer {layer!r} ({kind})"
        raise ConfigError(f"{field}: cannot prune network {network!r} consistently: PaddleSlim cannot shrink {where} "
                          f"with the conv filters it consumes ({text[:160]}); {_HINT}") from None


def check_prunable(net: paddle.nn.Layer, stage: PruneStage, batch: np.ndarray, *, input_shape: Sequence[int],
                   num_classes: int, field: str, network: str) -> None:
    """Trial-prune a copy of ``net`` (the stage's ratio, or 50% for ``flops_target``) and check it with
    :func:`check_pruned_forward` before anything is written; ``net`` itself is not touched.

    Raises:
        ConfigError: as :func:`check_pruned_forward`, or the network has no prunable Conv2D.
    """
    from robust_paddle.errors import ConfigError

    trial = copy.deepcopy(net)
    pruner = build_pruner(trial, stage.pruner, input_shape=input_shape)
    targets = prunable(pruner)
    if not targets:
        raise ConfigError(f"{field}: network {network!r} has no prunable Conv2D layer (filter pruning removes conv "
                          "output channels); drop the prune stage for this model")
    ratio = float(stage.ratio) if stage.ratio is not None else 0.5
    prune_vars_or_refuse(pruner, trial, align_ratios(trial, {t: ratio for t in targets}, stage.align), field=field,
                         network=network)
    check_pruned_forward(trial, batch, num_classes=num_classes, field=field, network=network)


def prune_network(net: paddle.nn.Layer, stage: PruneStage, *, input_shape: Sequence[int],
                  score: Callable[[], float] | None = None, sen_file: str | None = None,
                  field: str = "slim.stages[0]", check_batch: np.ndarray | None = None,
                  num_classes: int | None = None, network: str = "net") -> dict[str, Any]:
    """Prune ``net`` in place as ``stage`` says.

    Args:
        net: a network in eval mode or not (left in eval mode).
        stage: ``ratio`` (uniform) or ``flops_target`` (sensitivity analysis).
        input_shape: one sample's shape, e.g. (1, 8, 8).
        score: ``flops_target`` only: higher-is-better metric of the *whole* model the network belongs to
            (e.g. agreement with the unpruned predictions); called once per (layer, ratio) trial.
        sen_file: where PaddleSlim keeps the sensitivities (a pickle; reused when it exists).
        field: config field named in errors.
        check_batch: a real batch [B, *input_shape]; the pruned network must map it to [B, num_classes]
            (:func:`check_pruned_forward`) before its FLOPs are reported. None skips the check.
        num_classes, network: for the check (C; the network's name in errors).

    Returns:
        ``{"ratios": {structured param name: pruned fraction}, "params": [before, after], "flops": [before,
        after], "sensitivities": {name: {ratio: score loss}}}`` (sensitivities only for ``flops_target``).

    Raises:
        ValueError: the network has no prunable conv, or ``flops_target`` without ``score``.
    """
    names = {p.name: n for n, p in net.named_parameters()}
    filters = {p.name: int(p.shape[0]) for p in net.parameters()}
    before = (count_params(net), count_flops(net, input_shape))
    pruner = build_pruner(net, stage.pruner, input_shape=input_shape)
    targets = prunable(pruner)
    if not targets:
        raise ConfigError(f"{field}: the model has no prunable Conv2D layer (filter pruning removes conv output "
                         f"channels); drop the prune stage for this model")
    out: dict[str, Any] = {}
    if stage.ratio is not None:
        prune_vars_or_refuse(pruner, net, align_ratios(net, {t: float(stage.ratio) for t in targets}, stage.align),
                             field=field, network=network)
    else:
        if score is None:
            raise ConfigError(f"{field}.flops_target needs a score function for the sensitivity analysis")
        if sen_file is not None and os.path.isfile(sen_file):
            rewrite_sensitivity_cache(sen_file)  # PaddleSlim pickle.loads it: only plain data may reach it
        sens = pruner.sensitive(eval_func=score, sen_file=sen_file, skip_vars=[])
        chosen = search_ratios(pruner, {t: sens.get(t, {}) for t in targets}, float(stage.flops_target),
                               input_shape=input_shape, align=stage.align)
        prune_vars_or_refuse(pruner, net, chosen, field=field, network=network)
        out["sensitivities"] = {names.get(k, k): {str(r): float(v) for r, v in d.items()} for k, d in sens.items()}
    net.eval()
    if check_batch is not None:
        check_pruned_forward(net, check_batch, num_classes=int(num_classes or 0), field=field, network=network)
    after = (count_params(net), count_flops(net, input_shape))
    kept = {p.name: int(p.shape[0]) for p in net.parameters()}
    ratios = {names.get(t, t): round(1.0 - kept[t] / filters[t], 4) for t in targets}
    out.update({"ratios": ratios,
                "params": [before[0], after[0]], "flops": [before[1], after[1]]})
    logger.info("pruned %s: params %d -> %d, FLOPs %d -> %d (%.1f%% removed)", stage.pruner, before[0], after[0],
                before[1], after[1], 100.0 * (1 - after[1] / max(before[1], 1)))
    return out


def interpolate(curve: dict[float, float], ratio: float) -> float:
    """Score loss at ``ratio`` from a sensitivity curve ``{ratio: loss}`` (linear, 0 loss at ratio 0)."""
    xs = [0.0, *sorted(float(r) for r in curve)]
    ys = [0.0, *[float(curve[r]) for r in sorted(curve, key=float)]]
    return float(np.interp(ratio, xs, ys))


def search_ratios(pruner: Any, sensitivities: dict[str, dict[float, float]], target: float, *,
                  input_shape: Sequence[int], align: int | None, step: float = 0.05,
                  max_ratio: float = 0.9) -> dict[str, float]:
    """Per-layer ratios that remove at least ``target`` of the FLOPs, least sensitive layers first.

    Greedy over filter counts: starting from nothing pruned, repeatedly remove one unit of filters (``align``
    filters, else ``step`` of the layer) from the layer whose sensitivity loss at its next ratio is smallest
    (ties: the layer pruned least so far, so equally insensitive layers shrink together), until the FLOPs
    reduction reaches ``target`` (it overshoots by at most one unit of one layer). Hand-written instead of
    PaddleSlim's ``get_ratios_by_sensitivity`` because that bisection on one loss threshold overshoots when
    the curves are flat: every layer jumps to 90% at a threshold near 0 (a weak or saturated model lost 90%
    of its FLOPs for a 30% target). Each candidate is still applied and measured with PaddleSlim
    (``prune_vars`` + ``paddleslim.analysis.flops``) and restored.
    """
    net = pruner.model
    dims = {p.name: int(p.shape[0]) for p in net.parameters() if p.name in sensitivities}
    unit = {n: int(align) if align else max(1, int(round(step * d))) for n, d in dims.items()}
    kept = dict(dims)
    base = count_flops(net, input_shape)

    def ratios() -> dict[str, float]:
        return {n: 1.0 - kept[n] / dims[n] for n in dims}

    while True:
        open_layers = [n for n in dims if kept[n] - unit[n] >= 1 and 1.0 - (kept[n] - unit[n]) / dims[n] <= max_ratio]
        if not open_layers:
            logger.warning("FLOPs target %.2f not reachable with at most %.0f%% of each layer's filters pruned",
                           target, 100 * max_ratio)
            return ratios()
        pick = min(open_layers, key=lambda n: (interpolate(sensitivities[n], 1.0 - (kept[n] - unit[n]) / dims[n]),
                                               1.0 - kept[n] / dims[n], n))
        kept[pick] -= unit[pick]
        plan = pruner.prune_vars(ratios(), axis=0)
        flops = count_flops(net, input_shape)
        plan.restore(net)
        if 1.0 - flops / max(base, 1) >= target:
            return ratios()


def sensitivity_file(stage_dir: str, network: str) -> str:
    return os.path.join(stage_dir, f"sensitivities_{network}.pickle")


class _StatusFields:
    """Stands in for PaddleSlim's ``Status`` while a cache is read weights-only (a bare attribute holder)."""


def rewrite_sensitivity_cache(path: str) -> None:
    """Read PaddleSlim's sensitivity cache (a pickled ``Status``) weights-only, check it holds
    ``{param: {ratio: loss}}`` numbers, and write it again from those numbers, so the ``pickle.load`` that
    ``FilterPruner.sensitive`` runs on it sees only data this function wrote.

    Raises:
        CheckpointError: the file is unreadable, references code, or is not a sensitivity cache (names it).
    """
    import pickle

    from robust_paddle.data import safe_pickle
    from robust_paddle.errors import CheckpointError

    status_cls = import_paddleslim("prune").dygraph.prune.filter_pruner.Status
    data = safe_pickle.safe_load(path, extra={("paddleslim.dygraph.prune.filter_pruner", "Status"): _StatusFields})
    fields = getattr(data, "__dict__", {})
    sens, acc = fields.get("sensitivies"), fields.get("accumulates", {})

    def curves(d: Any) -> bool:
        return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, dict) and all(
            isinstance(r, (float, np.floating)) and isinstance(x, (int, float, np.number)) for r, x in v.items()) for k, v in d.items())

    if not isinstance(data, _StatusFields) or not curves(sens) or not isinstance(acc, dict):
        raise CheckpointError(f"{path} is not a PaddleSlim sensitivity cache; delete it to recompute the "
                              "sensitivities")
    status = status_cls()
    status.sensitivies = {k: {float(r): float(x) for r, x in v.items()} for k, v in sens.items()}
    status.accumulates = {}  # only consulted mid-layer; recomputing that layer is safe
    status.is_ckp = bool(fields.get("is_ckp", True))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        pickle.dump(status, fh)
    os.replace(tmp, path)
