"""The one reader for every text file the product reads: file lists, label files, class names, configs,
CSV/TSV/JSONL sources, transition matrices.

Rules (the same for every file):

- UTF-8 (default), with or without a byte-order mark (``EF BB BF``, what Windows editors write); the mark is
  dropped. ``encoding="gbk"`` or ``"gb18030"`` (the superset of GBK) reads files saved by Chinese Windows /
  Excel; those codecs never use byte ``0x0A`` inside a character, so lines split the same way.
- Line ends LF or CRLF (a trailing ``\\r`` is dropped); lines are numbered from 1 by ``\\n``.
- :func:`read_text_lines` / :func:`iter_text_lines` skip blank (whitespace-only) lines but keep the original
  line numbers, so every error can name ``file:line``.
- Bytes that are not UTF-8 raise one error naming the file, the line, the column and the byte; a UTF-16 file
  (Notepad's "Unicode") is recognised by its byte-order mark and named as such.

Python's own text mode is not used: it keeps the BOM glued to the first value, and its decode errors give a
byte offset in the whole file without naming the file. Lines are split on ``\\n`` only (``str.splitlines``
would also split inside values on form feeds, ``\\x1c`` .. ``\\x1e`` and ``\\u2028``).
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator

from robust_paddle.errors import DataError

__all__ = ["ENCODINGS", "iter_text_lines", "read_text", "read_text_lines", "where"]

ENCODINGS = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}  # codec -> name in messages

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF8_BOM = codecs.BOM_UTF8


def where(path: str, line: int) -> str:
    """``"path:line"``, the prefix of every error about one line of a text file."""
    return f"{path}:{line}"


def _prefix(what: str | None) -> str:
    return f"{what}: " if what else ""


def _open(path: str, what: str | None, error: type[Exception]):
    if not path:
        raise error(f"{_prefix(what)}no file given")
    if os.path.isdir(path):
        raise error(f"{_prefix(what)}{path} is a folder, expected a text file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise error(f"{_prefix(what)}{path} does not exist") from None
    except OSError as e:
        raise error(f"{_prefix(what)}cannot read {path}: {e.strerror or e}") from None


def _codec(encoding: str) -> str:
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is not supported; use one of {', '.join(ENCODINGS)}")
    return ENCODINGS[encoding]


def _decode(raw: bytes, path: str, lineno: int, what: str | None, error: type[Exception],
            encoding: str = "utf-8", hint: str = "") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        name = ENCODINGS[encoding]
        if lineno == 1 and raw.startswith(_UTF16_BOMS):
            raise error(f"{_prefix(what)}{where(path, 1)}: the file is UTF-16; save it as {name}{hint}") from None
        bad = raw[e.start]
        col = len(raw[:e.start].decode(encoding, errors="replace")) + 1
        raise error(f"{_prefix(what)}{where(path, lineno)}: byte 0x{bad:02x} at column {col} is not {name}; "
                    f"save the file as {name}{hint}") from None


def iter_text_lines(path: str, *, what: str | None = None, keep_blank: bool = False,
                    error: type[Exception] = DataError, encoding: str = "utf-8",
                    hint: str = "") -> Iterator[tuple[int, str]]:
    """Stream the lines of a text file (UTF-8 unless ``encoding``) as ``(line_number, text)``, without line ends.

    Args:
        path: the file.
        what: what the file is, for messages (e.g. ``"data.path"``, ``"noise.file"``); prefixed as ``what: ``.
        keep_blank: also yield blank (empty or whitespace-only) lines.
        error: exception class raised for a missing/unreadable file or non-UTF-8 bytes.
        encoding: ``"utf-8"`` (a leading BOM is dropped), ``"gbk"`` or ``"gb18030"``.
        hint: appended to the bad-bytes message (e.g. ``" or set data.text.encoding (utf-8, gbk, gb18030)"``).

    Yields:
        ``(n, line)``: ``n`` is the 1-based line number in the file; ``line`` has no ``\\n``/``\\r\\n`` and
        no BOM, other whitespace is kept.

    Raises:
        DataError (or ``error``): missing file, a folder, unreadable file, bytes that are not UTF-8
            (``path:line: byte 0x.. at column c is not UTF-8``), a UTF-16 file.
        ValueError: ``encoding`` is not one of :data:`ENCODINGS` (a programming error; configs check it).
    """
    _codec(encoding)
    with _open(path, what, error) as fh:
        for n, raw in enumerate(fh, 1):
            if n == 1 and encoding == "utf-8" and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM):]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            text = _decode(raw, path, n, what, error, encoding, hint)
            if keep_blank or text.strip():
                yield n, text


def read_text_lines(path: str, *, what: str | None = None, keep_blank: bool = False,
                    error: type[Exception] = DataError) -> list[tuple[int, str]]:
    """All lines of a UTF-8 text file as ``[(line_number, text), ...]``; blank lines skipped by default.

    See :func:`iter_text_lines` for the rules and errors.
    """
    return list(iter_text_lines(path, what=what, keep_blank=keep_blank, error=error))


def read_text(path: str, *, what: str | None = None, error: type[Exception] = DataError) -> str:
    """The whole text of a UTF-8 file (for YAML, JSON, proto text): BOM dropped, CRLF turned into LF.

    Raises:
        DataError (or ``error``): as :func:`iter_text_lines`; a non-UTF-8 byte is named with its line.
    """
    with _open(path, what, error) as fh:
        data = fh.read()
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        end = data.find(b"\n", e.start)
        _decode(data[start:end if end >= 0 else len(data)], path, lineno, what, error)
        raise AssertionError("unreachable: the line holding the bad byte decoded") from None
    return text.replace("\r\n", "\n")
