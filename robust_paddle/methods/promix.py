"""``promix``: progressive selection of clean samples with debiased semi-supervised training (ProMix).

Wang, Xiao, Zhang, Liu, Liu & Chen 2022, "ProMix: Combating Label Noise via Maximizing Clean Sample Utility"
(IJCAI 2023), https://arxiv.org/abs/2207.10276; the reference code's ``Train_promix.py``. Two peer networks
``net1``, ``net2`` (``networks: 1`` keeps only ``net1``: about half the cost, no peer), each with its primary
classifier ``h`` and an auxiliary pseudo-label head ``h_AP`` on the same features (``forward_features``: one
forward of a view serves both heads). After a CE warm-up (``warmup_epochs``), per network ``k``:

* Class-wise small-loss selection (CSS), after every epoch, on the eval-mode per-sample CE of the whole
  training set: in every class ``j`` (by given label) the ``max(1, min(ceil(rho N / C), n_j))`` samples of
  smallest loss; ``rho`` ramps linearly from ``rho_start`` to ``rho_end`` over ``rampup_epochs``. Being
  class-wise it keeps every class in the clean set (the class balance UNICON adds to DivideMix; ``class_balance:
  0`` selects the same number of smallest losses over the whole set instead).
* Matched high-confidence selection (MHCS), per batch: a sample whose predicted probability of its given label
  exceeds ``tau`` joins the clean rows ``D_l`` of that batch; the rest are ``D_u``.
* Primary head on ``D_l``, logit-adjusted by ``debias_output * log pi`` (``pi`` a moving average of the
  predictions on ``D_l``, momentum ``bias_momentum``): CE on the weak view + ``w`` x (CE on the strong view +
  mixup CE, ``Beta(alpha, alpha)``, ``lam = max(lam, 1 - lam)``); ``w`` ramps 0 -> 1 over ``rampup_epochs``.
  The reference draws a separate mixup batch for each head (``mixup_draws: 2``, set in the CIFAR presets); the
  default ``mixup_draws: 1`` lets both heads classify one draw, which saves a backbone forward and backward per
  network and step: on MNIST-5k (5 noise kinds x 3 seeds) its accuracy equals the reference's within seed
  spread (61.8 vs 58.1 at sym-80, 82.1 vs 82.2 at pair-45, 93.4-95.5 vs 93.1-95.4 elsewhere) at 0.80x its epoch
  time (benchmarks/README.md, "New methods").
* Pseudo head: the same three terms on ``D_l`` plus ``beta`` x CE of both views of ``D_u`` (adjusted by
  ``pi_u``, the average on ``D_u``) against ``sharpen(softmax(z - debias_pl * log pi_u), T)`` of the primary
  head's weak-view logits. ``beta = 0.1 * epoch / (2 * rampup_epochs)``, and 0 from ``2 * rampup_epochs`` on
  (the reference's schedule).

Options of the reference (declared; off by default here, on in the CIFAR presets as ``Train_promix.py`` runs
them): ``fmix`` adds, per head, the FMix term (:func:`~robust_paddle.ops.fmix_mask`: a low-frequency binary mask
picks each pixel from the row or a partner, CE weighted by the mask's ``lam``) with the same weight ``w`` as
mixup -- two more forwards per network (one with ``mixup_draws: 1``: both heads on one FMix batch); ``lga_epochs`` turns on label guessing by agreement
(:func:`label_guessing_by_agreement`) in the last epochs: while a network's clean rows are under
``lga_threshold`` of the batch, the rows both networks predict alike above ``tau`` join them with the network's
debiased prediction as the label (data parallel: per rank, on its shard of the batch). Evaluation and export use
the mean of the primary heads' logits (the reference's ``outputs_mean_ori``); the pseudo heads only shape the features.

Without any augmentation (``data.augment`` and ``data.strong_augment`` both ``none``, e.g. sklearn digits) the
strong view is the batch itself: the loader then sends no second view, and for a network whose features hold no
dropout one forward gives both views' features (the same values and gradients as two forwards; the heads'
dropout still draws per view). The one difference: BatchNorm's running averages take one update per batch
instead of the reference's two identical ones.

Shared machinery: the training-set pass, mixup and sharpening of :mod:`~robust_paddle.methods.correction` /
:mod:`~robust_paddle.methods.gmm_correction`. State (checkpointed, exact resume): the CSS masks [K, N] (K
networks), the ``pi`` vectors [2K, C] and the pseudo heads' weights. Data parallel: the CSS pass is gathered
(same masks on every rank), ``pi`` is updated from the sums of all ranks' rows (one all-reduce per step), and
the pseudo heads' gradients are averaged over ranks. Clean probability for the report: the mean of the CSS
masks.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.engine import distributed as dist
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.losses.functional import per_sample_ce, to_one_hot
from robust_paddle.methods.base import Method, MethodContext, check_training_after, epoch_param
from robust_paddle.methods.correction import mix_lambda, sharpen, split_precision_recall
from robust_paddle.methods.gmm_correction import (
    NOISE_MODES,
    clean_mask_of,
    neg_entropy,
    train_set_losses,
)
from robust_paddle.methods.selection import class_wise_small_loss, label_guessing_by_agreement
from robust_paddle.ops import fmix_mask, mixup
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

__all__ = ["ProMixMethod", "class_wise_small_loss", "label_guessing_by_agreement"]


def _deterministic_features(net: paddle.nn.Layer) -> bool:
    """Whether ``net.forward_features`` has no dropout layer (outside ``net.classifier``) that is active in
    training: then two forwards of one batch give the same features."""
    classifier = getattr(net, "classifier", None)
    inside = {id(m) for m in classifier.sublayers(include_self=True)} if isinstance(classifier, paddle.nn.Layer) \
        else set()
    drops = (paddle.nn.Dropout, paddle.nn.Dropout2D, paddle.nn.Dropout3D, paddle.nn.AlphaDropout)
    return not any(isinstance(m, drops) and float(getattr(m, "p", 0.0)) > 0 and id(m) not in inside
                   for m in net.sublayers())


def _ramp(epoch: int, length: int) -> float:
    return 1.0 if epoch >= length else epoch / length


def _ce(logits: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
    """Mean soft-target CE over the rows."""
    return per_sample_ce(logits, targets).mean()


@METHODS.register("promix")
class ProMixMethod(Method):
    """ProMix (Wang et al. 2022): CSS + MHCS selection, logit-adjusted training of two networks with pseudo heads.

    Args:
        ctx: the method context (its model must expose ``feature_dim``, ``forward_features``, ``classifier``).
        warmup_epochs: CE epochs before the first selection (a fraction in (0, 1) of ``train.epochs`` too).
        rampup_epochs: epochs of the linear ramps of ``rho`` and ``w`` (``beta`` over twice as many).
        rho_start, rho_end: CSS ratio at the start / end of the ramp.
        tau: MHCS threshold on the probability of the given label.
        T: sharpening temperature of the pseudo labels of ``D_u``.
        alpha: ``Beta(alpha, alpha)`` of mixup.
        debias_output: logit adjustment strength of the losses; debias_pl: of the pseudo labels.
        bias_momentum: momentum of the ``pi`` moving averages.
        noise_mode: ``asym`` adds the negative-entropy penalty to the warm-up CE.
        networks: 2 peer networks (the reference) or 1 (``net1`` only: about half the step's cost).
        fmix: add the reference's FMix terms (:func:`~robust_paddle.ops.fmix_mask`) beside mixup, per head.
        lga_epochs: label guessing by agreement (LGA) in the last this many epochs; lga_threshold: its cap.
        class_balance: 1 (the paper) keeps CSS's per-class quota; 0 selects the same number of smallest losses over
            the whole set (no class balance); in between interpolates the per-class counts
            (:func:`~robust_paddle.methods.selection.class_wise_small_loss`).
        mixup_draws: 1 (default) draws one mixup (and FMix) batch that both heads classify: one backbone forward
            and backward fewer per network than the reference's 2, one batch per head (the same expected loss; the
            heads' mixup terms are no longer independent draws; equal accuracy measured, see above).

    Raises:
        ConfigError: a parameter outside its range, or a model without features and classifier.
    """

    name = "promix"
    uses = ()  # loss.*: the warm-up CE and the soft-target CEs are part of the method
    ignores_because = "cross-entropy in warm-up and ProMix's logit-adjusted cross-entropies after it"

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``promix`` (checked by the registry)."""

        warmup_epochs: float = param(10, min=0, doc="CE epochs before the first selection, or a fraction of the run in (0, 1)")
        rampup_epochs: float = param(50, min=0, doc="epochs of the rho / w ramps (beta: twice), or a fraction of the run")
        rho_start: float = param(0.2, min=0.0, max=1.0, doc="CSS: share of N / C kept per class at the start")
        rho_end: float = param(0.6, min=0.0, max=1.0, doc="CSS: share of N / C kept per class after the ramp")
        tau: float = param(0.99, min=0.0, max=1.0, doc="MHCS: probability of the given label above which a row is clean")
        T: float = param(0.5, min=0.0, min_open=True, doc="sharpening temperature of the pseudo labels")
        alpha: float = param(4.0, min=0.0, min_open=True, doc="Beta(alpha, alpha) of mixup")
        debias_output: float = param(0.8, min=0.0, doc="logit adjustment of the losses (tau * log pi)")
        debias_pl: float = param(0.8, min=0.0, doc="logit adjustment of the pseudo labels")
        bias_momentum: float = param(0.9999, min=0.0, max=1.0, doc="momentum of the class-prior estimates pi")
        noise_mode: str = param("sym", choices=NOISE_MODES, doc="asym adds the negative-entropy warm-up penalty")
        networks: int = param(2, min=1, max=2, doc="peer networks: 2 (the reference) or 1 (about half the cost)")
        fmix: bool = param(False, doc="add the FMix terms of the reference (images only; 2 more "
                                      "forwards per network, 1 with mixup_draws: 1)")
        lga_epochs: float = param(0, min=0, doc="label guessing by agreement in the last this many epochs (or a "
                                  "fraction of the run; 0 = off; needs networks: 2)")
        lga_threshold: float = param(0.9, min=0.0, max=1.0, doc="LGA: fill the clean rows of a batch up to this share")
        class_balance: float = param(1.0, min=0.0, max=1.0, doc="CSS per-class quota (UNICON's uniform selection): 1 = "
                                     "the paper's, 0 = global small-loss selection of the same size")
        mixup_draws: int = param(1, min=1, max=2, doc="mixup (and FMix) batches per network and step: 1 (both heads "
                                 "on one draw: one backbone forward fewer) or 2 (the reference: one per head)")

    def __init__(self, ctx: MethodContext, *, warmup_epochs: int = 10, rampup_epochs: int = 50,
                 rho_start: float = 0.2, rho_end: float = 0.6, tau: float = 0.99, T: float = 0.5, alpha: float = 4.0,
                 debias_output: float = 0.8, debias_pl: float = 0.8, bias_momentum: float = 0.9999,
                 noise_mode: str = "sym", networks: int = 2, fmix: bool = False, lga_epochs: float = 0,
                 lga_threshold: float = 0.9, class_balance: float = 1.0, mixup_draws: int = 1) -> None:
        super().__init__(ctx)
        # checked by the registry against Params; epoch counts resolve against train.epochs here
        self.warmup_epochs = epoch_param(ctx, warmup_epochs, "warmup_epochs")
        check_training_after(ctx, self.warmup_epochs, keys="method.params.warmup_epochs", method=self.name,
                             what="the warm-up")
        self.rampup_epochs = epoch_param(ctx, rampup_epochs, "rampup_epochs")
        self.rho_start, self.rho_end, self.tau = float(rho_start), float(rho_end), float(tau)
        self.T, self.alpha = float(T), float(alpha)
        self.debias_output, self.debias_pl = float(debias_output), float(debias_pl)
        self.bias_momentum, self.noise_mode = float(bias_momentum), noise_mode
        n = int(networks)
        self.fmix, self.lga_threshold, self.class_balance = bool(fmix), float(lga_threshold), float(class_balance)
        self.mixup_draws = int(mixup_draws)
        self.lga_epochs = epoch_param(ctx, lga_epochs, "lga_epochs")
        if self.lga_epochs and n < 2:
            raise ConfigError(f"method.params.lga_epochs={lga_epochs:g}: label guessing by agreement needs two networks "
                              "that agree; set method.params.networks: 2 or lga_epochs: 0")
        if self.fmix and len(tuple(ctx.input_shape)) != 3:
            raise ConfigError(f"method.params.fmix: FMix masks images [C, H, W]; this input has shape "
                              f"{tuple(ctx.input_shape)} (set fmix: false)")
        self.networks = {f"net{k + 1}": ctx.build_network() for k in range(n)}
        net = self.networks["net1"]
        if not (isinstance(getattr(net, "feature_dim", None), int) and callable(getattr(net, "forward_features", None))
                and callable(getattr(net, "classifier", None))):
            raise ConfigError(f"method 'promix' needs a model with feature_dim, forward_features and classifier (its "
                              f"pseudo-label heads share the features); model.name={ctx.cfg.model.name!r} has none")
        self.heads = [paddle.nn.Linear(net.feature_dim, ctx.num_classes) for _ in range(n)]
        for head in self.heads:  # outside the DataParallel networks: average their gradients over ranks
            for p in head.parameters():
                dist.average_gradient_across_ranks(p)
        self.selections: list[np.ndarray | None] = [None] * n
        # rows: pi_k of D_l for every network k, then pi_k_u of D_u (two networks: pi1, pi2, pi1_u, pi2_u)
        self.pi = np.full((2 * n, ctx.num_classes), 1.0 / ctx.num_classes, dtype=np.float32)
        self._batch = 0
        # features that are a function of the input alone (no dropout outside the classifier): one forward of a
        # batch serves its weak and its (identical) strong view
        self._deterministic_features = [_deterministic_features(m) for m in self.networks.values()]

    # ------------------------------------------------------------------ plumbing
    def parameters(self) -> list[paddle.Tensor]:
        """Both networks' parameters, then the two pseudo heads'."""
        return super().parameters() + [p for h in self.heads for p in h.parameters()]

    def train(self) -> None:
        super().train()
        for h in self.heads:
            h.train()

    def eval(self) -> None:
        super().eval()
        for h in self.heads:
            h.eval()

    def loader_views(self, dataset: Any) -> tuple[tuple[int, bool], ...]:
        """A strong view of every sample (``data.strong_augment``) for the consistency terms; none when it would
        equal the batch itself (no weak and no strong augmentation: the step then reuses the batch)."""
        pipeline = getattr(dataset, "pipeline", None)
        if pipeline is not None and not pipeline.augmented and not pipeline.strong_augmented:
            return ()
        return ((1, True),)

    def in_warmup(self, epoch: int) -> bool:
        return epoch < self.warmup_epochs or any(s is None for s in self.selections)

    def rho(self, epoch: int) -> float:
        """CSS ratio at ``epoch`` (0-based, warm-up epochs included, as the reference counts)."""
        return self.rho_start + (self.rho_end - self.rho_start) * _ramp(epoch, self.rampup_epochs)

    # ------------------------------------------------------------------ selection
    def select(self, trainer: Trainer, epoch: int) -> None:
        """CSS of both networks for ``epoch`` from the current weights; logs ``select/*``."""
        losses = train_set_losses(trainer)
        labels = np.asarray(trainer.loaders["train_eval"].dataset.labels, dtype=np.int64)
        rho = self.rho(epoch)
        self.selections = [class_wise_small_loss(losses[k], labels, num_classes=self.num_classes, rho=rho,
                                                 balance=self.class_balance)
                           for k in range(len(self.networks))]
        trainer.log_scalar("select/rho", rho)
        trainer.log_scalar("select/labeled_ratio", float(np.mean([s.mean() for s in self.selections])))
        clean = clean_mask_of(trainer, self.ctx)
        if clean is not None:
            pr = [split_precision_recall(s, clean) for s in self.selections]
            trainer.log_scalar("select/precision", float(np.mean([v[0] for v in pr])))
            trainer.log_scalar("select/recall", float(np.mean([v[1] for v in pr])))

    def before_epoch(self, trainer: Trainer) -> None:
        self._batch = 0
        if trainer.epoch >= self.warmup_epochs and any(s is None for s in self.selections):
            self.select(trainer, trainer.epoch)  # warmup_epochs=0, or a checkpoint without the selection

    def after_epoch(self, trainer: Trainer) -> None:
        if trainer.epoch + 1 >= self.warmup_epochs:
            self.select(trainer, trainer.epoch + 1)

    # ------------------------------------------------------------------ training
    def lga_active(self, epoch: int) -> bool:
        """Label guessing by agreement in the last ``lga_epochs`` epochs (the reference's ``start_expand``)."""
        return self.lga_epochs > 0 and epoch >= self.ctx.cfg.train.epochs - self.lga_epochs

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        b = self._batch
        self._batch += 1
        n = len(self.networks)
        if self.in_warmup(epoch):
            losses = []
            for net in self.networks.values():
                logits = net(x)
                ce = per_sample_ce(logits, y).mean()
                losses.append(ce + neg_entropy(logits) if self.noise_mode == "asym" else ce)
            loss = paddle.add_n(losses) if n > 1 else losses[0]
            return loss, {"loss": loss, "ce": loss / n}
        rows = np.asarray(idx.numpy(), dtype=np.int64)
        labels = np.asarray(y.numpy(), dtype=np.int64).reshape(-1)
        onehot = to_one_hot(y, self.num_classes)
        x_strong = batch[3] if len(batch) > 3 else None  # None: the strong view is the batch itself
        outs = [self._forward(k, net, x, x_strong) for k, net in enumerate(self.networks.values())]
        # the step's one device -> host copy per network: MHCS rows, LGA agreement and the pi sums
        px = np.stack([o["px"].numpy() for o in outs])  # [K, B, C]
        chosen = [self.selections[k][rows] | (px[k, np.arange(len(labels)), labels] > self.tau)  # CSS | MHCS
                  for k in range(n)]
        guessed = label_guessing_by_agreement(np.stack(chosen), px, tau=self.tau, threshold=self.lga_threshold) \
            if self.lga_active(epoch) else np.zeros((n, len(labels)), dtype=bool)
        total, terms, sums = None, {}, []
        for k, net in enumerate(self.networks.values()):
            rng = np.random.default_rng([int(self.ctx.cfg.seed) % 2**32, epoch, b, k])
            targets = onehot
            if guessed[k].any():  # LGA rows learn the network's debiased prediction instead of the given label
                guess = paddle.argmax(outs[k]["out_w"].detach() - self.debias_pl * outs[k]["log_pi"], axis=1)
                keep = paddle.to_tensor(~guessed[k][:, None])
                targets = paddle.where(keep, onehot, F.one_hot(guess, self.num_classes).astype(onehot.dtype))
            loss_k, t = self._net_loss(k, net, x, outs[k], targets, chosen[k] | guessed[k], epoch, rng)
            total = loss_k if total is None else total + loss_k
            c, u = np.flatnonzero(chosen[k] | guessed[k]), np.flatnonzero(~(chosen[k] | guessed[k]))
            sums.append(np.concatenate([px[k, c].sum(0), px[k, u].sum(0), [c.size, u.size]]))
            t["guessed_ratio"] = float(guessed[k].mean())
            for name, v in t.items():  # tensors: the trainer reads each once (no host sync per network here)
                terms[name] = v / n if name not in terms else terms[name] + v / n
        self._update_pi(np.stack(sums))  # after the losses: network k reads and writes only its own pi rows
        return total, {"loss": total, **terms}

    def _forward(self, k: int, net: paddle.nn.Layer, x: paddle.Tensor, x_strong: paddle.Tensor | None
                 ) -> dict[str, paddle.Tensor]:
        """Both heads on the weak and the strong view of network ``k``: one ``forward_features`` per view."""
        head = self.heads[k]
        f_w = net.forward_features(x)
        if x_strong is None and self._deterministic_features[k]:
            f_s = f_w  # same input, same function: same features (dropout in the heads still draws anew)
        else:
            f_s = net.forward_features(x if x_strong is None else x_strong)
        out_w, out_s, ph_w, ph_s = (z.astype("float32") for z in
                                    (net.classifier(f_w), net.classifier(f_s), head(f_w), head(f_s)))
        return {"out_w": out_w, "out_s": out_s, "ph_w": ph_w, "ph_s": ph_s, "px": F.softmax(out_w.detach(), axis=-1),
                "log_pi": paddle.to_tensor(np.log(self.pi[k])),
                "log_pi_u": paddle.to_tensor(np.log(self.pi[len(self.networks) + k]))}

    def _net_loss(self, k: int, net: paddle.nn.Layer, x: paddle.Tensor, out: dict[str, paddle.Tensor],
                  targets: paddle.Tensor, chosen_mask: np.ndarray, epoch: int, rng: np.random.Generator
                  ) -> tuple[paddle.Tensor, dict[str, Any]]:
        """Network ``k``'s loss and its terms; ``targets`` [B, C] one-hot (given labels, LGA rows guessed)."""
        head = self.heads[k]
        out_w, out_s, ph_w, ph_s, log_pi, log_pi_u = (out[key] for key in
                                                      ("out_w", "out_s", "ph_w", "ph_s", "log_pi", "log_pi_u"))
        chosen, unchosen = np.flatnonzero(chosen_mask), np.flatnonzero(~chosen_mask)
        w = _ramp(epoch, self.rampup_epochs)
        beta = 0.1 * _ramp(epoch, 2 * self.rampup_epochs)
        beta = 0.0 if epoch >= 2 * self.rampup_epochs else beta  # the reference's schedule
        a_out = self.debias_output

        def pick(t: paddle.Tensor, rows: np.ndarray) -> paddle.Tensor:
            return paddle.gather(t, paddle.to_tensor(rows, dtype="int64"))

        zero = paddle.zeros([], dtype="float32")
        loss_net = loss_ph = loss_cr = loss_cr_ph = zero
        mixed = {"mixup": [zero, zero], "fmix": [zero, zero]}  # [primary head, pseudo head]
        if chosen.size:
            y_c = pick(targets, chosen)
            loss_net, loss_ph, loss_cr, loss_cr_ph = (_ce(pick(z, chosen) + a_out * log_pi, y_c)
                                                      for z in (out_w, ph_w, out_s, ph_s))
        if chosen.size > 1:
            x_c = pick(x, chosen)
            for h, classify in enumerate((net.classifier, head)):
                if h == 0 or self.mixup_draws == 2:  # the reference draws anew for each head (mixup_draws: 2)
                    feats, t_mix, feats_f, t_f = self._mixed_features(net, x_c, y_c, rng)
                mixed["mixup"][h] = _ce(classify(feats).astype("float32") + a_out * log_pi, t_mix)
                if self.fmix:
                    mixed["fmix"][h] = _ce(classify(feats_f).astype("float32") + a_out * log_pi, t_f)
        (loss_mix, loss_mix_ph), (loss_fmix, loss_fmix_ph) = mixed["mixup"], mixed["fmix"]
        loss = loss_net + w * (loss_cr + loss_mix + loss_fmix) + loss_ph + w * (loss_cr_ph + loss_mix_ph + loss_fmix_ph)
        terms = {"ce": loss_net, "consistency": loss_cr, "mixup": loss_mix, "ph_ce": loss_ph,
                 "labeled_ratio": chosen.size / max(x.shape[0], 1)}
        if self.fmix:
            terms["fmix"] = loss_fmix
        if beta > 0 and unchosen.size:
            t_u = pick(sharpen(F.softmax(out_w.detach() - self.debias_pl * log_pi_u, axis=-1), self.T), unchosen)
            unrel = (_ce(pick(ph_w, unchosen) + a_out * log_pi_u, t_u)
                     + w * _ce(pick(ph_s, unchosen) + a_out * log_pi_u, t_u))
            loss = loss + beta * unrel
            terms["ph_unlabeled"] = unrel
        return loss, terms

    def _mixed_features(self, net: paddle.nn.Layer, x_c: paddle.Tensor, y_c: paddle.Tensor,
                        rng: np.random.Generator) -> tuple[paddle.Tensor, paddle.Tensor, Any, Any]:
        """One mixup draw of the clean rows ``x_c`` [M, ...] with targets ``y_c`` [M, C]: the features of the mixed
        batch [M, D] and its targets, then the FMix batch's features and targets (None without ``fmix``). Token ids
        (text) mix the features instead of the inputs (senMixup; FMix is refused for them)."""
        lam, perm = mix_lambda(self.alpha, rng), rng.permutation(x_c.shape[0])
        if x_c.dtype in (paddle.int64, paddle.int32):
            feats, t_mix = mixup(net.forward_features(x_c), y_c, lam=lam, perm=perm)
        else:
            x_mix, t_mix = mixup(x_c, y_c, lam=lam, perm=perm)
            feats = net.forward_features(x_mix)
        if not self.fmix:
            return feats, t_mix, None, None
        # FMix: a low-frequency binary mask picks each pixel from the row or its partner
        lam_f, mask = fmix_mask(rng, x_c.shape[-2:])
        perm_f = paddle.to_tensor(rng.permutation(x_c.shape[0]), dtype="int64")
        m = paddle.to_tensor(mask)
        x_f = m * x_c + (1 - m) * paddle.gather(x_c, perm_f)
        t_f = lam_f * y_c + (1 - lam_f) * paddle.gather(y_c, perm_f)
        return feats, t_mix, net.forward_features(x_f), t_f

    def _update_pi(self, sums: np.ndarray) -> None:
        """``pi <- m pi + (1 - m) mean(px)`` over the rows of ``D_l`` (pi_k) and ``D_u`` (pi_k_u) of every network
        ``k``, from ``sums`` [K, 2C + 2] (per network: the sums of ``px`` over ``D_l`` and ``D_u``, then their row
        counts). The means are over every rank's rows (one all-reduce per step), so ranks keep equal ``pi``; an
        empty side keeps its ``pi``."""
        sums = dist.all_reduce_sum(sums) if dist.is_distributed() else sums.astype(np.float64)
        c, n = self.num_classes, len(self.networks)
        m = self.bias_momentum
        for k in range(n):
            for slot, part, count in ((k, sums[k, :c], sums[k, 2 * c]), (n + k, sums[k, c:2 * c], sums[k, 2 * c + 1])):
                if count > 0:
                    self.pi[slot] = (m * self.pi[slot] + (1 - m) * part / count).astype(np.float32)

    # ------------------------------------------------------------------ report and state
    def clean_probability(self) -> np.ndarray | None:
        """[N] mean of the networks' CSS masks (None before the first selection)."""
        if any(s is None for s in self.selections):
            return None
        return np.mean(self.selections, axis=0).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"selections": [None if s is None else s.copy() for s in self.selections], "pi": self.pi.copy(),
                "heads": [{k: v.numpy() for k, v in h.state_dict().items()} for h in self.heads]}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        state = state or {}
        pi, heads, sel = state.get("pi"), state.get("heads"), state.get("selections")
        n = len(self.networks)
        if pi is None or np.asarray(pi).shape != self.pi.shape or heads is None or len(heads) != n or sel is None \
                or len(sel) != n:
            raise CheckpointError(f"method state: not a ProMix state of {n} network(s) for {self.num_classes} "
                                  f"classes (keys {sorted(state)}; another method, dataset or "
                                  "method.params.networks?)")
        rows = self.ctx.num_train
        if any(s is not None and np.asarray(s).shape != (rows,) for s in sel):
            raise CheckpointError(f"method state: ProMix selections are not over this run's {rows} training samples")
        self.pi = np.asarray(pi, dtype=np.float32).copy()
        self.selections = [None if s is None else np.asarray(s, dtype=bool).copy() for s in sel]
        for h, weights in zip(self.heads, heads):
            h.set_state_dict({k: paddle.to_tensor(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})
