"""Regularisers used inside a training step: mixup, cutmix, R-Drop, FGM and PGD adversarial training.

Every function works on one batch and returns tensors that stay in the autograd graph, so a method can
sum the pieces into the single loss the trainer backpropagates (AMP and gradient accumulation still
apply). Randomness comes from an explicit ``numpy.random.Generator`` (the ``standard`` method derives one
per epoch from ``(seed, epoch)``, so a resumed run draws the same values).

* mixup: Zhang et al. 2017, https://arxiv.org/abs/1710.09412
* cutmix: Yun et al. 2019, https://arxiv.org/abs/1905.04899
* R-Drop: Liang et al. 2021, https://arxiv.org/abs/2106.14448
* FGM: Miyato et al. 2016, "Adversarial Training Methods for Semi-Supervised Text Classification",
  https://arxiv.org/abs/1605.07725 (the L2-normalised fast gradient method of Goodfellow et al. 2014,
  https://arxiv.org/abs/1412.6572)
* PGD: Madry et al. 2017, https://arxiv.org/abs/1706.06083 (here in the L2 ball, from a zero start)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import paddle

from robust_paddle.errors import ConfigError
from robust_paddle.losses.functional import target_probs
from robust_paddle.ops import mixup

logger = logging.getLogger(__name__)


@dataclass
class MixedBatch:
    """A mixed batch: ``x`` [N, ...], soft ``target`` [N, C] = ``lam * t + (1 - lam) * t[perm]``, the
    mixing weight ``lam`` (for cutmix: the kept-area fraction) and ``perm`` [N] (the partner of row i)."""

    x: paddle.Tensor
    target: paddle.Tensor
    lam: float
    perm: np.ndarray
    box: tuple[int, int, int, int] | None = None  # cutmix (y0, y1, x0, x1)


def _check_alpha(alpha: float, name: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ConfigError(f"{name} must be a number > 0, got {alpha!r}")
    return float(alpha)


def is_token_ids(x: paddle.Tensor) -> bool:
    """Whether a batch holds integer token ids (text models), which mixup cannot interpolate."""
    return x.dtype in (paddle.int64, paddle.int32)


def mix_targets(target: paddle.Tensor, perm: np.ndarray, lam: float, *, num_classes: int) -> paddle.Tensor:
    """``lam * t + (1 - lam) * t[perm]`` as [N, C] float32 (hard labels become one-hot rows first)."""
    t = target_probs(target, num_classes, where="mixup")
    return lam * t + (1.0 - lam) * paddle.gather(t, paddle.to_tensor(perm))


def mixup_batch(x: paddle.Tensor, target: paddle.Tensor, *, alpha: float, num_classes: int,
                rng: np.random.Generator) -> MixedBatch:
    """The mixup regulariser (Zhang et al. 2018, arXiv:1710.09412): draws ``lam ~ Beta(a, a)`` and a
    permutation, then mixes inputs and (one-hot) targets with :func:`robust_paddle.ops.mixup`.

    Args:
        x: [N, ...] inputs. target: [N] int labels or [N, C] soft targets.
        alpha: Beta parameter > 0. num_classes: C. rng: the random source (lam and the permutation).
    """
    alpha = _check_alpha(alpha, "mixup_alpha")
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(x.shape[0])
    mixed_x, mixed_t = mixup(x, target_probs(target, num_classes, where="mixup"), lam=lam, perm=perm)
    return MixedBatch(x=mixed_x, target=mixed_t, lam=lam, perm=perm)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box ``(y0, y1, x0, x1)`` of about ``(1 - lam)`` of the image area, centred uniformly at random
    and clipped to the image (Yun et al. 2019)."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = int(np.clip(cy - ch // 2, 0, height)), int(np.clip(cy + ch - ch // 2, 0, height))
    x0, x1 = int(np.clip(cx - cw // 2, 0, width)), int(np.clip(cx + cw - cw // 2, 0, width))
    return y0, y1, x0, x1


def cutmix(x: paddle.Tensor, target: paddle.Tensor, *, alpha: float, num_classes: int,
           rng: np.random.Generator) -> MixedBatch:
    """CutMix: paste a box of ``x[perm]`` into ``x``; the target is mixed by the kept area fraction.

    ``lam ~ Beta(a, a)`` sets the box size; after clipping, ``lam = 1 - box area / (H W)`` exactly.

    Args:
        x: [N, C, H, W] images. target: [N] int labels or [N, C] soft targets.
        alpha: Beta parameter > 0. num_classes: C. rng: random source.
    """
    alpha = _check_alpha(alpha, "cutmix_alpha")
    if x.ndim != 4:
        raise ConfigError(f"cutmix_alpha needs image inputs [N, C, H, W], got input shape {list(x.shape)}; "
                         "use mixup_alpha for other inputs")
    h, w = int(x.shape[2]), int(x.shape[3])
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(x.shape[0])
    y0, y1, x0, x1 = cutmix_box(h, w, lam, rng)
    mask = np.zeros((1, 1, h, w), dtype=np.float32)
    mask[..., y0:y1, x0:x1] = 1.0
    m = paddle.to_tensor(mask).astype(x.dtype)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
    xp = paddle.gather(x, paddle.to_tensor(perm))
    return MixedBatch(x=x * (1.0 - m) + xp * m, target=mix_targets(target, perm, lam, num_classes=num_classes),
                      lam=lam, perm=perm, box=(y0, y1, x0, x1))




def _per_sample_norm(t: paddle.Tensor) -> paddle.Tensor:
    """L2 norm of each sample, shaped [N, 1, ...] to broadcast against ``t``."""
    flat = t.astype("float32").reshape([t.shape[0], -1])
    return flat.norm(p=2, axis=1).reshape([t.shape[0]] + [1] * (t.ndim - 1))


def fgm_perturbation(grad: paddle.Tensor, *, epsilon: float) -> paddle.Tensor:
    """``r = epsilon * g / ||g||_2`` per sample (a zero gradient gives a zero perturbation).

    Args:
        grad: [N, ...] gradient of the loss with respect to the perturbed tensor.
        epsilon: L2 radius > 0.

    Returns:
        [N, ...] float32 perturbation, detached.
    """
    g = grad.detach().astype("float32")
    return epsilon * g / paddle.clip(_per_sample_norm(g), min=1e-12)


def project_l2(delta: paddle.Tensor, *, epsilon: float) -> paddle.Tensor:
    """Project each sample of ``delta`` [N, ...] onto the L2 ball of radius ``epsilon``."""
    norm = _per_sample_norm(delta)
    return delta * paddle.clip(epsilon / paddle.clip(norm, min=1e-12), max=1.0)


def pgd_perturbation(loss_at: Callable[[paddle.Tensor], paddle.Tensor], base: paddle.Tensor, *, epsilon: float,
                     alpha: float, steps: int) -> paddle.Tensor:
    """L2 projected gradient ascent: ``delta <- P(delta + alpha * g / ||g||)`` for ``steps`` steps from 0.

    Args:
        loss_at: ``z -> scalar loss`` of the model from the perturbed tensor ``z = base + delta``.
        base: [N, ...] tensor to perturb (inputs or embeddings); it is detached for the attack steps.
        epsilon: radius of the per-sample L2 ball. alpha: step length. steps: ascent steps >= 1.

    Returns:
        [N, ...] float32 perturbation inside the ball, detached.
    """
    b = base.detach()
    delta = paddle.zeros(b.shape, dtype="float32")
    for _ in range(steps):
        delta.stop_gradient = False
        loss = loss_at(b + delta.astype(b.dtype))
        (g,) = paddle.grad(loss, [delta])
        delta = project_l2(delta.detach() + fgm_perturbation(g, epsilon=alpha), epsilon=epsilon).detach()
    return delta


def adversarial_loss(head: Callable[[paddle.Tensor], paddle.Tensor], base: paddle.Tensor, clean_loss: paddle.Tensor,
                     loss_fn: Callable[[paddle.Tensor, paddle.Tensor], paddle.Tensor], target: paddle.Tensor, *,
                     kind: str, epsilon: float, alpha: float, steps: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """The loss at an adversarial perturbation of ``base``.

    Args:
        head: maps the (perturbed) tensor to logits: the network for inputs, its classifier for embeddings.
        base: [N, ...] tensor that produced ``clean_loss`` (it must require gradients for ``"fgm"``).
        clean_loss: the scalar loss at ``base`` (FGM differentiates it with ``paddle.grad``; the graph is
            kept for the trainer's backward).
        loss_fn: ``(logits, target) -> scalar``. target: [N] labels or [N, C] soft targets.
        kind: ``"fgm"`` or ``"pgd"``. epsilon: L2 radius. alpha, steps: PGD step length and count.

    Returns:
        (scalar adversarial loss, with gradients flowing into ``head`` and into ``base``'s producers;
        the perturbation [N, ...]).
    """
    if kind == "fgm":
        (g,) = paddle.grad(clean_loss, [base], retain_graph=True)
        r = fgm_perturbation(g, epsilon=epsilon)
    elif kind == "pgd":
        r = pgd_perturbation(lambda z: loss_fn(head(z), target), base, epsilon=epsilon, alpha=alpha, steps=steps)
    else:
        raise ConfigError(f"adversarial must be 'none', 'fgm' or 'pgd', got {kind!r}")
    return loss_fn(head(base + r.astype(base.dtype)), target), r
