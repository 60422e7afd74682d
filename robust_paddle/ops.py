"""Small shared mechanisms used across the package (one of each): atomic file writes.

Imports nothing from the package (a leaf of the layer graph, see ``tests/test_layers.py``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
                 ) -> Iterator[IO[Any]]:
    """Write ``path`` all or nothing: into a temporary file in the same folder, flushed and ``fsync``-ed, then
    ``os.replace``-d over ``path``. On any exception the temporary file is removed and ``path`` is untouched.

    Args:
        path: the file to (re)write; its folder must exist.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding, newline: as for :func:`open` in text mode (``newline=""`` for the csv module).

    Yields:
        The open temporary file.

    Raises:
        OSError: the folder is missing or not writable, the disk is full (``path`` keeps its old content).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding,
                       newline=None if "b" in mode else newline) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
