"""One cached, shard-aware pass over the training set per state of the weights.

GMM-free consumers of per-sample outputs -- the forget-rate and transition estimates of the methods, the
per-sample diagnostics (``SampleStatsHook``) and the label-issue report -- read
:meth:`TrainSetPass.train_set_logits` instead of each running their own eval pass: the logits are computed
once and reused until the weights change (an optimizer step, a checkpoint load, or EMA/SWA swapping
other weights in, which calls :meth:`TrainSetPass.weights_changed`). Nothing runs the pass unless a consumer asks in that state.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robust_paddle.errors import DataError


class TrainSetPass:
    """Mixed into :class:`~robust_paddle.engine.trainer.Trainer` (which provides ``loaders``, ``global_step``,
    ``distributed`` and ``predict_logits``)."""

    loaders: dict[str, Any]
    global_step: int
    distributed: bool

    def weights_changed(self) -> None:
        """Invalidate the cached pass: the networks hold other weights (EMA/SWA swap, checkpoint load)."""
        self._weights_version = getattr(self, "_weights_version", 0) + 1

    def train_set_logits(self, *, collective: bool = True) -> np.ndarray:
        """[N, C] float32 eval-mode logits of every training sample, row = dataset index (``train_eval``
        loader: no augmentation).

        Args:
            collective: data parallel: every rank calls this together, each predicts its shard and all get
                every row. ``False`` (a caller on rank 0 alone, e.g. the report) reuses the cached pass when the
                weights have not changed, else predicts the whole set in this process.

        Raises:
            DataError: the ``train_eval`` loader does not cover the training set exactly once.
        """
        key = (self.global_step, getattr(self, "_weights_version", 0))
        cached = getattr(self, "_train_pass", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        loader = self.loaders["train_eval"]
        n = len(loader.dataset)
        logits, idx = self.predict_logits(loader, shard=collective and self.distributed)
        if idx.shape[0] != n or not np.array_equal(np.sort(idx), np.arange(n)):
            raise DataError(f"the train_eval loader yielded {idx.shape[0]} samples with indices that are not a "
                            f"permutation of 0..{n - 1}; it must cover the training set once")
        out = np.empty_like(logits)
        out[idx] = logits
        self._train_pass = (key, out)
        return out
