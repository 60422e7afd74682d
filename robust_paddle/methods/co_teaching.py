"""The Co-teaching family: two networks that filter each other's noisy labels by small-loss selection.

* ``co_teaching`` (Han et al. 2018, https://arxiv.org/abs/1804.06872): each network picks the
  ``R(T)`` fraction of its smallest-loss samples in the mini-batch, and the *other* network is updated
  on them, so the errors one network has learnt are not fed back to itself.
* ``co_teaching_plus`` (Yu et al. 2019, https://arxiv.org/abs/1901.04215): after ``init_epoch`` plain
  Co-teaching epochs, only the samples on which the two networks' predictions disagree are candidates,
  and the small-loss exchange happens among them; this keeps the networks from converging to each other.
* ``jocor`` (Wei et al. 2020, https://arxiv.org/abs/2003.02752): a joint per-sample loss
  ``(1 - lambda) * (l1 + l2) + lambda * (KL(p1||p2) + KL(p2||p1))`` pulls the networks together; the
  small-joint-loss samples update both networks with one shared loss.

The keep ratio follows :func:`robust_paddle.methods.selection.forget_rate_schedule`. With ``forget_rate: auto``
the forget rate ``tau`` is estimated once, see :mod:`robust_paddle.methods.forget_rate`. The per-sample
loss is the configured loss (``cfg.loss``, default ``ce``) with ``reduction="none"``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError
from robust_paddle.methods.base import Method, MethodContext, check_training_after, epoch_param
from robust_paddle.methods.forget_rate import AutoForgetRate
from robust_paddle.methods.selection import (
    precision_recall_from_counts,
    prior_loss_offset,
    small_loss_indices,
)
from robust_paddle.ops import symmetric_kl
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ pure step losses
def co_teaching_losses(losses1: paddle.Tensor, losses2: paddle.Tensor, *, keep_ratio: float,
                       offset: paddle.Tensor | None = None
                       ) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """Cross-update losses of Co-teaching for one mini-batch.

    Args:
        losses1, losses2: ``[B]`` per-sample losses of network 1 and network 2 (differentiable).
        keep_ratio: R(T), the fraction of samples each network keeps.
        offset: ``[B]`` added to the losses for the ranking only (the annotators' prior,
            :func:`~robust_paddle.methods.selection.prior_loss_offset`), or None.

    Returns:
        ``(loss1, loss2, pick1, pick2)``: ``pick1`` / ``pick2`` ``[k]`` are the indices of the smallest
        losses of network 1 / 2; ``loss1 = mean(losses1[pick2])`` trains network 1 on network 2's choice
        and ``loss2 = mean(losses2[pick1])`` trains network 2 on network 1's choice.
    """
    rank1, rank2 = (losses1, losses2) if offset is None else (
        losses1.detach().astype("float32") + offset, losses2.detach().astype("float32") + offset)
    pick1 = small_loss_indices(rank1, keep_ratio=keep_ratio)
    pick2 = small_loss_indices(rank2, keep_ratio=keep_ratio)
    return paddle.gather(losses1, pick2).mean(), paddle.gather(losses2, pick1).mean(), pick1, pick2


def disagreement_indices(logits1: paddle.Tensor, logits2: paddle.Tensor) -> np.ndarray:
    """``[m]`` int64 positions where the two networks' predicted classes (argmax of ``[B, C]``) differ."""
    pred1 = logits1.argmax(axis=1).numpy()
    pred2 = logits2.argmax(axis=1).numpy()
    return np.flatnonzero(pred1 != pred2).astype(np.int64)




def jocor_losses(logits1: paddle.Tensor, logits2: paddle.Tensor, losses1: paddle.Tensor,
                 losses2: paddle.Tensor, *, co_lambda: float, keep_ratio: float,
                 offset: paddle.Tensor | None = None) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
    """JoCoR's joint loss on the small-joint-loss samples of one mini-batch.

    Args:
        logits1, logits2: ``[B, C]`` logits of the two networks.
        losses1, losses2: ``[B]`` per-sample supervised losses (cross-entropy in the paper).
        co_lambda: lambda in [0, 1], weight of the co-regularisation.
        keep_ratio: R(T).
        offset: ``[B]`` added to ``j`` for the ranking only (see :func:`co_teaching_losses`), or None.

    Returns:
        ``(loss, pick, kl)``: with ``kl`` ``[B]`` = :func:`symmetric_kl` and the joint loss ``j = (1 - lambda)
        * (losses1 + losses2) + lambda * kl``, ``pick`` ``[k]`` holds the indices of the smallest ``j`` and
        ``loss`` is their mean.
    """
    kl = symmetric_kl(logits1, logits2, reduction="none")
    joint = (1.0 - co_lambda) * (losses1 + losses2) + co_lambda * kl
    pick = small_loss_indices(joint if offset is None else joint.detach().astype("float32") + offset, keep_ratio=keep_ratio)
    return paddle.gather(joint, pick).mean(), pick, kl


# ------------------------------------------------------------------------------------------ methods
class _TwoNetworkSmallLossMethod(Method):
    """Shared machinery: two networks, the forget-rate schedule (fixed or ``auto``) and selection statistics.

    Subclasses implement :meth:`train_step`. Epoch scalars written in :meth:`after_epoch`:
    ``select/keep_ratio`` (fraction of seen samples used for updates, per network),
    ``select/target_keep_ratio`` (R(T)), ``select/precision`` / ``select/recall`` (when clean labels are
    known, summed over the epoch), ``noise/forget_rate`` (tau in force; 0 while ``auto`` is still warming
    up) and, after an ``auto`` estimate, ``noise/rate_gmm``, ``noise/rate_cj`` (and ``noise/rate_true``
    when clean labels are known); histogram ``samples/loss`` (per-sample training loss, mean of the two
    networks). Step terms: ``loss1``, ``loss2``, ``keep_ratio`` and ``precision``.

    Args (shared by the three methods):
        ctx: the method context (two networks from ``ctx.build_network()``; per-sample loss from
            ``ctx.build_loss(reduction="none")``, i.e. ``cfg.loss``, CE by default).
        forget_rate: tau in [0, 1), about the noise rate (the papers set it to the injected rate), or
            ``"auto"``: estimated once after ``estimate_epoch`` epochs (see ``methods/forget_rate.py``).
        num_gradual: T_k, epochs over which the forget rate ramps up (papers: 10).
        exponent: c in ``(T / T_k)^c`` (papers: 1).
        estimate_epoch: ``forget_rate: auto`` only: epochs on every sample before the estimate. Default 2:
            on digits (SGD 0.05) the mean estimate after 2 epochs was within 0.03 of the truth at
            symmetric 20/40/60 % and pair 45 %; slower-memorising setups (CIFAR, Adam 1e-3) use 10.
    """

    method_name = ""
    #: ranks by loss - log(prior) with ``data.annotations_prior`` (:func:`~robust_paddle.methods.selection.prior_loss_offset`)
    uses_clean_prior = True

    def __init__(self, ctx: MethodContext, *, forget_rate: float | str, num_gradual: int, exponent: float,
                 estimate_epoch: int) -> None:
        super().__init__(ctx)
        self.networks = {"net1": ctx.build_network(), "net2": ctx.build_network()}
        self.loss_fn = ctx.build_loss(reduction="none")
        where = f"method '{self.method_name}'"
        # checked by the registry against SmallLossParams; epoch counts resolve against train.epochs here
        self.num_gradual, self.exponent = epoch_param(ctx, num_gradual, "num_gradual"), float(exponent)
        estimate_epoch = epoch_param(ctx, estimate_epoch, "estimate_epoch")
        self.schedule = AutoForgetRate(forget_rate, num_gradual=self.num_gradual, exponent=self.exponent,
                                       estimate_epoch=estimate_epoch, epochs=ctx.cfg.train.epochs,
                                       where=where, seed=ctx.cfg.seed)
        # data.annotations_prior: -log(prior) joins each sample's loss in the ranking (selection.prior_loss_offset)
        self._offset = None if ctx.clean_prior is None else prior_loss_offset(ctx.clean_prior)
        self._counts = np.zeros(4, dtype=np.int64)  # clean selected, selected, clean seen, seen
        self._sample_loss = np.full(ctx.num_train, np.nan, dtype=np.float32)  # this epoch's training losses

    # ----------------------------------------------------------------------------- selection helpers
    def rank_offset(self, idx: paddle.Tensor, like: paddle.Tensor) -> paddle.Tensor | None:
        """[B] the prior's ranking offsets of the batch rows ``idx`` (None without ``data.annotations_prior``)."""
        if self._offset is None:
            return None
        return paddle.to_tensor(self._offset[idx.numpy().reshape(-1).astype(np.int64)], place=like.place)

    def keep_ratio(self, epoch: int) -> float:
        """R(T) for 0-based ``epoch``: ``1 - tau * min((T / T_k)^c, 1)`` (1 while ``auto`` warms up)."""
        return self.schedule.keep_ratio(epoch)

    def _record(self, y: paddle.Tensor, idx: paddle.Tensor, picks: list[np.ndarray], batch_size: int,
                losses: tuple[paddle.Tensor, paddle.Tensor]) -> dict[str, float]:
        """Add one step's selections (positions into the batch) and its per-sample losses (mean of the two
        networks) to the epoch's statistics; return the step terms."""
        self._sample_loss[idx.numpy().reshape(-1)] = (losses[0].numpy() + losses[1].numpy()) / 2
        n_sel = sum(len(p) for p in picks)
        terms = {"keep_ratio": n_sel / (len(picks) * batch_size)}
        self._counts[1] += n_sel
        self._counts[3] += len(picks) * batch_size
        clean_labels = self.ctx.clean_labels
        if clean_labels is not None:
            clean = y.numpy().reshape(-1) == clean_labels[idx.numpy().reshape(-1)]
            tp = sum(int(np.count_nonzero(clean[p])) for p in picks)
            self._counts[0] += tp
            self._counts[2] += len(picks) * int(np.count_nonzero(clean))
            if n_sel:
                terms["precision"] = tp / n_sel
        return terms

    @staticmethod
    def _positions(pick: paddle.Tensor | np.ndarray) -> np.ndarray:
        return pick.numpy() if isinstance(pick, paddle.Tensor) else np.asarray(pick)

    # ------------------------------------------------------------------------------------- epoch hooks
    def before_epoch(self, trainer: Trainer) -> None:
        self._counts[:] = 0
        self._sample_loss[:] = np.nan
        self.schedule.maybe_estimate(trainer, epoch=trainer.epoch, clean_labels=self.ctx.clean_labels)

    def after_epoch(self, trainer: Trainer) -> None:
        counts = self._counts
        if getattr(trainer, "distributed", False):  # data parallel: every rank counted its shard of each batch
            counts = dist.all_reduce_sum(counts)
        clean_sel, sel, clean, seen = (int(v) for v in counts)
        trainer.log_scalar("select/keep_ratio", sel / seen if seen else float("nan"))
        trainer.log_scalar("select/target_keep_ratio", self.keep_ratio(trainer.epoch))
        if self.ctx.clean_labels is not None:
            precision, recall = precision_recall_from_counts(clean_sel, sel, clean)
            trainer.log_scalar("select/precision", precision)
            trainer.log_scalar("select/recall", recall)
        for name, value in self.schedule.scalars().items():
            trainer.log_scalar(name, value)
        # the training-mode per-sample losses the selection ranked; filling this histogram also tells the
        # generic SampleStatsHook (robust_paddle.quality.report) that the method logs its own select/* statistics
        seen_loss = self._sample_loss[np.isfinite(self._sample_loss)]
        if seen_loss.size:
            trainer.log_histogram("samples/loss", seen_loss)

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"forget_rate": self.schedule.state_dict()}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"forget_rate"})
        if unknown:
            raise CheckpointError(f"{self.method_name}: checkpoint method state has unknown key(s) {unknown}; "
                             "it was written by another method")
        self.schedule.set_state_dict(state.get("forget_rate") or {})

    def _forward_pair(self, x: paddle.Tensor, y: paddle.Tensor
                      ) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        logits1, logits2 = self.networks["net1"](x), self.networks["net2"](x)
        return logits1, logits2, self.loss_fn(logits1, y), self.loss_fn(logits2, y)


@dataclasses.dataclass(frozen=True)
class SmallLossParams:
    """``method.params`` shared by ``co_teaching``, ``co_teaching_plus`` and ``jocor`` (checked by the registry)."""

    forget_rate: float | str = param("auto", min=0.0, max=1.0, max_open=True,
                                     doc="tau in [0, 1) (about the noise rate), 'auto', or a noise_estimate.json")
    num_gradual: float = param(10, min=0, doc="T_k: epochs over which the forget rate ramps up, or a fraction of the run in (0, 1)")
    exponent: float = param(1.0, min=0.0, min_open=True, doc="c in (T / T_k)^c")
    estimate_epoch: float = param(2, min=0, min_open=True, doc="forget_rate auto: epochs on every sample before the estimate (>= 1), or a fraction of the run in (0, 1)")


@dataclasses.dataclass(frozen=True)
class CoTeachingPlusParams(SmallLossParams):
    """``method.params`` of ``co_teaching_plus``."""

    init_epoch: float = param(20, min=0, doc="epochs of plain Co-teaching before the disagreement strategy, or a fraction of the run in (0, 1)")


@dataclasses.dataclass(frozen=True)
class JoCoRParams(SmallLossParams):
    """``method.params`` of ``jocor``."""

    co_lambda: float = param(0.9, min=0.0, max=1.0, doc="weight of the co-regularisation (symmetric KL)")


@METHODS.register("co_teaching")
class CoTeachingMethod(_TwoNetworkSmallLossMethod):
    """Co-teaching (Han et al. 2018, https://arxiv.org/abs/1804.06872).

    Per mini-batch each network ranks the samples by its own per-sample loss and keeps the ``R(T)``
    smallest; network 1 is then updated on network 2's selection and vice versa. The returned loss is
    ``loss1 + loss2`` (disjoint parameters, so one backward step trains both).

    Args:
        ctx: the method context (two networks from ``ctx.build_network()``).
        forget_rate, num_gradual, exponent, estimate_epoch: see :class:`_TwoNetworkSmallLossMethod`.
    """

    method_name = "co_teaching"
    Params = SmallLossParams

    def __init__(self, ctx: MethodContext, /, *, forget_rate: float | str = "auto", num_gradual: int = 10,
                 exponent: float = 1.0, estimate_epoch: int = 2) -> None:
        super().__init__(ctx, forget_rate=forget_rate, num_gradual=num_gradual, exponent=exponent,
                         estimate_epoch=estimate_epoch)

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int
                   ) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        _, _, l1, l2 = self._forward_pair(x, y)
        loss1, loss2, pick1, pick2 = co_teaching_losses(l1, l2, keep_ratio=self.keep_ratio(epoch),
                                                        offset=self.rank_offset(idx, l1))
        picks = [self._positions(pick1), self._positions(pick2)]
        terms = self._record(y, idx, picks, int(y.shape[0]), (l1, l2))
        return loss1 + loss2, {"loss1": loss1, "loss2": loss2, **terms}


@METHODS.register("co_teaching_plus")
class CoTeachingPlusMethod(_TwoNetworkSmallLossMethod):
    """Co-teaching+ (Yu et al. 2019, https://arxiv.org/abs/1901.04215): update by disagreement.

    For ``epoch < init_epoch`` a step is plain Co-teaching. Afterwards only the samples whose predicted
    classes differ between the networks are candidates; among those each network keeps the ``R(T)``
    smallest losses and the other network is updated on them (each loss is the mean over the kept
    samples). A batch without disagreement gives a zero loss (no update), as in the paper's algorithm.
    The forget-rate schedule is the reference code's default (``fr_type='type_1'``, as in Co-teaching).
    Extra term: ``disagree``, the fraction of the batch on which the networks disagree.

    Args:
        ctx: the method context (two networks from ``ctx.build_network()``).
        forget_rate, num_gradual, exponent, estimate_epoch: see :class:`_TwoNetworkSmallLossMethod`.
        init_epoch: epochs of plain Co-teaching before the disagreement strategy (reference code: 0 for
            MNIST, 20 for CIFAR-10, 5 for CIFAR-100).
    """

    method_name = "co_teaching_plus"
    Params = CoTeachingPlusParams

    def __init__(self, ctx: MethodContext, /, *, forget_rate: float | str = "auto", num_gradual: int = 10,
                 exponent: float = 1.0, estimate_epoch: int = 2, init_epoch: int = 20) -> None:
        super().__init__(ctx, forget_rate=forget_rate, num_gradual=num_gradual, exponent=exponent,
                         estimate_epoch=estimate_epoch)
        init_epoch = epoch_param(ctx, init_epoch, "init_epoch")
        check_training_after(ctx, init_epoch, keys="method.params.init_epoch", method=self.method_name,
                             what="its plain Co-teaching epochs")
        self.init_epoch = init_epoch

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int
                   ) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        logits1, logits2, l1, l2 = self._forward_pair(x, y)
        keep = self.keep_ratio(epoch)
        n = int(y.shape[0])
        extra: dict[str, float] = {}
        if epoch < self.init_epoch:
            loss1, loss2, pick1, pick2 = co_teaching_losses(l1, l2, keep_ratio=keep, offset=self.rank_offset(idx, l1))
            picks = [self._positions(pick1), self._positions(pick2)]
        else:
            dis = disagreement_indices(logits1, logits2)
            extra["disagree"] = len(dis) / n
            if len(dis) == 0:
                loss1, loss2 = (l1 * 0.0).sum(), (l2 * 0.0).sum()
                picks = [dis, dis]
            else:
                where = paddle.to_tensor(dis, place=l1.place)
                off = self.rank_offset(idx, l1)
                loss1, loss2, p1, p2 = co_teaching_losses(paddle.gather(l1, where), paddle.gather(l2, where),
                                                          keep_ratio=keep,
                                                          offset=None if off is None else paddle.gather(off, where))
                picks = [dis[self._positions(p1)], dis[self._positions(p2)]]
        terms = self._record(y, idx, picks, n, (l1, l2))
        return loss1 + loss2, {"loss1": loss1, "loss2": loss2, **terms, **extra}


@METHODS.register("jocor")
class JoCoRMethod(_TwoNetworkSmallLossMethod):
    """JoCoR (Wei et al. 2020, https://arxiv.org/abs/2003.02752): joint training with co-regularisation.

    Per mini-batch the joint loss ``(1 - lambda) * (l1 + l2) + lambda * (KL(p1||p2) + KL(p2||p1))`` is
    computed for every sample, the ``R(T)`` smallest are kept and their mean is one shared loss for both
    networks. Terms: ``loss1`` / ``loss2`` (supervised losses of the kept samples) and ``kl``.

    Args:
        ctx: the method context (two networks from ``ctx.build_network()``).
        forget_rate, num_gradual, exponent, estimate_epoch: see :class:`_TwoNetworkSmallLossMethod`.
        co_lambda: lambda in [0, 1] (authors' README: 0.9 on CIFAR-10 sym 20/50 and asym 40, 0.65 at
            sym 80, 0.85 on CIFAR-100; their example script: 0.95 on MNIST).
    """

    method_name = "jocor"
    Params = JoCoRParams

    def __init__(self, ctx: MethodContext, /, *, forget_rate: float | str = "auto", num_gradual: int = 10,
                 exponent: float = 1.0, estimate_epoch: int = 2, co_lambda: float = 0.9) -> None:
        super().__init__(ctx, forget_rate=forget_rate, num_gradual=num_gradual, exponent=exponent,
                         estimate_epoch=estimate_epoch)
        self.co_lambda = float(co_lambda)  # checked by the registry against Params

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int
                   ) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        logits1, logits2, l1, l2 = self._forward_pair(x, y)
        loss, pick, kl = jocor_losses(logits1, logits2, l1, l2, co_lambda=self.co_lambda,
                                      keep_ratio=self.keep_ratio(epoch), offset=self.rank_offset(idx, l1))
        terms = self._record(y, idx, [self._positions(pick)], int(y.shape[0]), (l1, l2))
        kept = {name: paddle.gather(v.detach(), pick).mean() for name, v in (("loss1", l1), ("loss2", l2),
                                                                             ("kl", kl))}
        return loss, {**kept, **terms}
