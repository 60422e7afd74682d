"""Where training labels come from besides the data file: several annotators' answers and reviewed corrections.

Applied to the train source right after it is read, before splits and noise (``build_data``), in this order:

1. ``data.annotations`` (CSV / TSV / JSONL: sample, annotator, label) -> the consensus of
   :func:`robust_paddle.quality.annotators.aggregate` (``data.annotations_method``) replaces the labels of the
   samples that have answers; samples without answers keep the file's label.
2. ``data.labels_override`` (CSV / TSV / JSONL: sample, label; what ``robust-paddle apply-review`` writes)
   -> each listed sample takes the reviewed label. Reviewed labels win over the consensus.

Samples are named the same way in every such file (:func:`sample_keys`): by the source's id column when it has
one, else by the image path (as written in the file list, relative to ``data.root``, or the full path), else by
the row number in the source (``source_row``, 0-based).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from robust_paddle.data.table import read_table
from robust_paddle.data.textfile import where
from robust_paddle.errors import ConfigError, DataError

__all__ = ["LabelSources", "apply_label_sources", "read_label_override", "sample_keys"]

logger = logging.getLogger(__name__)


@dataclass
class LabelSources:
    """What the label sources did to the train source (all arrays over source rows).

    Attributes:
        file_labels: [N] the labels as read from the data file.
        consensus: the :class:`~robust_paddle.quality.annotators.Consensus`, or None.
        overridden: [N] bool, True where ``data.labels_override`` set the label.
        changed: number of samples whose training label differs from the file's label.
        sample_names: [N] how label files name each source row (:func:`sample_keys`).
    """

    file_labels: np.ndarray
    sample_names: list[str] = dataclasses.field(default_factory=list)
    consensus: Any = None
    overridden: np.ndarray | None = None
    changed: int = 0


def sample_keys(split: Any, *, root: str = "") -> dict[str, int]:
    """Sample name -> source row: the id column, else paths (full and relative to ``root``), else row numbers.

    Raises:
        DataError: the id column has duplicates (a name must point at one sample).
    """
    n = len(split.labels)
    if getattr(split, "ids", None) is not None:
        keys: dict[str, int] = {}
        for i, v in enumerate(np.asarray(split.ids).tolist()):
            k = str(v).strip()
            if k in keys:
                raise DataError(f"the source's id column holds {k!r} twice (rows {keys[k]} and {i}); ids must be "
                                "unique to name samples in annotation and review files")
            keys[k] = i
        return keys
    if isinstance(split.data, list):
        keys = {}
        for i, p in enumerate(split.data):
            keys[p] = i
            if root:
                keys.setdefault(os.path.relpath(p, root), i)
        return keys
    return {str(i): i for i in range(n)}


def read_label_override(path: str, *, keys: dict[str, int], num_classes: int, class_names: list[str],
                        what: str = "data.labels_override") -> dict[int, int]:
    """``{source_row: label}`` from a CSV / TSV / JSONL file with ``sample`` and ``label`` columns.

    Raises:
        DataError: unknown sample, label outside the classes, one sample listed twice with different labels;
            each names ``file:line``.
    """
    from robust_paddle.quality.annotators import SAMPLE_COLUMNS, parse_label

    rows = read_table(path, what=what)
    if not rows:
        return {}
    col = next((c for c in SAMPLE_COLUMNS if c in rows[0].values), None)
    if col is None or "label" not in rows[0].values:
        raise DataError(f"{what}: {where(path, rows[0].line)}: needs a sample column ({' / '.join(SAMPLE_COLUMNS)}) "
                        f"and a label column; columns: {', '.join(rows[0].values)}")
    index = {str(n): i for i, n in enumerate(class_names)}
    out: dict[int, int] = {}
    first: dict[int, int] = {}
    for r in rows:
        at = f"{what}: {where(path, r.line)}"
        key = str(r.get(col, "")).strip()
        if key not in keys:
            raise DataError(f"{at}: sample {key!r} is not in this dataset (a file from another dataset?)")
        s = keys[key]
        lab = parse_label(r.get("label"), class_index=index, num_classes=num_classes, at=at)
        if s in out and out[s] != lab:
            raise DataError(f"{at}: sample {key!r} is set to {lab} here but to {out[s]} on line {first[s]}")
        out[s], first[s] = lab, first.get(s, r.line)
    return out


def apply_label_sources(src: Any, d: Any, *, seed: int) -> LabelSources | None:
    """Apply ``data.annotations`` and ``data.labels_override`` to ``src.train`` in place (see the module doc).

    Args:
        src: the :class:`~robust_paddle.data.sources.Source` just read.
        d: ``cfg.data``.
        seed: run seed (randomised aggregation methods).

    Returns:
        :class:`LabelSources`, or None when neither key is set.

    Raises:
        ConfigError: annotations together with injected noise (``data.noise.kind`` other than none).
        DataError: see :func:`read_label_override` and
            :func:`robust_paddle.quality.annotators.read_annotations`.
    """
    if not (d.annotations or d.labels_override):
        return None
    if d.annotations and d.noise.kind != "none":
        raise ConfigError(f"data.annotations: labels come from annotators; data.noise.kind={d.noise.kind!r} would "
                          "inject noise on top of the consensus. Set data.noise.kind: none")
    split = src.train
    keys = sample_keys(split, root=d.root)
    num_classes = len(src.class_names)
    file_labels = np.asarray(split.labels, dtype=np.int64).copy()
    labels = file_labels.copy()
    names = [""] * len(labels)
    for key, row in keys.items():  # the first key of a row: its id, full path or row number
        names[row] = names[row] or key
    out = LabelSources(file_labels=file_labels, sample_names=names)
    if d.annotations:
        from robust_paddle.quality.annotators import aggregate, read_annotations

        ann = read_annotations(d.annotations, sample_index=keys, num_classes=num_classes,
                               class_names=src.class_names)
        cons = aggregate(ann, num_samples=len(labels), num_classes=num_classes, method=d.annotations_method,
                         seed=seed)
        answered = cons.labels >= 0
        labels[answered] = cons.labels[answered]
        out.consensus = cons
        logger.info("annotations: %d answers from %d annotators on %d of %d samples; %s consensus differs from the "
                    "file's label on %d", ann.sample.size, len(ann.annotator_names), int(answered.sum()),
                    len(labels), d.annotations_method, int((labels != file_labels).sum()))
    if d.labels_override:
        override = read_label_override(d.labels_override, keys=keys, num_classes=num_classes,
                                       class_names=list(src.class_names))
        rows = np.fromiter(override.keys(), dtype=np.int64, count=len(override))
        out.overridden = np.zeros(len(labels), dtype=bool)
        out.overridden[rows] = True
        before = labels[rows].copy()
        labels[rows] = np.fromiter(override.values(), dtype=np.int64, count=len(override))
        logger.info("labels_override: %d reviewed labels, %d changed", len(override), int((labels[rows] != before).sum()))
    out.changed = int((labels != file_labels).sum())
    split.labels = labels
    return out
