"""``gmm_correction``: one network, GMM clean probabilities and label refinement (a light DivideMix).

Also holds the division machinery shared with :mod:`robust_paddle.methods.dividemix`: the eval-mode
per-sample losses of each network (read from the trainer's cached pass over the training set, which the
sample statistics and the report of the same weights share), the per-network GMM :class:`Division` (with the loss
history DivideMix averages at 90% noise) and the epoch logging.

When divisions happen: after every epoch from the end of the warm-up on (``method.after_epoch``), the
networks as they are at the end of epoch e divide the training set for epoch e+1. This is the reference's
order (its ``eval_train`` runs at the start of epoch e+1 on the same weights) while the logged scalars,
histograms and :meth:`clean_probability` describe the networks of the same epoch row, and the final
probabilities those of the final networks (what the label-issue report needs). The probabilities are in
the method state, so a run resumed from the checkpoint after epoch e trains epoch e+1 on the same division.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError
from robust_paddle.losses.functional import per_sample_ce, to_one_hot
from robust_paddle.methods.base import Method, MethodContext, check_training_after, epoch_param
from robust_paddle.methods.correction import (
    combine_clean_prior,
    loss_clean_probability,
    mix_forward,
    mix_lambda,
    normalize_losses,
    refine_labels,
    sharpen,
    split_precision_recall,
)
from robust_paddle.ops import derive_seed
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

NOISE_MODES = ("sym", "asym")
#: ``division``: one loss mixture over the training set (DivideMix), or one per given label
DIVISIONS = ("global", "per_class")


# ------------------------------------------------------------------------------------- shared pieces
@paddle.no_grad()
def train_set_losses(trainer: Trainer) -> np.ndarray:
    """Per-sample cross-entropy of every training sample under each of the method's networks, in eval mode.

    Read from the trainer's cached, shard-aware pass (:meth:`~robust_paddle.engine.train_pass.TrainSetPass.
    train_set_outputs`: ``train_eval`` loader, no augmentation), so the division, the sample statistics and
    the report of one weights state share one pass; the labels are the training set's current ones. Data
    parallel: every rank calls it together and returns the same array.

    Returns:
        [K, N] float64, row k for the k-th network of ``method.networks``, column = dataset index.
    """
    outputs = trainer.train_set_outputs()
    labels = paddle.to_tensor(np.asarray(trainer.loaders["train_eval"].dataset.labels, dtype=np.int64))
    return np.stack([per_sample_ce(paddle.to_tensor(z), labels).numpy() for z in outputs.networks.values()]
                    ).astype(np.float64)


def _normalized(losses: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """[N] float32 min-max normalised losses, within each class when ``labels`` is given (zeros where flat)."""
    out = np.zeros(len(losses), dtype=np.float32)
    groups = [np.arange(len(losses))] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for members in groups:
        if members.size >= 2 and float(np.ptp(losses[members])) > 0.0:
            out[members] = normalize_losses(losses[members])
    return out


@dataclass
class Division:
    """One network's GMM division of the training set.

    Attributes:
        prob: [N] float32 clean probabilities of the last division, None before the first.
        history: normalised losses of the last ``window`` divisions (DivideMix averages 5 at 90% noise).
    """

    prob: np.ndarray | None = None
    history: list[np.ndarray] = field(default_factory=list)

    def update(self, losses: np.ndarray, *, window: int, seed: int, where: str = "GMM division",
               prior: np.ndarray | None = None, labels: np.ndarray | None = None) -> float:
        """Fit the mixture on ``losses`` [N] (raw CE); returns the seconds spent normalising and fitting.

        All-equal losses (normalised to zeros) or a mixture that does not separate make every sample clean
        with a warning (``correction.loss_clean_probability``) instead of stopping the run. ``prior`` [N] (the
        annotators' clean prior, ``data.annotations_prior``; NaN = none) replaces the mixture's single clean
        share per sample (``correction.combine_clean_prior``); with a fallen-back mixture it is the division.

        ``labels`` [N] (the given labels) makes the division per class: each class's losses are normalised and
        fitted by their own mixture, so a class whose losses are all high (a network biased towards another
        class) keeps its lowest-loss samples as clean instead of being emptied. A class with fewer than 2
        samples, or whose mixture does not separate, counts as clean.
        """
        start = time.perf_counter()
        self.history = (self.history + [_normalized(losses, labels)])[-window:]
        inputs = np.mean(self.history, axis=0) if len(self.history) > 1 else self.history[-1]
        if labels is None:
            prob, _, _ = loss_clean_probability(inputs, seed=seed, normalize=False, where=where)
        else:
            prob = np.ones(len(inputs), dtype=np.float64)
            for c in np.unique(labels):
                members = np.flatnonzero(labels == c)
                if members.size >= 2:
                    prob[members], _, _ = loss_clean_probability(inputs[members], seed=seed, normalize=False,
                                                                 where=f"{where}, class {int(c)}")
        self.prob = combine_clean_prior(prob, prior).astype(np.float32)
        return time.perf_counter() - start

    def state_dict(self) -> dict[str, Any]:
        return {"prob": self.prob, "history": list(self.history)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Division:
        prob = state.get("prob")
        return cls(prob=None if prob is None else np.asarray(prob, dtype=np.float32),
                   history=[np.asarray(h, dtype=np.float32) for h in state.get("history", [])])


def clean_mask_of(trainer: Trainer, ctx: MethodContext) -> np.ndarray | None:
    """[N] bool ``labels == clean_labels`` of the training set, or None when the truth is unknown."""
    ds = trainer.loaders["train_eval"].dataset
    clean = getattr(ds, "clean_labels", None)
    clean = ctx.clean_labels if clean is None else clean
    return None if clean is None else np.asarray(ds.labels) == np.asarray(clean)


def log_division(trainer: Trainer, *, losses: np.ndarray, probs: Sequence[np.ndarray], threshold: float,
                 clean_mask: np.ndarray | None, gmm_s: float, pass_s: float, train_s: float | None) -> None:
    """Epoch scalars and histograms of a division (averaged over the networks' divisions).

    Scalars: ``noise/rate_gmm`` (mean of ``1 - clean_prob``), ``select/labeled_ratio``,
    ``select/precision`` and ``select/recall`` (when clean labels are known), ``time/gmm_s`` (mixture
    fits), ``time/divide_s`` (loss pass + fits) and ``time/gmm_frac`` (fits / training-epoch time).
    Histograms: ``samples/loss`` (raw per-sample CE, mean over networks), ``samples/clean_prob``.
    """
    log = trainer.log_scalar
    log("noise/rate_gmm", float(np.mean([np.mean(1.0 - p) for p in probs])))
    log("select/labeled_ratio", float(np.mean([np.mean(p > threshold) for p in probs])))
    if clean_mask is not None:
        pr = [split_precision_recall(p > threshold, clean_mask) for p in probs]
        log("select/precision", float(np.mean([v[0] for v in pr])))
        log("select/recall", float(np.mean([v[1] for v in pr])))
    log("time/gmm_s", gmm_s)
    log("time/divide_s", gmm_s + pass_s)
    if train_s:
        log("time/gmm_frac", gmm_s / train_s)
    trainer.log_histogram("samples/loss", losses.mean(axis=0))
    trainer.log_histogram("samples/clean_prob", np.mean(probs, axis=0))


def neg_entropy(logits: paddle.Tensor) -> paddle.Tensor:
    """DivideMix's confidence penalty for asymmetric noise: ``mean_i sum_k p_ik log p_ik`` (scalar)."""
    logp = F.log_softmax(logits.astype("float32"), axis=1)
    return (logp.exp() * logp).sum(axis=1).mean()


class GMMDivisionMethod(Method):
    """Shared bookkeeping of methods that divide the training set with per-network GMMs after warm-up.

    With ``ctx.clean_prior`` (``data.annotations_prior``) every division combines the loss mixture with that
    per-sample prior (:func:`robust_paddle.methods.correction.combine_clean_prior`).
    """

    name = "gmm"
    uses_clean_prior = True

    def __init__(self, ctx: MethodContext, *, warmup_epochs: int, p_threshold: float, noise_mode: str,
                 loss_window: int, division: str = "global") -> None:
        super().__init__(ctx)
        self.division = division
        # the values were checked by the registry against the method's Params; what depends on the run is here
        self.warmup_epochs = epoch_param(ctx, warmup_epochs, "warmup_epochs")
        check_training_after(ctx, self.warmup_epochs, keys="method.params.warmup_epochs", method=self.name,
                             what="the warm-up")
        self.p_threshold, self.noise_mode, self.loss_window = float(p_threshold), noise_mode, int(loss_window)
        self.divisions: list[Division] = []
        self._epoch_start: float | None = None
        self._batch = 0
        self._num_batches = 1

    def in_warmup(self, epoch: int) -> bool:
        return epoch < self.warmup_epochs or any(d.prob is None for d in self.divisions)

    def divide(self, trainer: Trainer) -> None:
        """Per-sample losses of every network -> one GMM division per network, logged."""
        train_s = None if self._epoch_start is None else time.perf_counter() - self._epoch_start
        start = time.perf_counter()
        losses = train_set_losses(trainer)
        pass_s = time.perf_counter() - start
        names = list(self.networks)
        labels = np.asarray(trainer.loaders["train_eval"].dataset.labels, dtype=np.int64) \
            if self.division == "per_class" else None  # the labels the losses were taken against
        gmm_s = sum(d.update(losses[k], window=self.loss_window, seed=derive_seed(self.ctx.cfg.seed, trainer.epoch, k),
                             where=f"{self.ctx.cfg.method.name} {names[k]}, epoch {trainer.epoch + 1}",
                             prior=self.ctx.clean_prior, labels=labels)
                    for k, d in enumerate(self.divisions))
        if getattr(trainer, "distributed", False):
            # every rank fitted the same GMM on the same gathered losses; rank 0's result is made the only
            # one, so clean probabilities are bit-identical even if BLAS or threads round differently
            for d in self.divisions:
                d.prob = dist.broadcast_array(d.prob)
        log_division(trainer, losses=losses, probs=[d.prob for d in self.divisions], threshold=self.p_threshold,
                     clean_mask=clean_mask_of(trainer, self.ctx), gmm_s=gmm_s, pass_s=pass_s, train_s=train_s)
        logger.info("epoch %d: GMM division, noise rate %.3f, labelled %.3f (GMM %.3fs, loss pass %.2fs)",
                    trainer.epoch + 1, trainer.epoch_scalars["noise/rate_gmm"],
                    trainer.epoch_scalars["select/labeled_ratio"], gmm_s, pass_s)

    def before_epoch(self, trainer: Trainer) -> None:
        self._batch, self._num_batches = 0, max(1, len(trainer.loaders["train"]))
        if trainer.epoch >= self.warmup_epochs and any(d.prob is None for d in self.divisions):
            self.divide(trainer)  # warmup_epochs=0, or a checkpoint without the division
        self._epoch_start = time.perf_counter()

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch + 1 >= self.warmup_epochs:
            self.divide(trainer)
        self._epoch_start = None

    def clean_probability(self) -> np.ndarray | None:
        """[N] mean clean probability over the networks' latest divisions (None during warm-up)."""
        if not self.divisions or any(d.prob is None for d in self.divisions):
            return None
        return np.mean([d.prob for d in self.divisions], axis=0).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"divisions": [d.state_dict() for d in self.divisions]}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        divs = (state or {}).get("divisions", [])
        if len(divs) != len(self.divisions):
            raise CheckpointError(f"method state has {len(divs)} GMM divisions, method '{self.name}' keeps "
                             f"{len(self.divisions)}: the checkpoint was written by another method")
        self.divisions = [Division.from_state(d) for d in divs]

    def sample_prob(self, k: int, idx: paddle.Tensor) -> paddle.Tensor:
        """[B] float32 clean probabilities of the batch rows ``idx`` under division ``k``."""
        return paddle.to_tensor(self.divisions[k].prob[idx.numpy().astype(np.int64)], dtype="float32")

    def warmup_loss(self, logits: paddle.Tensor, y: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
        """CE warm-up, plus the negative-entropy penalty for asymmetric noise; returns (loss, ce)."""
        ce = per_sample_ce(logits, y).mean()
        return (ce + neg_entropy(logits) if self.noise_mode == "asym" else ce), ce


# ------------------------------------------------------------------------------------- the method
@METHODS.register("gmm_correction")
class GMMCorrectionMethod(GMMDivisionMethod):
    """One network; after a warm-up, a GMM on per-sample CE losses gives each sample a clean probability
    w and training uses refined labels ``y' = w * y + (1 - w) * p`` with a w-weighted loss.

    ``p`` is the network's own prediction (detached, sharpened with temperature ``T``). The refinement is
    Arazo et al.'s dynamic bootstrapping (https://arxiv.org/abs/1904.11238, a beta mixture there) with the
    mixture and the clean probability of DivideMix (Li et al. 2020, https://arxiv.org/abs/2002.07394):
    one forward/backward per batch plus one eval pass over the training set per epoch, about half of
    DivideMix's cost per network and without the second network.

    The training loss is ``cfg.loss`` (CE by default, as in both papers) on the hard labels during the
    warm-up and on the refined soft targets afterwards, with ``sample_weight = w``; with ``loss: ce`` the
    step loss is ``mean_i w_i * CE(logits_i, y'_i)``. A robust loss (e.g. ``gce``) keeps the warm-up from
    memorising the noisy labels at high noise rates, so the first division is cleaner. The GMM always
    models per-sample CE.

    Args:
        ctx: method context.
        warmup_epochs: epochs of plain CE before the first division.
        p_threshold: clean-probability threshold of the logged selection (``select/*``).
        T: sharpening temperature of ``p`` (1 = none).
        weighting: ``"clean_prob"`` multiplies each sample's loss by w (noisy samples fade out), ``"none"``
            keeps the refinement only (Arazo et al.).
        mixup_alpha: > 0 trains on mixup of the batch (Beta(alpha, alpha), as Arazo et al.'s M-DYR); ``p``
            then comes from an extra eval-mode forward on the unmixed batch. 0 disables.
        noise_mode: ``"asym"`` adds the negative-entropy penalty during warm-up.
        loss_window: divisions average the normalised losses of this many epochs.
        division: ``"global"`` (one mixture, the papers') or ``"per_class"`` (one mixture per given label, see
            :meth:`Division.update`): with a network biased towards one class every sample labelled with the
            other looks noisy to a global mixture, its weight w goes to 0, and the refined targets follow the
            network's own predictions further to that class (the collapse seen on the text benchmark).
    """

    name = "gmm_correction"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``gmm_correction`` (checked by the registry)."""

        warmup_epochs: float = param(10, min=0, doc="epochs of plain CE before the first division, or a fraction of the run in (0, 1)")
        p_threshold: float = param(0.5, min=0.0, max=1.0, doc="clean-probability threshold of the logged selection")
        T: float = param(1.0, min=0.0, min_open=True, doc="sharpening temperature of the prediction (1 = none)")
        weighting: str = param("clean_prob", choices=("clean_prob", "none"), doc="clean_prob weights each loss by w")
        mixup_alpha: float = param(0.0, min=0.0, doc="> 0 trains on mixup of the batch (M-DYR); 0 disables")
        noise_mode: str = param("sym", choices=NOISE_MODES, doc="asym adds the negative-entropy warm-up penalty")
        loss_window: int = param(1, min=1, doc="divisions average the normalised losses of this many epochs")
        division: str = param("global", choices=DIVISIONS, doc="per_class fits one loss mixture per given label, "
                              "so no class can be emptied")

    def __init__(self, ctx: MethodContext, *, warmup_epochs: int = 10, p_threshold: float = 0.5, T: float = 1.0,
                 weighting: str = "clean_prob", mixup_alpha: float = 0.0, noise_mode: str = "sym",
                 loss_window: int = 1, division: str = "global") -> None:
        super().__init__(ctx, warmup_epochs=warmup_epochs, p_threshold=p_threshold, noise_mode=noise_mode,
                         loss_window=loss_window, division=division)
        self.T, self.weighting, self.mixup_alpha = float(T), weighting, float(mixup_alpha)
        self.networks = {"net": ctx.build_network()}
        self.loss_fn = ctx.build_loss()
        self.divisions = [Division()]

    def _draw_mix(self, n: int, epoch: int, batch: int) -> tuple[float, np.ndarray]:
        rng = np.random.default_rng([int(self.ctx.cfg.seed) % 2**32, epoch, batch])
        return mix_lambda(self.mixup_alpha, rng), rng.permutation(n)

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        """Warm-up: ``cfg.loss`` on the labels. Then ``cfg.loss`` on ``y' = w y + (1 - w) p`` weighted by w.

        With ``mixup_alpha > 0`` the warm-up trains on mixed inputs and targets too (as Arazo et al. train
        with mixup from the first epoch): mixup slows the memorisation of noisy labels, which keeps the
        two loss populations apart for the first division.
        """
        x, y, idx = batch[:3]
        net = self.networks["net"]
        b = self._batch
        self._batch += 1
        onehot = to_one_hot(y, self.num_classes)
        if self.in_warmup(epoch):
            target: paddle.Tensor = y
            if self.mixup_alpha > 0:
                lam, perm = self._draw_mix(x.shape[0], epoch, b)
                logits, target = mix_forward(net, x, onehot, lam=lam, perm=perm)
            else:
                logits = net(x)
            sup = self.loss_fn(logits, target)
            loss = sup + neg_entropy(logits) if self.noise_mode == "asym" else sup
            return loss, {"loss": loss, "warmup_loss": sup}
        w = self.sample_prob(0, idx)
        if self.mixup_alpha > 0:
            with paddle.no_grad():
                net.eval()
                pred = F.softmax(net(x).astype("float32"), axis=1)
                net.train()
            target = refine_labels(onehot, sharpen(pred, self.T), w)
            lam, perm = self._draw_mix(x.shape[0], epoch, b)
            logits, target = mix_forward(net, x, target, lam=lam, perm=perm)
            weight = lam * w + (1 - lam) * paddle.gather(w, paddle.to_tensor(perm))
        else:
            logits = net(x)
            pred = F.softmax(logits.detach().astype("float32"), axis=1)
            target, weight = refine_labels(onehot, sharpen(pred, self.T), w), w
        loss = self.loss_fn(logits, target.detach(), sample_weight=weight if self.weighting == "clean_prob" else None)
        return loss, {"loss": loss, "mean_w": float(w.mean())}
