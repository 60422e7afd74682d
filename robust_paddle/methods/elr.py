"""``elr``: early-learning regularization, the cheap single-network baseline against memorisation.

Liu, Niles-Weed, Razavian & Fernandez-Granda 2020, "Early-Learning Regularization Prevents Memorization of
Noisy Labels" (NeurIPS), https://arxiv.org/abs/2007.00151. Early in training a network predicts the true
class of most wrongly labelled samples; ELR keeps it there. Per training sample ``i`` it keeps a target
``t_i`` [C], a running average of the network's own (detached) predictions, updated each time the sample is
in a batch::

    p_i   = clip(softmax(z_i), 1e-4, 1 - 1e-4) / sum(...)          (as the reference code)
    t_i  <- beta * t_i + (1 - beta) * p_i                            (t_i starts at 0)
    loss  = L(z, y) + lambda * mean_i log(1 - <t_i, softmax(z_i)>)

``L`` is the run's loss (``loss.name``, CE in the paper). The regulariser's gradient pulls ``p_i`` towards
``t_i``, so the early-learning predictions, not the memorised wrong labels, dominate later. Paper settings:
CIFAR-10 ``beta=0.7, lambda=3``; CIFAR-100 ``beta=0.9, lambda=7``.

Per-sample state: the targets ``T`` [N, C] float32 (checkpointed: exact resume). Under data parallelism every
rank applies every rank's target updates of a step, so all ranks hold the same ``T``. The clean probability
for the label-issue report is ``t_i[y_i]``, the share of the early-learning average on the given label.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError
from robust_paddle.methods.base import Method, MethodContext
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

__all__ = ["ELRMethod", "elr_targets_update"]

PROB_CLIP = 1e-4  # the reference implementation's clamp of the averaged predictions


def elr_targets_update(targets: np.ndarray, probs: np.ndarray, *, beta: float) -> np.ndarray:
    """One ELR target update ``beta * t + (1 - beta) * p_hat`` with ``p_hat`` the clipped, renormalised
    ``probs`` ([B, C] each); returns the new [B, C] float32 targets."""
    p = np.clip(probs, PROB_CLIP, 1.0 - PROB_CLIP)
    p = p / p.sum(axis=1, keepdims=True)
    return (beta * targets + (1.0 - beta) * p).astype(np.float32)


@METHODS.register("elr")
class ELRMethod(Method):
    """Early-learning regularization (Liu et al. 2020): the run's loss plus lam * log(1 - <t_i, p_i>), t_i an EMA of predictions.

    Args:
        ctx: the method context.
        beta: target momentum in [0, 1) (0.7 for CIFAR-10, 0.9 for CIFAR-100).
        lam: weight lambda >= 0 of the regulariser (3 for CIFAR-10, 7 for CIFAR-100); 0 is plain training.

    Raises:
        ConfigError: a parameter outside its range (names ``method.params.<key>``).
    """

    name = "elr"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``elr`` (checked by the registry)."""

        beta: float = param(0.7, min=0.0, max=0.999999, doc="target momentum (0.7 CIFAR-10, 0.9 CIFAR-100)")
        lam: float = param(3.0, min=0.0, doc="weight of log(1 - <t, p>) (3 CIFAR-10, 7 CIFAR-100; 0 = plain loss)")

    def __init__(self, ctx: MethodContext, *, beta: float = 0.7, lam: float = 3.0) -> None:
        super().__init__(ctx)
        self.beta, self.lam = float(beta), float(lam)  # checked by the registry against Params
        self.networks = {"net": ctx.build_network()}
        self.loss_fn = ctx.build_loss()
        self.targets = np.zeros((ctx.num_train, ctx.num_classes), dtype=np.float32)

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        logits = self.networks["net"](x)
        task = self.loss_fn(logits, y)
        probs = F.softmax(logits.astype("float32"), axis=-1)
        rows = np.asarray(idx.numpy(), dtype=np.int64)
        new = elr_targets_update(self.targets[rows], probs.numpy(), beta=self.beta)
        self._store(rows, new)
        inner = (paddle.to_tensor(new) * probs).sum(axis=1).clip(max=1.0 - 1e-6)
        reg = paddle.log(1.0 - inner).mean()
        loss = task + self.lam * reg
        return loss, {"loss": loss, "task": task, "elr": reg}

    def _store(self, rows: np.ndarray, new: np.ndarray) -> None:
        if dist.is_distributed():  # every rank applies every rank's updates: the targets stay identical
            for r, t in zip(dist.all_gather_array(rows), dist.all_gather_array(new)):
                self.targets[np.asarray(r, dtype=np.int64)] = t
        else:
            self.targets[rows] = new

    def clean_probability(self) -> np.ndarray | None:
        """[N] ``t_i[y_i]``: the early-learning average's probability of the given label (None before training)."""
        if not self.targets.any():
            return None
        labels = np.asarray(self.ctx.train_labels, dtype=np.int64)
        return self.targets[np.arange(labels.size), labels].astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"targets": self.targets}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        t = (state or {}).get("targets")
        if t is None or np.asarray(t).shape != self.targets.shape:
            shape = None if t is None else list(np.asarray(t).shape)
            raise CheckpointError(f"method state: ELR targets of shape {shape}, this run needs "
                                  f"{list(self.targets.shape)} (another method, dataset or split?)")
        self.targets = np.asarray(t, dtype=np.float32).copy()
