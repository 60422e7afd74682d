"""Consensus of several annotators with a model's out-of-sample probabilities as each sample's prior.

The generative view of Dawid & Skene 1979 (JRSS C 28:20) with a per-sample class prior instead of one class
prior for the whole set::

    P(true_i = c | x_i, answers_i)  ∝  q_i(c) * prod_k P(l_k | true = c, annotator a_k),
    q_i(c) ∝ p_model(c | x_i) ** gamma

fitted by EM (E: the posterior above; M: each annotator's answer model from the posterior-weighted answers,
smoothed). ``gamma`` tempers the model's probabilities (a model trained on noisy labels is usually too flat,
gamma > 1, or too sharp, gamma < 1); it is chosen without any true label, as the value on a grid that maximises
the marginal likelihood of the annotators' answers ``sum_i log sum_c q_i(c) prod_k P(l_k | c)``.

Annotator models (``confusion``):

* ``one_coin``: one accuracy per annotator, errors spread evenly over the other classes (Beta(s, s) smoothing);
  few parameters, so it is the better choice when annotators answer a few hundred samples each;
* ``full``: a confusion matrix ``[true, given]`` per annotator (Dirichlet smoothing towards the diagonal); it
  can learn systematic confusions but needs many answers per annotator.

Why not crowd-kit here: its aggregators take one class prior for all samples; none accepts a per-sample prior,
and the model's confidence is the information that matters (``with_model_answers`` reduces the model to its
arg-max answer, which loses it). cleanlab's CROWDLAB (Goh et al. 2022, https://arxiv.org/abs/2210.06812) takes
the model's probabilities too, as a weighted average with the annotators' votes;
``benchmarks/annotators.py`` compares the two on the same probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from robust_paddle.errors import DataError
from robust_paddle.quality.annotators import Annotations, Consensus, consensus_from_posterior

__all__ = ["CONFUSION_MODELS", "GAMMA_GRID", "aggregate_with_model"]

logger = logging.getLogger(__name__)

CONFUSION_MODELS = ("one_coin", "full")
GAMMA_GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def _answer_loglik(ann: Annotations, post: np.ndarray, num_classes: int, confusion: str,
                   smoothing: float) -> np.ndarray:
    """M step + the E step's evidence: [K, C] ``log P(l_k | true = c, a_k)`` from the posterior ``post``."""
    s, a, lab, c = ann.sample, ann.annotator, ann.label, num_classes
    n_ann = len(ann.annotator_names)
    if confusion == "one_coin":
        right = np.bincount(a, weights=post[s, lab], minlength=n_ann)
        total = np.bincount(a, minlength=n_ann)
        acc = (right + smoothing) / (total + 2.0 * smoothing)
        log_right, log_wrong = np.log(acc)[a], np.log((1.0 - acc) / (c - 1))[a]
        return np.where(np.arange(c)[None, :] == lab[:, None], log_right[:, None], log_wrong[:, None])
    conf = np.zeros((n_ann, c, c))
    np.add.at(conf, (a, slice(None), lab), post[s])
    conf += smoothing / c + smoothing * np.eye(c)[None]
    conf /= conf.sum(axis=2, keepdims=True)
    return np.log(conf[a, :, lab])


def _em(ann: Annotations, log_prior: np.ndarray, num_classes: int, *, confusion: str, smoothing: float,
        max_iter: int, tol: float) -> tuple[np.ndarray, float]:
    """EM from the majority-vote posterior; returns (posterior [N, C], marginal log-likelihood of the answers)."""
    n = log_prior.shape[0]
    post = np.full((n, num_classes), 1e-3)
    np.add.at(post, (ann.sample, ann.label), 1.0)
    post /= post.sum(axis=1, keepdims=True)
    for _ in range(max_iter):
        joint = log_prior.copy()
        np.add.at(joint, ann.sample, _answer_loglik(ann, post, num_classes, confusion, smoothing))
        top = joint.max(axis=1, keepdims=True)
        new = np.exp(joint - top)
        new /= new.sum(axis=1, keepdims=True)
        done = float(np.abs(new - post).max()) < tol
        post = new
        if done:
            break
    joint = log_prior.copy()
    np.add.at(joint, ann.sample, _answer_loglik(ann, post, num_classes, confusion, smoothing))
    top = joint.max(axis=1, keepdims=True)
    loglik = float((top[:, 0] + np.log(np.exp(joint - top).sum(axis=1))).sum())
    return post, loglik


def aggregate_with_model(ann: Annotations, pred_probs: np.ndarray, *, confusion: str = "one_coin",
                         gamma: float | Sequence[float] = GAMMA_GRID, smoothing: float = 2.0, max_iter: int = 100,
                         tol: float = 1e-6) -> Consensus:
    """Consensus of the answers with the model's probabilities as each sample's prior (see the module docstring).

    Args:
        ann: the answers; samples index the rows of ``pred_probs``.
        pred_probs: [N, C] the model's out-of-sample class probabilities (cross-validated, so a sample's own
            label did not train the model that scores it).
        confusion: ``"one_coin"`` or ``"full"``.
        gamma: the tempering exponent, or a grid to choose it from by the answers' marginal likelihood.
        smoothing: Beta / Dirichlet pseudo-counts of the annotator models (> 0).
        max_iter, tol: EM stops after ``max_iter`` rounds or when no posterior moves by ``tol``.

    Returns:
        :class:`~robust_paddle.quality.annotators.Consensus` with method ``"<confusion>+model_prior"`` and
        ``info = {"gamma": chosen, "log_likelihood": its marginal log-likelihood}``. Samples without answers get label -1 as in ``aggregate``.

    Raises:
        DataError: ``pred_probs`` not [N, C] with N covering the answers, values outside [0, 1] or not finite;
            labels outside [0, C); unknown ``confusion``; ``smoothing`` <= 0; an empty ``gamma`` grid.
    """
    if confusion not in CONFUSION_MODELS:
        raise DataError(f"confusion {confusion!r} is not known; choose one of {', '.join(CONFUSION_MODELS)}")
    probs = np.asarray(pred_probs, dtype=np.float64)
    if ann.sample.size == 0:
        raise DataError("no annotator answers to aggregate")
    if probs.ndim != 2 or probs.shape[1] < 2 or probs.shape[0] <= int(ann.sample.max()):
        raise DataError(f"pred_probs must be [N, C] covering every answered sample, got shape {probs.shape}")
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1 + 1e-6).any():
        raise DataError("pred_probs must be probabilities in [0, 1]")
    num_classes = probs.shape[1]
    if ann.label.min() < 0 or ann.label.max() >= num_classes:
        raise DataError(f"answers out of range: labels must be in [0, {num_classes}) (the columns of pred_probs)")
    if not smoothing > 0:
        raise DataError(f"smoothing must be > 0, got {smoothing!r}")
    grid = [float(gamma)] if np.isscalar(gamma) else [float(g) for g in gamma]
    if not grid or min(grid) <= 0:
        raise DataError(f"gamma must be > 0 (a value or a non-empty grid), got {gamma!r}")
    log_p = np.log(np.clip(probs, 1e-12, None))
    best: tuple[float, float, np.ndarray] | None = None
    for g in grid:
        log_prior = g * log_p
        log_prior -= log_prior.max(axis=1, keepdims=True)
        log_prior -= np.log(np.exp(log_prior).sum(axis=1, keepdims=True))
        post, loglik = _em(ann, log_prior, num_classes, confusion=confusion, smoothing=smoothing,
                           max_iter=max_iter, tol=tol)
        if best is None or loglik > best[0]:
            best = (loglik, g, post)
    assert best is not None
    logger.info("model-prior consensus (%s): gamma %.2f (marginal log-likelihood %.1f)", confusion, best[1], best[0])
    cons = consensus_from_posterior(ann, best[2], method=f"{confusion}+model_prior")
    cons.info.update({"gamma": best[1], "log_likelihood": best[0]})
    return cons
