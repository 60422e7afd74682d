"""Before/after measurements of a saved inference model and the per-stage table.

Everything is measured on the saved model in Paddle Inference on the CPU (the deployed artefact), with
:class:`~robust_paddle.deploy.predictor.PaddlePredictor`:

* ``params`` (trainable parameters) and ``flops`` (per sample, ``paddleslim.analysis.flops``) of the network
  the model was saved from; quantisation keeps both (the ops run in int8 instead);
* ``params_bytes`` / ``program_bytes``: sizes of ``inference.pdiparams`` (the weights: int8 after QAT/PTQ)
  and of the program file;
* ``latency_ms`` / ``latency_cpu_ms``: median wall-clock / process-CPU time of one predictor call per batch
  size (host array in, host array out);
* ``test_acc`` against the test labels (``test_acc_clean`` too when the test split carries noisy labels and
  clean ones differ); ``train_acc_clean``: predictions on the noisy-label training images against their true
  labels when known, ``train_acc_noisy`` against the labels trained on (how much noise the model fits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_paddle.compress.backend import file_sizes
from robust_paddle.deploy.predictor import PaddlePredictor

logger = logging.getLogger(__name__)


def predict_loader(predictor: PaddlePredictor, loader: Any) -> tuple[np.ndarray, np.ndarray]:
    """Argmax predictions ``[N]`` and dataset indices ``[N]`` of every batch ``(x, y, idx)`` of ``loader``."""
    preds, idxs = [], []
    for batch in loader:
        preds.append(predictor(np.asarray(batch[0].numpy(), dtype=np.float32)).argmax(1))
        idxs.append(np.asarray(batch[2].numpy()))
    return np.concatenate(preds), np.concatenate(idxs)


def latency_batch(loader: Any, size: int) -> np.ndarray:
    """``size`` real samples from ``loader`` (repeated when the split is smaller), ``[size, ...]`` float32."""
    xs, n = [], 0
    for batch in loader:
        xs.append(np.asarray(batch[0].numpy(), dtype=np.float32))
        n += len(xs[-1])
        if n >= size:
            break
    x = np.concatenate(xs)
    return np.ascontiguousarray(np.resize(x, (size, *x.shape[1:])), dtype=np.float32)


def time_predictor(predictor: PaddlePredictor, x: np.ndarray, *, iters: int, warmup: int = 5) -> tuple[float, float]:
    """Median wall-clock and process-CPU milliseconds of ``iters`` calls after ``warmup`` untimed ones (CPU time
    is less disturbed by other processes on a shared machine)."""
    for _ in range(warmup):
        predictor(x)
    wall, cpu = [], []
    for _ in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        predictor(x)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall) * 1000.0), float(np.median(cpu) * 1000.0)


def split_accuracy(preds: np.ndarray, idx: np.ndarray, dataset: Any) -> dict[str, float]:
    """Accuracy of ``preds`` vs the split's labels, and vs its clean labels when known (and different)."""
    labels = np.asarray(dataset.labels)[idx]
    out = {"acc": float(np.mean(preds == labels))}
    clean = getattr(dataset, "clean_labels", None)
    if clean is not None:
        out["acc_clean"] = float(np.mean(preds == np.asarray(clean)[idx]))
    return out


def measure_model(prefix: str, *, int8: bool, params: int, flops: int, loaders: dict[str, Any],
                  batch_sizes: Sequence[int], iters: int, threads: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Measure one saved model (see the module docstring).

    Args:
        prefix: the model path without extension.
        int8: the program is quantised (enables oneDNN int8 kernels).
        params, flops: of the network it was saved from (see ``backend.count_params`` / ``count_flops``).
        loaders: the run's ``{"test", "train_eval", ...}`` loaders (batches ``(x, y, idx)``).
        batch_sizes: latency batch sizes; iters: timed calls each; threads: predictor CPU threads.

    Returns:
        ``(stats, predictions)``: stats as described above; predictions ``{"test": [N_test]}`` argmax,
        ordered by dataset index, for agreement checks between models.
    """
    predictor = PaddlePredictor(prefix, int8=int8, threads=threads)
    stats: dict[str, Any] = {"params": int(params), "flops": int(flops), **file_sizes(prefix), "int8": bool(int8),
                             "int8_kernels": predictor.int8_kernels}
    predictions: dict[str, np.ndarray] = {}
    for split in ("test", "train_eval"):
        loader = loaders.get(split)
        if loader is None:
            continue
        preds, idx = predict_loader(predictor, loader)
        acc = split_accuracy(preds, idx, loader.dataset)
        predictions[split] = preds[np.argsort(idx)]
        if split == "test":
            stats["test_acc"] = acc["acc"]
            if "acc_clean" in acc and not np.array_equal(loader.dataset.clean_labels, loader.dataset.labels):
                stats["test_acc_clean"] = acc["acc_clean"]
        else:
            stats["train_acc_noisy"] = acc["acc"]
            if "acc_clean" in acc:
                stats["train_acc_clean"] = acc["acc_clean"]
    source = loaders.get("test") or loaders["train_eval"]
    timings = {str(b): time_predictor(predictor, latency_batch(source, int(b)), iters=iters) for b in batch_sizes}
    stats["latency_ms"] = {b: t[0] for b, t in timings.items()}
    stats["latency_cpu_ms"] = {b: t[1] for b, t in timings.items()}
    return stats, predictions


def agreement(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Fraction of samples where two models predict the same class (None when either is missing)."""
    if a is None or b is None or len(a) != len(b) or len(a) == 0:
        return None
    return float(np.mean(a == b))


# ------------------------------------------------------------------------------------------------- table
def _num(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}"


def _kib(v: Any) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KiB"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _change(before: Any, after: Any, kind: str) -> str:
    if before is None or after is None:
        return ""
    if kind == "pt":
        return f"{100 * (after - before):+.2f} pt"
    if not before:
        return ""
    return f"{after / before:.2f}x"


def table_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(metric, before, after, change)`` rows of one stage."""
    rows = [("params", _num(before.get("params")), _num(after.get("params")),
             _change(before.get("params"), after.get("params"), "x")),
            ("FLOPs", _num(before.get("flops")), _num(after.get("flops")),
             _change(before.get("flops"), after.get("flops"), "x")),
            ("weights file", _kib(before.get("params_bytes")), _kib(after.get("params_bytes")),
             _change(before.get("params_bytes"), after.get("params_bytes"), "x")),
            ("program file", _kib(before.get("program_bytes")), _kib(after.get("program_bytes")),
             _change(before.get("program_bytes"), after.get("program_bytes"), "x"))]
    for key, label in (("latency_ms", "latency b{} (ms)"), ("latency_cpu_ms", "CPU time b{} (ms)")):
        for b in after.get(key, {}):
            lb, la = before.get(key, {}).get(b), after[key][b]
            rows.append((label.format(b), _ms(lb), _ms(la), _change(lb, la, "x")))
    for key, label in (("test_acc", "test acc (%)"), ("test_acc_clean", "test acc vs clean (%)"),
                       ("train_acc_clean", "train acc vs clean labels (%)"),
                       ("train_acc_noisy", "train acc vs noisy labels (%)")):
        if key in after or key in before:
            rows.append((label, _pct(before.get(key)), _pct(after.get(key)),
                         _change(before.get(key), after.get(key), "pt")))
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The printed summary: one block per stage, before -> after."""
    lines = []
    for st in report["stages"]:
        verdict = "passed" if st["passed"] else "FAILED"
        lines.append(f"stage {st['index']}: {st['summary']}  [{verdict}: {st['check_summary']}]")
        rows = table_rows(st["before"], st["after"])
        w = max(len(r[0]) for r in rows)
        lines.append(f"  {'':<{w}}  {'before':>14}  {'after':>14}  {'change':>10}")
        lines += [f"  {m:<{w}}  {b:>14}  {a:>14}  {c:>10}" for m, b, a, c in rows]
        lines.append("")
    return "\n".join(lines).rstrip()
