"""Sample identity in the outputs: which row of the user's source a training sample is.

Every per-sample output of a run names its samples the same way (see ``ArrayDataset``):

* ``index`` - the position in the run's training split (the order of ``train_labels.npy``, ``oof_probs.npy``
  and the loaders); the split holds out validation/test samples, so it is NOT the row of the user's file;
* ``source_row`` - the 0-based row of the sample in the source the user gave: the row of ``x``/``y`` of an
  npz, the entry of a file list (blank lines skipped), the position in the sorted image-folder scan, the row
  of a built-in dataset's train split;
* ``path`` - the image file, for path-backed sources (``file_list``, ``image_folder``);
* ``id`` - the source's own id column when it has one (``ids`` of an npz).

``train_labels.npy`` (written by every training run) is a structured array with one record per ``index``:
fields ``source_row``, ``label`` (the labels training used, noisy as given or injected), ``clean_label``
when the clean labels are known, ``id`` and ``path`` when the source has them. It loads without pickle:
``np.load("train_labels.npy")["source_row"]``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from robust_paddle.errors import DataError
from robust_paddle.ops import atomic_write

TRAIN_LABELS_NAME = "train_labels.npy"


def identity_columns(ds: Any) -> dict[str, Any]:
    """``{"source_row": [N] int64, "path": N str (path-backed only), "id": [N] (when the source has ids)}``
    of an ``ArrayDataset``, in dataset order."""
    cols: dict[str, Any] = {"source_row": np.asarray(ds.source_rows, dtype=np.int64)}
    if getattr(ds, "paths", None) is not None:
        cols["path"] = list(ds.paths)
    if getattr(ds, "ids", None) is not None:
        cols["id"] = np.asarray(ds.ids)
    return cols


def train_labels_table(ds: Any, *, labels: np.ndarray | None = None) -> np.ndarray:
    """The structured ``train_labels.npy`` array of ``ds`` (see the module docstring).

    Args:
        ds: the training ``ArrayDataset``.
        labels: [N] labels to record instead of ``ds.labels`` (e.g. the labels before a method relabelled).
    """
    n = len(ds)
    label = np.asarray(ds.labels if labels is None else labels, dtype=np.int64)
    if label.shape != (n,):
        raise DataError(f"labels must have shape ({n},), got {label.shape}")
    cols = identity_columns(ds)
    fields: list[tuple[str, Any]] = [("source_row", np.int64), ("label", np.int64)]
    values: dict[str, Any] = {"source_row": cols["source_row"], "label": label}
    if getattr(ds, "clean_labels", None) is not None:
        fields.append(("clean_label", np.int64))
        values["clean_label"] = np.asarray(ds.clean_labels, dtype=np.int64)
    if "id" in cols:
        ids = cols["id"]
        fields.append(("id", ids.dtype if ids.dtype.kind in "iu" else f"U{max(1, max((len(str(v)) for v in ids), default=1))}"))
        values["id"] = ids
    if "path" in cols:
        fields.append(("path", f"U{max(1, max((len(p) for p in cols['path']), default=1))}"))
        values["path"] = cols["path"]
    out = np.empty(n, dtype=fields)
    for name, _ in fields:
        out[name] = values[name]
    return out


def save_train_labels(ds: Any, out_dir: str, *, labels: np.ndarray | None = None) -> str:
    """Write ``<out_dir>/train_labels.npy`` atomically; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, TRAIN_LABELS_NAME)
    with atomic_write(path, "wb") as fh:
        np.save(fh, train_labels_table(ds, labels=labels), allow_pickle=False)
    return path
