"""PNG figures of the label-issue report: noise-matrix heatmap and per-sample loss histogram with the GMM.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas directly (no ``pyplot``), so nothing
touches matplotlib's global backend or figure registry and the functions are safe in servers and tests.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from robust_paddle.errors import DataError, MissingDependencyError
from robust_paddle.ops import atomic_write

logger = logging.getLogger(__name__)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a core dependency
        raise MissingDependencyError("the label-issue report plots need matplotlib: pip install matplotlib") from e
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", bbox_inches="tight")
    return path


def plot_noise_matrix(matrix: np.ndarray, path: str, *, class_names: Sequence[str] | None = None,
                      title: str = "Estimated noise transition P(given | true)") -> str:
    """Heatmap of a transition matrix ``T[true, given]`` [C, C] with per-cell values; returns ``path``."""
    t = np.asarray(matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise DataError(f"matrix must be square [C, C], got shape {t.shape}")
    c = t.shape[0]
    names = [str(n) for n in class_names] if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise DataError(f"class_names has {len(names)} entries but the matrix has {c} classes")
    side = min(max(4.0, 0.55 * c + 2.0), 24.0)
    fig, ax = _figure(side + 1.0, side)
    im = ax.imshow(t, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(names, rotation=45 if max(map(len, names)) > 2 else 0, ha="right" if c > 1 else "center")
    ax.set_yticklabels(names)
    ax.set_xlabel("given label")
    ax.set_ylabel("true label (estimated)")
    ax.set_title(title)
    if c <= 20:  # cell values stay readable up to ~20 classes
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{t[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if t[i, j] > 0.6 else "black")
    return _save(fig, path)


def _gmm_curves(gmm: Any, lo: float, hi: float, xs: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Component densities of a 1-D GaussianMixture fitted on min-max normalised losses, mapped back to
    the raw loss axis (density scale 1 / (hi - lo))."""
    span = hi - lo if hi > lo else 1.0
    u = (xs - lo) / span
    means = np.asarray(gmm.means_).reshape(-1)
    variances = np.asarray(gmm.covariances_).reshape(-1)
    weights = np.asarray(gmm.weights_).reshape(-1)
    clean = int(np.argmin(means))
    out = []
    for k in np.argsort(means):
        dens = weights[k] * np.exp(-0.5 * (u - means[k]) ** 2 / variances[k]) / np.sqrt(2 * np.pi * variances[k])
        out.append(("GMM clean component" if k == clean else "GMM noisy component", dens / span))
    return out


def plot_loss_histogram(losses: np.ndarray, path: str, *, gmm: Any = None, noisy_mask: np.ndarray | None = None,
                        normalized_fit: bool = True, bins: int = 50) -> str:
    """Per-sample loss histogram (density) with the fitted mixture's component densities.

    Args:
        losses: [N] per-sample losses.
        path: PNG to write.
        gmm: fitted 1-D ``sklearn.mixture.GaussianMixture`` (or None for the histogram alone).
        noisy_mask: [N] bool, True where the label is known to be wrong; draws clean/noisy histograms.
        normalized_fit: the mixture was fitted on min-max normalised losses (``correction.fit_loss_gmm``).
        bins: histogram bins.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise DataError("losses must be a non-empty array of finite values")
    fig, ax = _figure(7.0, 4.5)
    edges = np.linspace(x.min(), x.max() if x.max() > x.min() else x.min() + 1.0, bins + 1)
    if noisy_mask is not None:
        m = np.asarray(noisy_mask, dtype=bool).reshape(-1)
        if m.shape != x.shape:
            raise DataError(f"noisy_mask has shape {m.shape} but losses has {x.shape}")
        # weights so the two stacked parts together integrate to 1 like the mixture's densities
        w = np.full(x.shape, 1.0 / (x.size * (edges[1] - edges[0])))
        ax.hist([x[~m], x[m]], bins=edges, weights=[w[~m], w[m]], stacked=True, alpha=0.6,
                label=[f"correct labels ({int((~m).sum())})", f"wrong labels ({int(m.sum())})"],
                color=["tab:green", "tab:red"])
    else:
        ax.hist(x, bins=edges, density=True, alpha=0.6, color="tab:gray", label=f"samples ({x.size})")
    if gmm is not None:
        xs = np.linspace(edges[0], edges[-1], 400)
        lo, hi = (float(x.min()), float(x.max())) if normalized_fit else (0.0, 1.0)
        for (name, dens), color in zip(_gmm_curves(gmm, lo, hi, xs), ("tab:blue", "tab:orange")):
            ax.plot(xs, dens, color=color, lw=2, label=name)
    ax.set_xlabel("per-sample cross-entropy loss (given label)")
    ax.set_ylabel("density")
    ax.set_title("Per-sample training loss")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)
