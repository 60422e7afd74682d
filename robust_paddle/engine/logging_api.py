"""What methods and hooks report through the trainer: scalars, histograms and artifact files.

A method never opens files or edits the trainer's per-epoch dicts itself; it calls ``trainer.log_scalar``,
``trainer.log_histogram`` and ``trainer.save_artifact`` (mixed into :class:`~robust_paddle.engine.trainer.Trainer`).
The scalars land in this epoch's row of ``metrics.json`` / VisualDL, the histograms in VisualDL, artifacts in
the run folder (written atomically, by the main process only).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from robust_paddle.ops import atomic_write


class TrainerLog:
    """The logging API; the host class provides ``epoch_scalars``, ``epoch_histograms``, ``output_dir`` and
    ``is_main``."""

    epoch_scalars: dict[str, float]
    epoch_histograms: dict[str, np.ndarray]
    output_dir: str
    is_main: bool

    def log_scalar(self, name: str, value: float) -> None:
        """Record ``name`` (e.g. ``"noise/rate_gmm"``) for this epoch (a float; NaN is kept and written as null)."""
        self.epoch_scalars[name] = float(value)

    def log_histogram(self, name: str, values: Any) -> None:
        """Record a [N] array (e.g. per-sample losses) for this epoch's VisualDL histogram ``name``."""
        self.epoch_histograms[name] = np.asarray(values, dtype=np.float32).reshape(-1)

    def save_artifact(self, name: str, data: Any) -> str | None:
        """Write ``data`` into the run folder as ``name``: a dict/list as JSON (``.json``), an array as ``.npy``,
        a string as text. Main process only (returns None elsewhere); atomic. Returns the path."""
        if not self.is_main or not self.output_dir:
            return None
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, name)
        if name.endswith(".npy"):
            with atomic_write(path, "wb") as fh:
                np.save(fh, np.asarray(data), allow_pickle=False)
        elif name.endswith(".json"):
            with atomic_write(path) as fh:
                json.dump(data, fh, indent=2)
        else:
            with atomic_write(path) as fh:
                fh.write(str(data))
        return path
