"""The one reader for tabular text files: CSV, TSV and JSON Lines, as rows of named fields with line numbers.

Used by every product file that is a table: text-classification sources (``robust_paddle.data.text``),
annotator answers (``data.annotations``), verified spot-check labels, review decisions. Bytes go through
:mod:`robust_paddle.data.textfile` (UTF-8 with or without BOM, or GBK / GB18030 when asked; LF or CRLF; blank
lines skipped; bytes outside the encoding named with ``file:line``); the fields are parsed here:

- ``.csv`` / ``.tsv`` (or ``fmt="csv"|"tsv"``): Python's :mod:`csv` module, the first non-blank line is the
  header; quoted fields may hold the delimiter, quotes and line breaks (``"a ""b""\\nc"``). A row with another
  number of fields than the header, or broken quoting (``"ab" ,c``), is an error naming ``file:line``; a
  required column missing from the header is named at the header's line.
- ``.jsonl`` / ``.ndjson`` (or ``fmt="jsonl"``): one JSON object per line (:func:`json.loads`, with a nesting
  limit so a hostile file cannot exhaust the stack).

Every value is returned as read (``str`` for CSV/TSV, the JSON type for JSONL); callers convert and name
``file:line`` on bad values through :func:`robust_paddle.data.textfile.where`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from robust_paddle.data.textfile import iter_text_lines, where
from robust_paddle.errors import DataError

__all__ = ["MAX_JSON_DEPTH", "TABLE_FORMATS", "Row", "json_depth", "read_table", "table_format"]

TABLE_FORMATS = ("csv", "tsv", "jsonl")
_EXT = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_JSON_DEPTH = 64  # nesting allowed in one JSON Lines record


@dataclass(frozen=True)
class Row:
    """One data row: ``line`` is the 1-based line where it starts in the file, ``values`` the named fields."""

    line: int
    values: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def table_format(path: str, fmt: str | None = None) -> str:
    """``fmt`` when given, else the format named by the file's extension.

    Raises:
        DataError: ``fmt`` is not one of ``csv``, ``tsv``, ``jsonl``, or the extension names none of them.
    """
    if fmt:
        if fmt not in TABLE_FORMATS:
            raise DataError(f"{path}: table format {fmt!r} is not supported; use one of {', '.join(TABLE_FORMATS)}")
        return fmt
    ext = os.path.splitext(path)[1].lower()
    if ext not in _EXT:
        raise DataError(f"{path}: cannot tell the table format from the extension {ext or '(none)'!r}; "
                        f"name the file .csv, .tsv or .jsonl")
    return _EXT[ext]


def json_depth(text: str) -> int:
    """Deepest bracket nesting outside strings (a cheap pre-check before json.loads recurses)."""
    depth = best = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    return best


def _missing(required: Mapping[str, str], have: Sequence[str]) -> str:
    """``"label_column='y'"`` (or ``"'y'"`` without a setting name) for each required column not in ``have``."""
    return ", ".join(f"{name}={col!r}" if name else repr(col) for col, name in required.items() if col not in have)


def _jsonl_rows(path: str, what: str | None, required: Mapping[str, str], encoding: str, hint: str
                ) -> Iterator[Row]:
    prefix = f"{what}: " if what else ""
    for n, text in iter_text_lines(path, what=what, encoding=encoding, hint=hint):
        if json_depth(text) > MAX_JSON_DEPTH:
            raise DataError(f"{prefix}{where(path, n)}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{prefix}{where(path, n)}: not valid JSON ({e.msg} at column {e.colno}); "
                            "a .jsonl file has one JSON object per line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{prefix}{where(path, n)}: expected a JSON object ({{\"key\": value, ...}}), "
                            f"got {type(obj).__name__}")
        missing = _missing(required, list(obj))
        if missing:
            raise DataError(f"{prefix}{where(path, n)}: missing key(s) {missing}; the object has: "
                            f"{', '.join(map(str, obj)) or 'none'}")
        yield Row(n, obj)


def _delimited_rows(path: str, delimiter: str, what: str | None, required: Mapping[str, str], encoding: str,
                    hint: str) -> Iterator[Row]:
    prefix = f"{what}: " if what else ""
    lines = iter_text_lines(path, what=what, keep_blank=True, encoding=encoding, hint=hint)
    starts: list[int] = []

    def feed() -> Iterator[str]:  # csv.reader pulls physical lines; remember where each record starts
        for n, text in lines:
            starts.append(n)
            yield text + "\n"  # csv needs the line end to keep line breaks inside quoted fields

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    header_line = 0
    while True:
        first = len(starts)  # index in ``starts`` of the record's first physical line
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(f"{prefix}{where(path, starts[first] if len(starts) > first else 1)}: {e}") from None
        line = starts[first]
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if header is None:
            header = [f.strip() for f in fields]
            header_line = line
            empty = [i + 1 for i, h in enumerate(header) if not h]
            if empty:
                raise DataError(f"{prefix}{where(path, line)}: header column {empty[0]} has no name; the first "
                                "line must name every column")
            dup = sorted({h for h in header if header.count(h) > 1})
            if dup:
                raise DataError(f"{prefix}{where(path, line)}: header names column(s) {dup} twice")
            missing = _missing(required, header)
            if missing:
                raise DataError(f"{prefix}{where(path, line)}: missing column(s) {missing}; the header has: "
                                f"{', '.join(header)}")
            continue
        if len(fields) != len(header):
            raise DataError(f"{prefix}{where(path, line)}: {len(fields)} field(s) but the header on line "
                            f"{header_line} has {len(header)} ({delimiter!r}-separated)")
        yield Row(line, dict(zip(header, fields)))
    if header is None:
        raise DataError(f"{prefix}{path}: the file is empty; expected a header line and rows")


def read_table(path: str, *, fmt: str | None = None, required: Sequence[str] | Mapping[str, str] = (),
               what: str | None = None, encoding: str = "utf-8", hint: str = "") -> list[Row]:
    """Every data row of a CSV / TSV / JSONL file.

    Args:
        path: the file; its extension picks the format unless ``fmt`` is given.
        fmt: ``"csv"``, ``"tsv"`` or ``"jsonl"``.
        required: column names every row must have (checked against the header at its line, or per JSONL
            record); a mapping ``{column: setting}`` names the setting that chose each column in the message
            (``missing column(s) label_column='y'``).
        what: what the file is, for messages (e.g. ``"data.annotations"``).
        encoding: ``"utf-8"`` (BOM dropped), ``"gbk"`` or ``"gb18030"``
            (:data:`robust_paddle.data.textfile.ENCODINGS`).
        hint: appended to the bad-bytes message (how to pick another encoding).

    Returns:
        ``[Row(line, {column: value})]`` in file order; blank lines skipped.

    Raises:
        DataError: unreadable file or bytes outside ``encoding``, unknown format, empty file, a malformed row, a
            missing required column; each names ``file:line``.
    """
    kind = table_format(path, fmt)
    need = dict(required) if isinstance(required, Mapping) else {col: "" for col in required}
    if kind == "jsonl":
        return list(_jsonl_rows(path, what, need, encoding, hint))
    return list(_delimited_rows(path, "," if kind == "csv" else "\t", what, need, encoding, hint))
