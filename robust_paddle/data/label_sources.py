"""Where training labels come from besides the data file: several annotators' answers and reviewed corrections.

Applied to the train source after the validation/test splits are drawn (so they stay stratified on the file's
labels, and fixing labels in rounds keeps every run's split the same) and before noise (``build_data``), in
this order:

1. ``data.annotations`` (CSV / TSV / JSONL: sample, annotator, label) -> the consensus of
   :func:`robust_paddle.quality.annotators.aggregate` (``data.annotations_method``) replaces the labels of the
   samples that have answers; samples without answers keep the file's label.
2. ``data.labels_override`` (CSV / TSV / JSONL: sample, label; what ``robust-paddle apply-review`` writes)
   -> each listed sample takes the reviewed label, after any injected noise (a review of a run with injected
   noise corrects the labels that run trained on). Reviewed labels win over the consensus.

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

__all__ = ["LabelSources", "apply_label_override", "apply_label_sources", "read_label_override", "sample_keys"]

logger = logging.getLogger(__name__)


@dataclass
class LabelSources:
    """What the label sources did to the train source (all arrays over source rows).

    Attributes (arrays indexed by source row, like ``ArrayDataset.source_rows``):
        file_labels: [N] the labels as read from the data file (-1 for a row left out as unreadable).
        consensus: the :class:`~robust_paddle.quality.annotators.Consensus`, or None.
        overridden: [N] bool, True where ``data.labels_override`` set the label.
        changed: number of training labels the consensus and the reviewed labels changed (each against the labels
            it replaced: the file's for the consensus, the possibly noise-injected ones for the review).
        sample_names: [N] how label files name each source row (:func:`sample_keys`).
    """

    file_labels: np.ndarray
    sample_names: list[str] = dataclasses.field(default_factory=list)
    consensus: Any = None
    overridden: np.ndarray | None = None
    changed: int = 0


def sample_keys(split: Any, *, root: str = "") -> dict[str, int]:
    """Sample name -> position in ``split``: the id column, else paths (full and relative to ``root``), else the
    row numbers of the source.

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
    rows = getattr(split, "rows", None)  # source rows when files were left out (data.on_bad_sample: skip)
    return {str(int(r)): i for i, r in enumerate(rows)} if rows is not None else {str(i): i for i in range(n)}


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
    """Apply ``data.annotations`` to ``src.train`` in place (the consensus replaces the file's labels of the
    answered samples) and prepare :func:`apply_label_override` (see the module docstring).

    Args:
        src: the :class:`~robust_paddle.data.sources.Source`, its splits drawn.
        d: ``cfg.data``.
        seed: run seed (randomised aggregation methods).

    Returns:
        :class:`LabelSources` (arrays still by split position until :func:`apply_label_override`), or None when
        neither ``data.annotations`` nor ``data.labels_override`` is set.

    Raises:
        ConfigError: annotations together with injected noise (``data.noise.kind`` other than none).
        DataError: see :func:`robust_paddle.quality.annotators.read_annotations`.
    """
    if not (d.annotations or d.labels_override):
        return None
    if d.annotations and d.noise.kind != "none":
        raise ConfigError(f"data.annotations: labels come from annotators; data.noise.kind={d.noise.kind!r} would "
                          "inject noise on top of the consensus. Set data.noise.kind: none")
    split = src.train
    keys = sample_keys(split, root=d.root)
    file_labels = np.asarray(split.labels, dtype=np.int64).copy()
    names = [""] * len(file_labels)
    for key, row in keys.items():  # the first key of a row: its id, full path or row number
        names[row] = names[row] or key
    out = LabelSources(file_labels=file_labels, sample_names=names)
    if d.annotations:
        from robust_paddle.quality.annotators import aggregate, read_annotations

        num_classes = len(src.class_names)
        ann = read_annotations(d.annotations, sample_index=keys, num_classes=num_classes,
                               class_names=src.class_names)
        cons = aggregate(ann, num_samples=len(file_labels), num_classes=num_classes, method=d.annotations_method,
                         seed=seed)
        answered = cons.labels >= 0
        labels = file_labels.copy()
        labels[answered] = cons.labels[answered]
        out.consensus = cons
        out.changed = int((labels != file_labels).sum())
        logger.info("annotations: %d answers from %d annotators on %d of %d samples; %s consensus differs from the "
                    "file's label on %d", ann.sample.size, len(ann.annotator_names), int(answered.sum()),
                    len(labels), d.annotations_method, out.changed)
        split.labels = labels
    return out


def apply_label_override(labels: np.ndarray, src: Any, d: Any, ls: LabelSources | None
                         ) -> tuple[np.ndarray, LabelSources | None]:
    """The training labels ``labels`` [N] (by split position, after any injected noise) with
    ``data.labels_override`` applied, and ``ls`` re-indexed by source row (see :class:`LabelSources`).

    Raises:
        DataError: see :func:`read_label_override`.
    """
    if ls is None:
        return labels, None
    labels = np.asarray(labels, dtype=np.int64)
    if d.labels_override:
        keys = sample_keys(src.train, root=d.root)
        override = read_label_override(d.labels_override, keys=keys, num_classes=len(src.class_names),
                                       class_names=list(src.class_names))
        pos = np.fromiter(override.keys(), dtype=np.int64, count=len(override))
        new = np.fromiter(override.values(), dtype=np.int64, count=len(override))
        changed = int((labels[pos] != new).sum())
        labels = labels.copy()
        labels[pos] = new
        ls.overridden = np.zeros(len(labels), dtype=bool)
        ls.overridden[pos] = True
        ls.changed += changed
        logger.info("labels_override: %d reviewed labels, %d changed", len(override), changed)
    return labels, _by_source_row(ls, getattr(src.train, "rows", None))


def _by_source_row(out: LabelSources, rows: np.ndarray | None) -> LabelSources:
    """Re-index the per-sample arrays from split positions to source rows (they differ when files were left out);
    rows without a sample get -1 labels, no answers and empty names."""
    if rows is None:
        return out
    size = int(rows.max()) + 1 if rows.size else 0

    def scatter(a: np.ndarray, fill: Any) -> np.ndarray:
        full = np.full((size, *a.shape[1:]), fill, dtype=a.dtype)
        full[rows] = a
        return full

    names = [""] * size
    for r, name in zip(rows.tolist(), out.sample_names):
        names[r] = name
    cons = out.consensus
    if cons is not None:
        cons = dataclasses.replace(cons, labels=scatter(cons.labels, -1), posterior=scatter(cons.posterior, 0.0),
                                   agreement=scatter(cons.agreement, np.nan), num_answers=scatter(cons.num_answers, 0))
    return LabelSources(file_labels=scatter(out.file_labels, -1), sample_names=names, consensus=cons,
                        overridden=None if out.overridden is None else scatter(out.overridden, False),
                        changed=out.changed)
