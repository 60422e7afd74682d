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

import logging
import os
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


def prune_network(net: paddle.nn.Layer, stage: PruneStage, *, input_shape: Sequence[int],
                  score: Callable[[], float] | None = None, sen_file: str | None = None,
                  field: str = "slim.stages[0]") -> dict[str, Any]:
    """Prune ``net`` in place as ``stage`` says.

    Args:
        net: a network in eval mode or not (left in eval mode).
        stage: ``ratio`` (uniform) or ``flops_target`` (sensitivity analysis).
        input_shape: one sample's shape, e.g. (1, 8, 8).
        score: ``flops_target`` only: higher-is-better metric of the *whole* model the network belongs to
            (e.g. agreement with the unpruned predictions); called once per (layer, ratio) trial.
        sen_file: where PaddleSlim keeps the sensitivities (a pickle; reused when it exists).
        field: config field named in errors.

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
        pruner.prune_vars(align_ratios(net, {t: float(stage.ratio) for t in targets}, stage.align), axis=0)
    else:
        if score is None:
            raise ConfigError(f"{field}.flops_target needs a score function for the sensitivity analysis")
        if sen_file is not None and os.path.isfile(sen_file):
            rewrite_sensitivity_cache(sen_file)  # PaddleSlim pickle.loads it: only plain data may reach it
        sens = pruner.sensitive(eval_func=score, sen_file=sen_file, skip_vars=[])
        chosen = search_ratios(pruner, {t: sens.get(t, {}) for t in targets}, float(stage.flops_target),
                               input_shape=input_shape, align=stage.align)
        pruner.prune_vars(chosen, axis=0)
        out["sensitivities"] = {names.get(k, k): {str(r): float(v) for r, v in d.items()} for k, d in sens.items()}
    net.eval()
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
