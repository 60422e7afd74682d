"""One cached, shard-aware pass over the training set per state of the weights.

Every consumer of per-sample outputs -- the GMM division of ``gmm_correction``/``dividemix`` (each network's
own logits), the forget-rate and transition estimates of the methods, the per-sample diagnostics
(``SampleStatsHook``) and the label-issue report (the evaluation logits) -- reads
:meth:`TrainSetPass.train_set_outputs` (or :meth:`TrainSetPass.train_set_logits`) instead of running its own
eval pass: one pass computes the evaluation logits and every network's logits together (the same forwards),
and they are reused until the weights change (an optimizer step, a checkpoint load, or EMA/SWA swapping
other weights in, which calls :meth:`TrainSetPass.weights_changed`). Nothing runs the pass unless a consumer
asks in that state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from robust_paddle.errors import DataError


@dataclass(frozen=True)
class TrainSetOutputs:
    """One eval-mode pass over the training set (row = dataset index, ``train_eval`` loader: no augmentation).

    Attributes:
        logits: [N, C] float32 evaluation logits (``method.predict``: the ensemble of a two-network method).
        networks: network name -> [N, C] float32 logits of that network alone (``method.networks`` order).
    """

    logits: np.ndarray
    networks: dict[str, np.ndarray]


class TrainSetPass:
    """Mixed into :class:`~robust_paddle.engine.trainer.Trainer` (which provides ``loaders``, ``global_step``,
    ``distributed``, ``method`` and ``predict_logits``)."""

    loaders: dict[str, Any]
    global_step: int
    distributed: bool
    method: Any

    def weights_changed(self) -> None:
        """Invalidate the cached pass: the networks hold other weights (EMA/SWA swap, checkpoint load)."""
        self._weights_version = getattr(self, "_weights_version", 0) + 1

    def train_set_logits(self, *, collective: bool = True) -> np.ndarray:
        """[N, C] float32 eval-mode logits of every training sample, row = dataset index (``train_eval``
        loader: no augmentation). See :meth:`train_set_outputs`."""
        return self.train_set_outputs(collective=collective).logits

    def cached_train_set_outputs(self) -> TrainSetOutputs | None:
        """The pass of the current weights when one was already run, else None (runs nothing: for an optional
        consumer, e.g. VisualDL's ``train/acc``, that would otherwise run a pass of its own)."""
        cached = getattr(self, "_train_pass", None)
        return cached[1] if cached is not None and cached[0] == self._pass_key() else None

    def _pass_key(self) -> tuple[int, int]:
        return self.global_step, getattr(self, "_weights_version", 0)

    def train_set_outputs(self, *, collective: bool = True) -> TrainSetOutputs:
        """The evaluation logits and every network's logits over the training set, cached per weights state.

        Args:
            collective: data parallel: every rank calls this together, each predicts its shard and all get
                every row. ``False`` (a caller on rank 0 alone, e.g. the report) reuses the cached pass when the
                weights have not changed, else predicts the whole set in this process.

        Raises:
            DataError: the ``train_eval`` loader does not cover the training set exactly once.
        """
        cached = self.cached_train_set_outputs()
        if cached is not None:
            return cached
        loader = self.loaders["train_eval"]
        n = len(loader.dataset)
        cols, idx = self.predict_logits(loader, shard=collective and self.distributed, networks=True)
        if idx.shape[0] != n or not np.array_equal(np.sort(idx), np.arange(n)):
            raise DataError(f"the train_eval loader yielded {idx.shape[0]} samples with indices that are not a "
                            f"permutation of 0..{n - 1}; it must cover the training set once")
        rows = np.empty_like(cols)
        rows[idx] = cols
        names = list(self.method.networks)
        parts = [np.ascontiguousarray(p) for p in np.split(rows, 1 + len(names), axis=1)]  # [ensemble, net_1, ..., net_K], C columns each
        out = TrainSetOutputs(logits=parts[0], networks=dict(zip(names, parts[1:])))
        self._train_pass = (self._pass_key(), out)
        return out
