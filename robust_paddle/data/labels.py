"""Labels and features checked where they enter: the class count, labels out of range, gaps, too many
classes, empty and one-class datasets, NaN/Inf features.

Rules (``sources.py`` applies them to every source):

- **Classes known** (``data.class_names``, folder names, a dataset's own names, an npz's ``class_names``):
  C is their number; a label outside [0, C) in any split is an error naming ``file:line`` (text sources) or
  the file and the sample index (arrays).
- **Classes inferred from the labels** (no names anywhere): C = largest label + 1 over all splits; a label
  value in [0, C) that no sample has (a gap: usually a typo such as 12 in a 10-class set) or C greater than
  ``data.max_classes`` (default 1000, a million-class model from one wrong label) is an error unless the
  classes are named.
- A training split without samples, or whose labels hold fewer than 2 classes, is one clear error.
- Features (npz ``x``) must be finite: the first sample holding NaN or Inf is named.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from robust_paddle.data.textfile import read_text_lines, where
from robust_paddle.errors import DataError

LIST_MAX = 10
#: problems collected instead of raised inside :func:`collect_label_problems` (``check-data``)
_COLLECTOR: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("label_problems", default=None)


@contextlib.contextmanager
def collect_label_problems():
    """Inside this block :func:`resolve_classes` and :func:`check_finite` append every problem to the yielded
    list and return best-effort results instead of raising (``check-data`` reports them all)."""
    problems: list[str] = []
    token = _COLLECTOR.set(problems)
    try:
        yield problems
    finally:
        _COLLECTOR.reset(token)


def _fail(message: str) -> None:
    collector = _COLLECTOR.get()
    if collector is None:
        raise DataError(message)
    collector.append(message)


def describe(split, i: int) -> str:
    """``file:line`` of sample ``i`` of a :class:`~robust_paddle.data.sources.Split` read from text, else
    ``file sample i``."""
    origin = getattr(split, "origin", "") or "the data"
    lines = getattr(split, "lines", None)
    if lines is not None:
        return where(origin, int(lines[i]))
    return f"{origin} sample {i}"


def _in_range(parts: dict, num_classes: int, whence: str) -> None:
    for part, split in parts.items():
        y = split.labels
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if bad.size:
            i = int(bad[0])
            more = f"; {bad.size} {part} labels are out of range" if bad.size > 1 else ""
            _fail(f"{describe(split, i)}: label {int(y[i])} is outside 0..{num_classes - 1} "
                  f"({num_classes} classes from {whence}){more}")


def resolve_classes(parts: dict, *, names: list[str] | None, known: list[str] | None, max_classes: int,
                    names_field: str = "data.class_names") -> list[str]:
    """The class names of a dataset after checking every split's labels against them.

    Args:
        parts: ``{"train": Split, "val": Split, ...}`` (None entries ignored).
        names: ``data.class_names`` or None. known: the source's own names (folder names ...) or None.
        max_classes: ``data.max_classes``.

    Returns:
        C names.

    Raises:
        DataError: empty training split, label out of range, gap in inferred labels, too many inferred
            classes, fewer than 2 classes in the training labels.
    """
    parts = {k: v for k, v in parts.items() if v is not None}
    train = parts["train"]
    if train.labels.size == 0:
        _fail(f"{getattr(train, 'origin', '') or 'the training data'}: the training data has no samples")
        return list(names if names is not None else known if known is not None else [])
    if names is not None and known is not None and len(names) != len(known):
        _fail(f"{names_field} has {len(names)} names; this dataset has {len(known)} classes")
        names = None
    if names is not None or known is not None:
        out = list(names if names is not None else known)
        _in_range(parts, len(out), names_field if names is not None else "the dataset")
    else:
        _in_range(parts, np.iinfo(np.int64).max, "")  # negative labels
        top = max(int(s.labels.max()) for s in parts.values() if s.labels.size) + 1
        first_top = next((p, s, int(np.argmax(s.labels))) for p, s in parts.items()
                         if s.labels.size and int(s.labels.max()) == top - 1)
        if top > max_classes:
            _fail(f"{describe(first_top[1], first_top[2])}: label {top - 1} would make {top} classes, more "
                  f"than data.max_classes={max_classes}; name the classes with {names_field} (or raise "
                  "data.max_classes) if that many are real")
            return [str(i) for i in range(top)]
        present = np.zeros(top, dtype=bool)
        for s in parts.values():
            present[s.labels] = True
        missing = np.flatnonzero(~present)
        if missing.size:
            gap = int(missing[0])
            split, i = next((s, int(np.flatnonzero(s.labels > gap)[0])) for s in parts.values()
                            if (s.labels > gap).any())
            shown = ", ".join(str(int(m)) for m in missing[:LIST_MAX]) + (" ..." if missing.size > LIST_MAX else "")
            _fail(f"{describe(split, i)}: label {int(split.labels[i])} leaves a gap: no sample has label "
                  f"{shown} (classes inferred from the labels must be 0..C-1); fix the label, or name "
                  f"the classes with {names_field}")
        out = [str(i) for i in range(top)]
    classes = np.unique(train.labels)
    if classes.size < 2:
        _fail(f"{getattr(train, 'origin', '') or 'the training data'}: the training labels hold only one "
                        f"class ({out[int(classes[0])]!r}, {train.labels.size} samples); a classifier needs at least 2")
    return out


def check_finite(x: np.ndarray, split, what: str) -> None:
    """Raise naming the first sample of ``x`` [N, ...] holding NaN or Inf (float arrays only)."""
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    bad_rows = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) if x.ndim > 1 else ~np.isfinite(x)
    if bad_rows.any():
        i = int(np.argmax(bad_rows))
        kind = "NaN" if np.isnan(x[i]).any() else "Inf"
        _fail(f"{describe(split, i)}: {what} holds {kind} ({int(bad_rows.sum())} sample(s) hold NaN or Inf); "
              "features must be finite")


def read_class_names(path: str) -> list[str]:
    """``data.class_names`` given as a text file: one name per line (blank lines skipped, surrounding spaces
    dropped); a repeated name is an error naming both lines."""
    seen: dict[str, int] = {}
    for n, line in read_text_lines(path, what="data.class_names"):
        name = line.strip()
        if name in seen:
            raise DataError(f"data.class_names: {where(path, n)}: {name!r} repeats line {seen[name]}; class names "
                            "must be unique")
        seen[name] = n
    if not seen:
        raise DataError(f"data.class_names: {path} holds no names (one class name per line)")
    return list(seen)
