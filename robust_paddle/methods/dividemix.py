"""``dividemix``: two networks, GMM co-divide, label co-refinement/co-guessing and MixMatch.

Li, Socher and Hoi, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning", ICLR 2020,
https://arxiv.org/abs/2002.07394 (reference code: github.com/LiJunnan1992/DivideMix, ``Train_cifar.py``).

Deviations from the reference, forced by the one-loader trainer (each step gets one batch ``(x, y, idx)``):

* Labelled and unlabelled samples are split *inside* each batch by the peer network's clean
  probabilities (``prob > p_threshold``) instead of coming from two loaders. One epoch therefore visits
  every sample once, each batch holds labelled and unlabelled rows in the proportion of the division,
  and the MixMatch pool has ``views * batch_size`` rows (the reference: 64 labelled + 64 unlabelled, two
  views each, so ``data.batch_size: 128`` reproduces its pool size).
* Both networks update in every step (the sum of their losses; parameters are disjoint, so one backward
  trains both); the reference trains net1 for an epoch, then net2. The co-guess of the peer network
  is taken in eval mode, as in the reference, and the own network's guesses in train mode.
* Two augmented views: the batch is view 0 and view 1 an independent augmentation of the same samples
  (``ArrayDataset.get_x(index, view=1)``, computed in the loader's workers: :meth:`loader_views`) when
  ``data.augment`` is not ``none``. Without augmentation (e.g. sklearn digits, where flips and 4-pixel crops of 8x8 images
  destroy the digit) the two views would be identical, so one view is used: the refinement and guess
  averages are unchanged and the MixMatch pool is the batch itself.
* The division after epoch e is computed at the end of epoch e (see ``gmm_correction``), not at the start
  of e+1: the same networks, so the same division.

Addition: ``warmup: volmin`` replaces the CE warm-up by forward-corrected CE through a transition matrix each
network learns with a volume penalty (VolMinNet, :class:`~robust_paddle.methods.forward_correction.
LearnedTransition`). A CE warm-up learns the *noisy* posterior; on pair noise (45% of each class given
to its neighbour) that posterior gives a flipped label almost the same loss as a clean one (-log 0.45 vs
-log 0.55), so the first division is close to random (labelled-set precision 0.56 on digits). The
forward-corrected warm-up learns the *clean* posterior, whose loss on a flipped label is large: the
first division's AUC rose from 0.66 to 0.82 there, and with ``p_threshold: 0.7`` the pair-45 accuracy
from 86.1 +- 8.8% to 94.3 +- 3.6% (3 seeds; benchmarks/README.md), and within 0.2 points or better at the
other noise kinds there (the digits preset uses it).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError
from robust_paddle.losses.functional import to_one_hot
from robust_paddle.methods.base import MethodContext, epoch_param
from robust_paddle.methods.correction import linear_rampup, mix_forward, mix_lambda, refine_labels, sharpen
from robust_paddle.methods.forward_correction import LearnedTransition, forward_loss, transition_error
from robust_paddle.methods.gmm_correction import DIVISIONS, NOISE_MODES, Division, GMMDivisionMethod
from robust_paddle.methods.selection import class_balanced_mask
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

WARMUPS = ("ce", "volmin")


# ------------------------------------------------------------------------------------------- losses
def semi_losses(logits_x: paddle.Tensor, targets_x: paddle.Tensor, logits_u: paddle.Tensor,
                targets_u: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
    """DivideMix's ``SemiLoss`` without the weight: soft CE on labelled rows, squared error on unlabelled.

    Args:
        logits_x: [Nx, C] logits of the mixed labelled rows; targets_x: [Nx, C] their mixed targets.
        logits_u: [Nu, C] logits of the mixed unlabelled rows; targets_u: [Nu, C] their mixed targets.
            Either side may be empty (Nx or Nu = 0), giving a zero term.

    Returns:
        ``Lx = -mean_i sum_k t_ik log softmax(z_i)_k`` and ``Lu = mean_{i,k} (softmax(z_i)_k - t_ik)^2``.
    """
    zero = paddle.zeros([], dtype="float32")
    lx = zero if logits_x.shape[0] == 0 else \
        -(F.log_softmax(logits_x.astype("float32"), axis=1) * targets_x).sum(axis=1).mean()
    lu = zero if logits_u.shape[0] == 0 else \
        ((F.softmax(logits_u.astype("float32"), axis=1) - targets_u) ** 2).mean()
    return lx, lu


def prior_penalty(logits: paddle.Tensor) -> paddle.Tensor:
    """``KL(uniform || mean prediction) = sum_k (1/C) log((1/C) / mean_i p_ik)``: keeps all classes in use.

    Args:
        logits: [N, C].

    Returns:
        Scalar float32 Tensor (0 when the batch-mean prediction is uniform).
    """
    c = logits.shape[1]
    mean_p = F.softmax(logits.astype("float32"), axis=1).mean(axis=0)
    return (paddle.log(paddle.full([c], 1.0 / c, dtype="float32") / mean_p) / c).sum()


def _rows(t: paddle.Tensor, rows: paddle.Tensor) -> paddle.Tensor:
    return paddle.gather(t, rows)


# ------------------------------------------------------------------------------------------- method
@METHODS.register("dividemix")
class DivideMixMethod(GMMDivisionMethod):
    """Two networks that divide the data for each other and train semi-supervised with MixMatch.

    Each epoch after the CE warm-up: per-sample losses of each network over the training set (eval mode)
    are min-max normalised and a 2-component GMM gives each sample a clean probability; net1 trains on
    net2's division and vice versa (co-divide). A sample is labelled when its probability exceeds
    ``p_threshold``; its target is the label co-refinement ``sharpen(w y + (1 - w) p, T)`` (w: the peer's
    clean probability, p: the network's own prediction averaged over the views); unlabelled samples get
    the co-guess ``sharpen(mean of both networks' predictions, T)``. MixMatch mixes all rows with
    ``lambda' = max(l, 1 - l), l ~ Beta(alpha, alpha)``; the loss is
    ``Lx + lambda_u * rampup * Lu + penalty`` (soft CE, MSE, KL to the uniform prior).

    Args:
        ctx: method context.
        warmup_epochs: CE epochs before the first division (reference: 10 on CIFAR-10, 30 on CIFAR-100).
        lambda_u: unlabelled-loss weight (reference CIFAR-10: sym 20% 0, 50% 25, 80% 25, 90% 50, asym 40% 0).
        p_threshold: clean-probability threshold of the labelled set (0.5; 0.6 at 90% noise).
        T: sharpening temperature (0.5).
        alpha: Beta parameter of MixMatch (4).
        rampup_length: epochs of the linear ``lambda_u`` ramp-up after warm-up (16).
        noise_mode: ``"asym"`` adds the negative-entropy penalty to the warm-up CE.
        loss_window: the GMM fits the mean normalised loss of this many epochs (reference: 5 at 90% noise).
        prior_penalty: add the uniform-prior penalty (on in the reference's CIFAR recipe).
        warmup: ``"ce"`` (the reference) or ``"volmin"``: forward-corrected CE through a transition matrix
            learned per network with ``volume_weight * log|det T|`` (see the module docstring; the
            ``noise_mode: asym`` negative-entropy penalty is not added to it).
        volume_weight: ``volmin``: weight of the volume penalty (VolMinNet's 1e-4).
        t_lr_scale: ``volmin``: learning rate of the transition weights relative to the networks' (they
            must move within a few warm-up epochs).
        class_balance: > 0 chooses the labelled set per class (UNICON's uniform selection, Karim et al. 2022,
            arXiv 2203.14542; :func:`~robust_paddle.methods.selection.class_balanced_mask`): at 1 every class keeps
            its ``min(n_c, floor(labelled count / C))`` most probably clean samples. The mixtures are then fitted per
            class (``division: per_class``), so the rank and the co-refinement weight ``w`` of a sample are its
            clean probability within its class.
        division: ``"global"`` (the paper's one mixture) or ``"per_class"``.
    """

    name = "dividemix"
    paper = "arXiv:2002.07394; class_balance: UNICON, arXiv:2203.14542"  # the class docstring cites UNICON first
    uses = ()  # loss.*: warm-up and MixMatch losses are fixed by the paper (data.sampler does apply)
    ignores_because = ("cross-entropy (or the VolMinNet forward loss) in warm-up and the MixMatch losses (L_x "
                       "cross-entropy, L_u squared error) after it")

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``dividemix`` (checked by the registry)."""

        warmup_epochs: float = param(10, min=0, doc="CE epochs before the first division (10 on CIFAR-10, 30 on CIFAR-100), or a fraction of the run in (0, 1)")
        lambda_u: float = param(25.0, min=0.0, doc="weight of the unlabelled MSE loss (0 at sym 20% / asym 40%)")
        p_threshold: float = param(0.5, min=0.0, max=1.0, doc="clean probability above which a sample is labelled")
        T: float = param(0.5, min=0.0, min_open=True, doc="sharpening temperature of the label guesses")
        alpha: float = param(4.0, min=0.0, min_open=True, doc="Beta(alpha, alpha) of MixMatch's mixing")
        rampup_length: float = param(16, min=0, doc="epochs of the linear lambda_u ramp-up after the warm-up, or a fraction of the run in (0, 1)")
        noise_mode: str = param("sym", choices=NOISE_MODES, doc="asym adds the negative-entropy warm-up penalty")
        loss_window: int = param(1, min=1, doc="divisions fit the mean normalised loss of this many epochs")
        prior_penalty: bool = param(True, doc="add the uniform-prior penalty (KL to uniform mean prediction)")
        warmup: str = param("ce", choices=WARMUPS, doc="ce, or volmin: forward-corrected CE through learned T")
        volume_weight: float = param(1e-4, min=0.0, doc="volmin: weight of log|det T| (VolMinNet's 1e-4)")
        t_lr_scale: float = param(20.0, min=0.0, min_open=True, doc="volmin: learning rate of T relative to the networks'")
        class_balance: float = param(0.0, min=0.0, max=1.0, doc="labelled set per class: 1 = UNICON's uniform "
                                     "selection (every class keeps min(n_c, labelled count / C)), 0 = off; implies "
                                     "division: per_class")
        division: str = param("global", choices=DIVISIONS, doc="per_class fits one loss mixture per given label "
                              "(gmm_correction's option)")

    def __init__(self, ctx: MethodContext, *, warmup_epochs: int = 10, lambda_u: float = 25.0,
                 p_threshold: float = 0.5, T: float = 0.5, alpha: float = 4.0, rampup_length: int = 16,
                 noise_mode: str = "sym", loss_window: int = 1, prior_penalty: bool = True, warmup: str = "ce",
                 volume_weight: float = 1e-4, t_lr_scale: float = 20.0, class_balance: float = 0.0,
                 division: str = "global") -> None:
        # a class-balanced selection judges every sample within its class: the global mixture's posterior is ~0 for
        # every member of a class the networks have not learnt yet (clean or not), which would rank them arbitrarily
        # and, as the label co-refinement weight, erase the given label of every row the class quota keeps
        super().__init__(ctx, warmup_epochs=warmup_epochs, p_threshold=p_threshold, noise_mode=noise_mode,
                         loss_window=loss_window, division="per_class" if float(class_balance) > 0 else division)
        # checked by the registry against Params; the constructor takes the validated values
        self.lambda_u, self.T, self.alpha = float(lambda_u), float(T), float(alpha)
        self.rampup_length = epoch_param(ctx, rampup_length, "rampup_length")
        self.use_prior_penalty, self.warmup = bool(prior_penalty), warmup
        self.volume_weight, self.class_balance = float(volume_weight), float(class_balance)
        self._balanced: list[tuple[np.ndarray, np.ndarray] | None] = [None, None]
        self.networks = {"net1": ctx.build_network(), "net2": ctx.build_network()}
        self.transitions = [LearnedTransition(ctx.num_classes, lr_scale=float(t_lr_scale)) for _ in self.networks] \
            if self.warmup == "volmin" else []
        for t in self.transitions:  # outside the DataParallel networks: average their gradients over ranks
            dist.average_gradient_across_ranks(t.w)  # (no-op in one process; data parallelism is set up by now)
        self.divisions = [Division(), Division()]

    def parameters(self) -> list[paddle.Tensor]:
        """Both networks' parameters, then the learned transition weights (``warmup: volmin``)."""
        return super().parameters() + [t.w for t in self.transitions]

    def loader_views(self, dataset: Any) -> tuple[tuple[int, bool], ...]:
        """View 1 (weak) of every sample when the training data is augmented, else none."""
        return ((1, False),) if getattr(getattr(dataset, "pipeline", None), "augmented", False) else ()

    @staticmethod
    def views(batch: tuple[paddle.Tensor, ...]) -> list[paddle.Tensor]:
        """The batch's inputs plus, with augmentation, the second view the loader added (``batch[3]``)."""
        return [batch[0], *batch[3:4]]

    def volmin_loss(self, logits: paddle.Tensor, y: paddle.Tensor, k: int) -> tuple[paddle.Tensor, paddle.Tensor]:
        """``warmup: volmin``: ``mean -log (p^T T_k)_y + volume_weight * log|det T_k|``; returns (loss, the
        forward-corrected CE)."""
        t = self.transitions[k]()
        fwd = forward_loss(logits, y, t).mean()
        return fwd + self.volume_weight * LearnedTransition.volume(t), fwd

    def after_epoch(self, trainer: Trainer) -> None:
        if self.transitions and trainer.epoch < self.warmup_epochs:
            self._log_transitions(trainer)
        super().after_epoch(trainer)

    def _log_transitions(self, trainer: Trainer) -> None:
        """``noise/t_error`` (mean |T - realised| per entry, both networks) when clean labels are known; the
        mean learned matrix at the end of the warm-up."""
        with paddle.no_grad():
            t = np.mean([tr().numpy() for tr in self.transitions], axis=0)
        clean = self.ctx.clean_labels
        if clean is not None:
            trainer.log_scalar("noise/t_error",
                               transition_error(t, np.asarray(clean), np.asarray(self.ctx.train_labels)))
        if trainer.epoch + 1 == self.warmup_epochs:
            logger.info("%s: transition matrix learned in the warm-up (mean of both networks)%s\n%s", self.name,
                        f", mean |T - T_true| {trainer.epoch_scalars['noise/t_error']:.4f}" if clean is not None else "",
                        np.array2string(t, precision=3, suppress_small=True))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.transitions:
            state["transitions"] = [t.w.numpy() for t in self.transitions]
        return state

    def set_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state or {})
        weights = state.pop("transitions", None)
        super().set_state_dict(state)
        if weights is None:
            return
        if len(weights) != len(self.transitions):
            raise CheckpointError(f"method state has {len(weights)} learned transition matrices, this run keeps "
                             f"{len(self.transitions)} (method.params.warmup: {self.warmup!r})")
        for t, w in zip(self.transitions, weights):
            t.w.set_value(np.asarray(w, dtype=np.float32))

    def lambda_u_now(self, epoch: int) -> float:
        """``lambda_u * linear_rampup(epoch + batch / batches, warmup_epochs, rampup_length)``."""
        current = epoch + self._batch / self._num_batches
        return self.lambda_u * linear_rampup(current, self.warmup_epochs, self.rampup_length)

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        """CE (+ penalty) for both networks during warm-up, then the DivideMix loss of both networks."""
        x, y, idx = batch[:3]
        nets = [self.networks["net1"], self.networks["net2"]]
        if self.in_warmup(epoch):
            self._batch += 1
            pairs = [self.volmin_loss(net(x), y, k) if self.transitions else self.warmup_loss(net(x), y)
                     for k, net in enumerate(nets)]
            loss = pairs[0][0] + pairs[1][0]
            return loss, {"loss": loss, "ce": (pairs[0][1] + pairs[1][1]) / 2, "lambda_u": 0.0}
        lam_u = self.lambda_u_now(epoch)
        views = self.views(batch)
        onehot = to_one_hot(y, self.num_classes)
        with paddle.no_grad():  # each network's own prediction, train mode, averaged over the views
            own = [paddle.stack([F.softmax(net(v).astype("float32"), axis=1) for v in views]).mean(axis=0)
                   for net in nets]
        total, sums = None, {"lx": 0.0, "lu": 0.0, "penalty": 0.0, "labeled": 0.0}
        for k in range(len(nets)):
            w = self.sample_prob(1 - k, idx)  # co-divide: net k trains on its peer's division
            mask = self.labeled_mask(1 - k, idx, w)
            loss_k, parts = self._mixmatch_loss(k, nets, views, onehot, own[k], w, mask, lam_u, epoch)
            total = loss_k if total is None else total + loss_k
            for key, v in parts.items():
                sums[key] += v / len(nets)
        self._batch += 1
        return total, {"loss": total, **sums, "lambda_u": lam_u}

    def labeled_mask(self, k: int, idx: paddle.Tensor, w: paddle.Tensor) -> np.ndarray:
        """[B] bool: the batch rows in division ``k``'s labelled set: ``w > p_threshold``, or with ``class_balance >
        0`` the rows of :meth:`balanced_set` (computed once per division)."""
        if self.class_balance <= 0:
            return (w > self.p_threshold).numpy()
        return self.balanced_set(k)[idx.numpy().astype(np.int64)]

    def balanced_set(self, k: int) -> np.ndarray:
        """[N] bool: division ``k``'s class-balanced labelled set, :func:`~robust_paddle.methods.selection.
        class_balanced_mask` of its per-class clean probabilities, ties (saturated posteriors) broken by the
        normalised loss the mixtures were fitted on."""
        division = self.divisions[k]
        cached = self._balanced[k]
        if cached is None or cached[0] is not division.prob:  # a new division: recompute the whole-set mask once
            tiebreak = np.mean(division.history, axis=0) if division.history else None
            cached = (division.prob, class_balanced_mask(division.prob, self.ctx.train_labels,
                                                         threshold=self.p_threshold, balance=self.class_balance,
                                                         num_classes=self.num_classes, tiebreak=tiebreak))
            self._balanced[k] = cached
        return cached[1]

    def _mixmatch_loss(self, k: int, nets: list[paddle.nn.Layer], views: list[paddle.Tensor], onehot: paddle.Tensor,
                       own: paddle.Tensor, w: paddle.Tensor, mask: np.ndarray, lam_u: float,
                       epoch: int) -> tuple[paddle.Tensor, dict[str, float]]:
        lab, unl = np.flatnonzero(mask), np.flatnonzero(~mask)
        n_views = len(views)
        parts_x, parts_t = [], []
        with paddle.no_grad():
            if lab.size:
                rows = paddle.to_tensor(lab)
                tx = sharpen(refine_labels(_rows(onehot, rows), _rows(own, rows), _rows(w, rows)), self.T)
                parts_x += [_rows(v, rows) for v in views]
                parts_t += [tx] * n_views
            if unl.size:
                rows = paddle.to_tensor(unl)
                peer = nets[1 - k]
                peer.eval()
                try:
                    peer_p = paddle.stack([F.softmax(peer(_rows(v, rows)).astype("float32"), axis=1)
                                           for v in views]).mean(axis=0)
                finally:
                    peer.train()
                tu = sharpen((_rows(own, rows) + peer_p) / 2, self.T)
                parts_x += [_rows(v, rows) for v in views]
                parts_t += [tu] * n_views
        inputs, targets = paddle.concat(parts_x), paddle.concat(parts_t)
        rng = np.random.default_rng([int(self.ctx.cfg.seed) % 2**32, epoch, self._batch, k])
        lam = mix_lambda(self.alpha, rng)
        logits, mixed_t = mix_forward(nets[k], inputs, targets, lam=lam, perm=rng.permutation(inputs.shape[0]))
        n_x = n_views * lab.size
        lx, lu = semi_losses(logits[:n_x], mixed_t[:n_x], logits[n_x:], mixed_t[n_x:])
        penalty = prior_penalty(logits) if self.use_prior_penalty else paddle.zeros([], dtype="float32")
        loss = lx + lam_u * lu + penalty
        return loss, {"lx": float(lx), "lu": float(lu), "penalty": float(penalty), "labeled": lab.size / mask.size}
