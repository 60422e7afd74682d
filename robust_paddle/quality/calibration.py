"""Calibration: reliability diagram and expected calibration error (ECE); confusion-matrix image.

Following Guo et al. 2017, "On Calibration of Modern Neural Networks" (https://arxiv.org/abs/1706.04599):
predictions are grouped by their confidence ``max_k p_k`` into ``M`` equal-width bins
``B_m = ((m-1)/M, m/M]``; ``acc(B_m)`` is the fraction of correct predictions in the bin and ``conf(B_m)``
their mean confidence; ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|``.

The binning is hand-written (a few lines of NumPy) rather than taken from
``sklearn.calibration.calibration_curve`` because that function drops empty bins and does not return the
bin counts, both of which the diagram and ECE need. ``CalibrationHook`` writes ``reliability.png`` and
``calibration.json`` into the run folder at the end of training and adds ``<split>/ece`` to metrics.json.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.engine.hooks import Hook, write_json
from robust_paddle.errors import ConfigError, MissingDependencyError
from robust_paddle.ops import softmax
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


def _check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ConfigError(f"probs must have shape [N, C] with N >= 1, got {list(probs.shape)}")
    if labels.shape[0] != probs.shape[0]:
        raise ConfigError(f"labels has {labels.shape[0]} entries but probs has {probs.shape[0]} rows")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or not np.allclose(probs.sum(1), 1.0, atol=1e-3):
        raise ConfigError("probs must be finite, non-negative rows summing to 1 (apply softmax to logits first)")
    return probs, labels.astype(np.int64)


def reliability_curve(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 15) -> dict[str, Any]:
    """Top-label reliability bins.

    Args:
        probs: [N, C] predicted class probabilities (rows sum to 1).
        labels: [N] int true labels.
        n_bins: M equal-width confidence bins over (0, 1].

    Returns:
        ``{"edges": [M+1], "confidence": [M] mean confidence (nan when empty), "accuracy": [M]
        (nan when empty), "counts": [M] int, "ece": float}``.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(f"n_bins must be an int >= 1, got {n_bins!r}")
    probs, labels = _check_probs(probs, labels)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin m holds confidences in (edges[m], edges[m+1]] (the first bin also takes 0)
    bins = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        mean_acc = np.where(counts > 0, acc_sum / counts, np.nan)
    ece = float(np.abs(acc_sum - conf_sum).sum() / labels.shape[0])
    return {"edges": edges, "confidence": mean_conf, "accuracy": mean_acc,
            "counts": counts, "ece": ece}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE of top-label confidences (Guo et al. 2017, https://arxiv.org/abs/1706.04599).

    Args:
        probs: [N, C] probabilities. labels: [N] int. n_bins: M equal-width bins.
    """
    return reliability_curve(probs, labels, n_bins=n_bins)["ece"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a core dependency
        raise MissingDependencyError("plots need matplotlib: pip install matplotlib") from e
    return plt


def plot_reliability(curve: dict[str, Any], path: str, *, title: str = "Reliability diagram") -> str:
    """Draw a reliability diagram (accuracy per confidence bin vs the diagonal) to ``path`` (PNG)."""
    plt = _pyplot()
    edges = np.asarray(curve["edges"])
    width = np.diff(edges)
    acc = np.nan_to_num(np.asarray(curve["accuracy"], dtype=np.float64))
    conf = np.asarray(curve["confidence"], dtype=np.float64)
    counts = np.asarray(curve["counts"])
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="black", color="#4c72b0", label="accuracy")
    gap = np.where(counts > 0, np.nan_to_num(conf) - acc, 0.0)
    ax.bar(edges[:-1], gap, bottom=acc, width=width, align="edge", edgecolor="#c44e52", color="#c44e52",
           alpha=0.35, label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title} (ECE = {curve['ece']:.4f})")
    ax.legend(loc="upper left", fontsize=8)
    axh.bar(edges[:-1], counts, width=width, align="edge", edgecolor="black", color="#999999")
    axh.set_xlabel("confidence")
    axh.set_ylabel("samples")
    axh.set_xlim(0, 1)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_image(confusion: np.ndarray, *, class_names: list[str] | None = None,
                    title: str = "Confusion matrix") -> np.ndarray:
    """Render a confusion matrix (rows = true class, columns = predicted) as an [H, W, 3] uint8 image."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ConfigError(f"confusion must be a square [C, C] matrix, got shape {list(cm.shape)}")
    c = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    size = min(12.0, 2.0 + 0.45 * c)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    if c <= 30:
        ax.set_xticks(range(c), labels=names, rotation=90, fontsize=7)
        ax.set_yticks(range(c), labels=names, fontsize=7)
        for i in range(c):
            for j in range(c):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


@HOOKS.register("calibration")
class CalibrationHook(Hook):
    """At the end of training, writes ``reliability.png`` and ``calibration.json`` for ``split``.

    Evaluation weights are used (EMA weights when ``train.ema.eval``), and ``<split>/ece`` is added to
    the last history row, so metrics.json and VisualDL carry it.

    Args:
        split: ``"test"`` (default) or ``"val"``; falls back to the other when the run lacks it.
        n_bins: confidence bins.
    """

    priority = 70  # after SWA (40) has set the final weights, before VisualDL (80) and metrics.json (90)
    name = "calibration"

    def __init__(self, *, split: str = "test", n_bins: int = 15) -> None:
        if split not in ("test", "val"):
            raise ConfigError(f"calibration split must be 'test' or 'val', got {split!r}")
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ConfigError(f"calibration n_bins must be an int >= 1, got {n_bins!r}")
        self.split, self.n_bins = split, n_bins

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.is_main:
            return
        split = self.split
        if trainer.loaders.get(split) is None:
            split = "val" if split == "test" else "test"
            if trainer.loaders.get(split) is None:
                logger.warning("calibration: the run has no val or test split; no reliability diagram written")
                return
        loader = trainer.loaders[split]
        with trainer.evaluation_weights():
            logits, idx = trainer.predict_logits(loader)
        curve = reliability_curve(softmax(logits), loader.dataset.labels[idx], n_bins=self.n_bins)
        path = plot_reliability(curve, os.path.join(trainer.output_dir, "reliability.png"),
                                title=f"Reliability ({split})")
        write_json(os.path.join(trainer.output_dir, "calibration.json"), {"split": split, "n_bins": self.n_bins, **curve})
        if trainer.history:
            trainer.history[-1][f"{split}/ece"] = curve["ece"]
        logger.info("%s ECE %.4f; reliability diagram %s", split, curve["ece"], path)
