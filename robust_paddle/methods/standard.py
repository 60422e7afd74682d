"""The ``standard`` method: one network trained with any registered loss, plus optional regularisers."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import paddle

from robust_paddle.errors import ConfigError
from robust_paddle.methods.base import Method, MethodContext
from robust_paddle.methods.regularizers import (
    adversarial_loss,
    cutmix,
    is_token_ids,
    mix_targets,
    mixup_batch,
)
from robust_paddle.ops import symmetric_kl
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

ADVERSARIAL = ("none", "fgm", "pgd")
ADV_TARGETS = ("input", "embedding")


@METHODS.register("standard")
class StandardMethod(Method):
    """One network, one loss (``cfg.loss``): plain ERM, the baseline every robust method is compared to.

    With a robust loss (``gce``, ``sce``, ``nce_rce`` ...) this is the robust-loss family of methods.
    Optional regularisers (``method.params``), all inside one ``train_step`` so AMP and gradient
    accumulation apply unchanged (see :mod:`robust_paddle.methods.regularizers`):

    * ``mixup_alpha`` / ``cutmix_alpha`` > 0: mix each batch with ``lam ~ Beta(alpha, alpha)``
      (https://arxiv.org/abs/1710.09412, https://arxiv.org/abs/1905.04899); the loss gets soft targets
      ``[N, C]``. With both set, each mixed batch uses cutmix with probability ``cutmix_prob``; a batch is
      mixed at all with probability ``mix_prob``.
    * ``rdrop_alpha`` > 0: R-Drop (https://arxiv.org/abs/2106.14448): two dropout passes, loss
      ``(L1 + L2) / 2 + rdrop_alpha * symmetric KL(p1, p2)``.
    * ``adversarial``: ``"fgm"`` (https://arxiv.org/abs/1605.07725) or ``"pgd"``
      (https://arxiv.org/abs/1706.06083) perturbation of L2 norm ``adv_epsilon`` per sample of the input
      (``adv_target: input``) or of ``forward_features`` (``embedding``, then ``classifier``); loss
      ``L_clean + adv_weight * L_adv``. PGD takes ``adv_steps`` steps of length ``adv_alpha`` (default
      ``2.5 * adv_epsilon / adv_steps``).

    Label smoothing is a loss option (``loss.params.label_smoothing``).
    """

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``standard`` (checked by the registry)."""

        mixup_alpha: float = param(0.0, min=0.0, doc="mixup Beta(alpha, alpha) (Zhang et al. 2018); 0 disables")
        cutmix_alpha: float = param(0.0, min=0.0, doc="CutMix Beta(alpha, alpha) (Yun et al. 2019); 0 disables")
        cutmix_prob: float = param(0.5, min=0.0, max=1.0, doc="with both enabled: chance a mixed batch uses CutMix")
        mix_prob: float = param(1.0, min=0.0, max=1.0, doc="chance a batch is mixed at all")
        rdrop_alpha: float = param(0.0, min=0.0, doc="R-Drop weight of the symmetric KL of two dropout passes")
        adversarial: str = param("none", choices=ADVERSARIAL, doc="adversarial training: FGM or PGD (Madry et al.)")
        adv_target: str = param("input", choices=ADV_TARGETS, doc="perturb the input or the embedding (text)")
        adv_epsilon: float = param(1.0, min=0.0, min_open=True, doc="L2 radius of the perturbation")
        adv_steps: int = param(3, min=1, doc="PGD steps")
        adv_alpha: float | None = param(None, min=0.0, min_open=True, doc="PGD step size (None: 2.5 * epsilon / steps)")
        adv_weight: float = param(1.0, min=0.0, doc="weight of the adversarial loss")

    def __init__(self, ctx: MethodContext, *, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 cutmix_prob: float = 0.5, mix_prob: float = 1.0, rdrop_alpha: float = 0.0,
                 adversarial: str = "none", adv_target: str = "input", adv_epsilon: float = 1.0,
                 adv_steps: int = 3, adv_alpha: float | None = None, adv_weight: float = 1.0) -> None:
        super().__init__(ctx)
        self.networks = {"net": ctx.build_network()}
        self.loss_fn = ctx.build_loss()
        # checked by the registry against Params; the constructor takes the validated values
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.cutmix_prob, self.mix_prob, self.rdrop_alpha = float(cutmix_prob), float(mix_prob), float(rdrop_alpha)
        self.adversarial, self.adv_target = adversarial, adv_target
        self.adv_epsilon, self.adv_steps = float(adv_epsilon), int(adv_steps)
        self.adv_alpha = 2.5 * self.adv_epsilon / self.adv_steps if adv_alpha is None else float(adv_alpha)
        self.adv_weight = float(adv_weight)
        net = self.networks["net"]
        if adversarial != "none" and adv_target == "embedding" and not (
                callable(getattr(net, "forward_features", None)) and isinstance(getattr(net, "classifier", None),
                                                                                  paddle.nn.Layer)):
            raise ConfigError(f"method.params.adv_target: 'embedding' needs a model with forward_features and "
                             f"classifier; model {ctx.cfg.model.name!r} has none (use adv_target: input)")
        self.tokens = callable(getattr(net, "embedding_split", None))  # a text model over token ids
        if self.tokens and self.cutmix_alpha > 0:
            raise ConfigError("method.params.cutmix_alpha: cutmix pastes image boxes; this model reads token ids "
                              "(use mixup_alpha, which mixes the text features)")
        if self.tokens and adversarial != "none" and adv_target == "input":
            raise ConfigError("method.params.adv_target: token ids cannot be perturbed; use adv_target: embedding "
                              "(the word embeddings, Miyato et al. 2017)")
        self._rng: np.random.Generator | None = None
        self._rng_epoch = -1

    def rng(self, epoch: int) -> np.random.Generator:
        """The generator of mixing draws for ``epoch`` (a function of ``(seed, epoch)``: exact on resume)."""
        if self._rng is None or self._rng_epoch != epoch:
            self._rng = np.random.default_rng([int(self.ctx.cfg.seed) % 2**63, int(epoch), 0x6D6978])
            self._rng_epoch = epoch
        return self._rng

    def mix(self, x: paddle.Tensor, y: paddle.Tensor, weight: np.ndarray | None = None, *, epoch: int
            ) -> tuple[paddle.Tensor, paddle.Tensor, np.ndarray | None]:
        """Apply mixup or cutmix (when enabled and drawn for this batch); returns (inputs, targets, per-sample
        weights mixed like the targets, or None)."""
        if not (self.mixup_alpha or self.cutmix_alpha):
            return x, y, weight
        rng = self.rng(epoch)
        if self.mix_prob < 1.0 and rng.random() >= self.mix_prob:
            return x, y, weight
        use_cutmix = self.cutmix_alpha > 0 and (not self.mixup_alpha or rng.random() < self.cutmix_prob)
        fn, alpha = (cutmix, self.cutmix_alpha) if use_cutmix else (mixup_batch, self.mixup_alpha)
        mixed = fn(x, y, alpha=alpha, num_classes=self.num_classes, rng=rng)
        if weight is not None:
            weight = mixed.lam * weight + (1.0 - mixed.lam) * weight[mixed.perm]
        return mixed.x, mixed.target, weight

    def targets(self, y: paddle.Tensor, idx: paddle.Tensor) -> tuple[paddle.Tensor, np.ndarray | None]:
        """The batch's targets (its labels, or the consensus posterior rows when the run has soft targets) and
        per-sample loss weights (None when the run has none)."""
        soft, weights = self.ctx.soft_targets, self.ctx.sample_weights
        if soft is None and weights is None:
            return y, None
        rows = np.asarray(idx.numpy(), dtype=np.int64)
        target = y if soft is None else paddle.to_tensor(soft[rows], dtype="float32")
        return target, None if weights is None else np.asarray(weights[rows], dtype=np.float32)

    def feature_mix(self, target: paddle.Tensor, weight: np.ndarray | None, *, epoch: int
                    ) -> tuple[Any, paddle.Tensor, np.ndarray | None]:
        """Mixup for token ids, which cannot be interpolated: ``(f -> lam f + (1 - lam) f[perm], targets,
        weights)`` applied to ``forward_features`` (senMixup, Guo et al. 2019, https://arxiv.org/abs/1905.08941);
        the same draws as :meth:`mix` (``lam ~ Beta(a, a)``, then the permutation), identity when not mixing."""
        if not self.mixup_alpha:
            return (lambda f: f), target, weight
        rng = self.rng(epoch)
        if self.mix_prob < 1.0 and rng.random() >= self.mix_prob:
            return (lambda f: f), target, weight
        lam = float(rng.beta(self.mixup_alpha, self.mixup_alpha))
        perm = rng.permutation(target.shape[0])
        p = paddle.to_tensor(perm)
        if weight is not None:
            weight = lam * weight + (1.0 - lam) * weight[perm]
        return ((lambda f: lam * f + (1.0 - lam) * paddle.gather(f, p)),
                mix_targets(target, perm, lam, num_classes=self.num_classes), weight)

    def text_step(self, x: paddle.Tensor, target: paddle.Tensor, weight: np.ndarray | None, *,
                  epoch: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        """The step for token ids: mixup on the features, FGM / PGD on the word embeddings, R-Drop."""
        net = self.networks["net"]
        mix, target, weight = self.feature_mix(target, weight, epoch=epoch)
        loss_fn = self.loss_fn if weight is None else functools.partial(
            self.loss_fn, sample_weight=paddle.to_tensor(weight, dtype="float32"))
        base, head = net.embedding_split(x, mix=mix)
        logits = head(base)
        loss = task = loss_fn(logits, target)
        terms: dict[str, Any] = {}
        if self.rdrop_alpha > 0:
            logits2 = head(net.embed(x))
            kl = 0.5 * symmetric_kl(logits, logits2, reduction="mean")  # R-Drop
            loss = 0.5 * (task + loss_fn(logits2, target)) + self.rdrop_alpha * kl
            terms["rdrop_kl"] = kl
        if self.adversarial != "none":
            adv, _ = adversarial_loss(head, base, task, loss_fn, target, kind=self.adversarial,
                                      epsilon=self.adv_epsilon, alpha=self.adv_alpha, steps=self.adv_steps)
            loss = loss + self.adv_weight * adv
            terms["adv"] = adv
        if terms:
            terms["task"] = task
        terms["loss"] = loss
        return loss, terms

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y, idx = batch[:3]
        target, weight = self.targets(y, idx)
        if self.tokens and is_token_ids(x):
            return self.text_step(x, target, weight, epoch=epoch)
        x, target, weight = self.mix(x, target, weight, epoch=epoch)
        loss_fn = self.loss_fn if weight is None else functools.partial(
            self.loss_fn, sample_weight=paddle.to_tensor(weight, dtype="float32"))
        net = self.networks["net"]
        if self.adversarial != "none" and self.adv_target == "embedding":
            base = net.forward_features(x)
            head = net.classifier
        else:
            if self.adversarial == "fgm":
                x.stop_gradient = False  # FGM differentiates the loss with respect to the input
            base, head = x, net
        logits = head(base)
        loss = task = loss_fn(logits, target)
        terms: dict[str, Any] = {}
        if self.rdrop_alpha > 0:
            logits2 = net(x)
            kl = 0.5 * symmetric_kl(logits, logits2, reduction="mean")  # R-Drop
            loss = 0.5 * (task + loss_fn(logits2, target)) + self.rdrop_alpha * kl
            terms["rdrop_kl"] = kl
        if self.adversarial != "none":
            adv, _ = adversarial_loss(head, base, task, loss_fn, target, kind=self.adversarial,
                                      epsilon=self.adv_epsilon, alpha=self.adv_alpha, steps=self.adv_steps)
            loss = loss + self.adv_weight * adv
            terms["adv"] = adv
        if terms:
            terms["task"] = task
        terms["loss"] = loss
        return loss, terms
