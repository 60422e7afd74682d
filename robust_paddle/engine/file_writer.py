"""The run's per-epoch files written while the next epoch trains.

After every epoch the trainer writes ``checkpoints/latest.pdckpt`` (and links ``best``/``epoch_NNN``) and
``metrics.json``, each atomically: a temporary file, ``fsync``, ``os.replace``. The ``fsync`` waits for the
disk (about 8 ms a file on the 2-vCPU reference VM, 5% of a digits epoch: issue 13's overhead target), so the
hooks encode the content in the training thread (a snapshot: the bytes no longer depend on the weights or the
history) and hand the write to this module's single thread, which writes the files in the order they were
handed over while the next epoch trains.

The trainer waits for every write before ``after_train`` (hooks that read the files then find them), when
training stops on an exception, and at the end of ``fit``; a write's error (``OSError``: full disk, folder
not writable) is raised in the training thread by the next hand-over or by that wait, naming the file. What
is on disk is never a half-written file (each write is atomic), and at most one epoch behind the weights while
the next epoch trains.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

__all__ = ["FileWriter"]


class FileWriter:
    """One background thread running file writes in order; at most ``max_pending`` writes queued (a new one
    first waits for the oldest), so at most that many encoded files are held in memory."""

    def __init__(self, *, max_pending: int = 2) -> None:
        self.max_pending = max(1, int(max_pending))
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread after the writes handed over before it.

        Raises:
            OSError (or whatever an earlier write raised): the first error of a finished write.
        """
        self._reap()
        while len(self._pending) >= self.max_pending:
            self._pending.pop(0).result()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="robust_paddle-files")
        self._pending.append(self._pool.submit(fn, *args))

    def flush(self) -> None:
        """Wait for every write handed over; raises the first one's error (the others still complete)."""
        pending, self._pending = self._pending, []
        concurrent.futures.wait(pending)
        for fut in pending:
            fut.result()

    def close(self) -> None:
        """:meth:`flush`, then stop the thread (a later :meth:`submit` starts a new one)."""
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _reap(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()
