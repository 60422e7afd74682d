"""``forward_correction``: the forward loss correction of Patrini et al. 2017 with a known or estimated T.

Patrini, Rozza, Menon, Nock & Qu, "Making Deep Neural Networks Robust to Label Noise: a Loss Correction
Approach", CVPR 2017, https://arxiv.org/abs/1609.03683.

With class-conditional noise ``T[i, j] = P(noisy = j | true = i)``, the network's softmax ``p(y | x)`` is
pushed through ``T`` before the log-loss against the noisy label: ``L = -log (p^T T)_ỹ``. Minimising it
makes ``p`` estimate the *clean* posterior (the correction is consistent whenever ``T`` is invertible), and
the loss of a flipped label is bounded by ``-log min_j max_i T[i, j]``, so fitting a flipped label buys
little. This is what makes the method work on pair / asymmetric noise where the noisy label is wrong in
one fixed direction and small-loss selection barely separates clean from noisy samples.

``transition``:

* a ``[C, C]`` row-stochastic matrix (nested list), or a ``.npy`` / ``.json`` / ``.csv`` file holding one --
  including another run's ``transition.json`` or its label-issue report's ``label_issues_summary.json``
  (``estimated_noise_matrix``), e.g. the matrix a DivideMix run estimated;
* ``"auto"``: trained on the given labels with plain cross-entropy for ``warmup_epochs``, then ``T`` is
  estimated from that network's softmax on the training set (eval mode) and the network is re-initialised
  (``reinit``) or kept, and trained with the corrected loss. Estimators: ``anchor`` -- Patrini et al.'s
  anchor points (for each class the sample at the ``anchor_quantile`` of ``p(i | x)``; its softmax is row
  ``i``), or ``confident_joint`` (:func:`robust_paddle.quality.estimation.estimate_noise_matrix`).

  An estimate from a weak warm-up network can be worse than no correction (issue 21: a 2-epoch network
  on 4,000 digits with 45% pair noise gives a ``T`` whose row 2 puts 0.13 on the true class and more on
  others). Two guards: ``identity_weight`` mixes the estimate with the identity, ``(1 - w) T + w I``
  (shrinkage toward plain cross-entropy); ``require_dominant`` refuses an estimate whose diagonal is not
  the largest entry of every row (more mass on a wrong label than on the right one is what the warm-up
  network's confusions look like, not class-conditional noise a forward correction can undo). A refused
  estimate is logged (WARNING, with the offending row), written to ``transition.json`` with
  ``accepted: false``, and training goes on with the warm-up loss; the estimate is tried again at the
  start of every later epoch (the network improves), so a run whose estimate is never accepted is a plain
  ``cfg.loss`` run.

The matrix in force is checkpointed (method state), logged, written to the run's ``transition.json`` when
estimated, and compared to the realised noise matrix when clean labels are known (``noise/t_error``: mean
absolute error per entry; ``noise/rate_t``: the noise rate ``T`` implies).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle
import paddle.nn.functional as F

from robust_paddle.data.noise import check_transition, realised_matrix
from robust_paddle.data.textfile import read_text, read_text_lines, where
from robust_paddle.errors import CheckpointError, ConfigError, DataError
from robust_paddle.methods.base import Method, MethodContext, check_training_after, epoch_param
from robust_paddle.ops import softmax
from robust_paddle.quality.estimation import estimate_noise_matrix
from robust_paddle.registry import METHODS
from robust_paddle.schema import param

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

ESTIMATORS = ("anchor", "confident_joint")
PROB_FLOOR = 1e-7  # keeps log((p^T T)_y) finite when T has zero columns


def anchor_transition(probs: np.ndarray, *, quantile: float = 0.97) -> np.ndarray:
    """Patrini et al.'s anchor-point estimate of ``T`` [C, C] from noisy-label posteriors ``probs`` [N, C].

    Row ``i`` is the softmax of the sample ranked just below the ``quantile`` of column ``i`` (the
    reference's outlier filter: the very top is often a memorised sample); with ``quantile=1`` it is the
    arg-max sample. Rows are renormalised to sum to 1. The filter works on ranks: the reference drops every
    value ``>=`` the quantile's value, which with tied top values (a saturated softmax, many samples at
    exactly ``T[i, i]``) drops the whole top and picks another class's sample as the anchor; without ties
    the two pick the same sample.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ConfigError(f"anchor_transition: probs must be [N, C] with N >= 1, got shape {list(probs.shape)}")
    if not 0.0 < quantile <= 1.0:
        raise ConfigError(f"anchor_transition: quantile must be in (0, 1], got {quantile!r}")
    c = probs.shape[1]
    t = np.empty((c, c))
    n = probs.shape[0]
    rank = max(int(np.ceil(quantile * (n - 1))) - 1, 0) if quantile < 1.0 else n - 1
    for i in range(c):
        best = int(np.argsort(probs[:, i], kind="stable")[rank])
        t[i] = probs[best]
    return t / t.sum(axis=1, keepdims=True)


def smooth_transition(t: np.ndarray, identity_weight: float) -> np.ndarray:
    """``(1 - w) T + w I`` [C, C]: shrinks an estimated ``T`` toward the identity (``w = 1``: plain CE).

    Rows stay stochastic and the diagonal grows, so the corrected loss trusts the given labels more than the
    estimate does -- a guard against the usual bias of estimates from an under-trained network, which
    overstate the noise (their flat posteriors spread each row).
    """
    c = t.shape[0]
    return (1.0 - identity_weight) * np.asarray(t, dtype=np.float64) + identity_weight * np.eye(c)


def dominance_failure(t: np.ndarray) -> str | None:
    """``None`` when every row's diagonal entry ``T[i, i]`` is strictly its largest, else a one-line reason
    naming the first offending row, e.g. ``"row 2: T[2, 2] = 0.13 < T[2, 8] = 0.41"``."""
    t = np.asarray(t, dtype=np.float64)
    off = np.where(np.eye(t.shape[0], dtype=bool), -np.inf, t)
    worst = off.argmax(axis=1)
    bad = np.flatnonzero(np.diag(t) <= off[np.arange(t.shape[0]), worst])
    if bad.size == 0:
        return None
    i, j = int(bad[0]), int(worst[bad[0]])
    more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
    return f"row {i}: T[{i}, {i}] = {t[i, i]:.2f} <= T[{i}, {j}] = {t[i, j]:.2f}{more}"


def identity_rows_for_absent_classes(t: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``T`` with the row of every class that no training sample carries replaced by the identity row.

    Nothing in the data can say how such a class's labels were flipped, and an estimate is harmful: the
    anchor of an absent class is a sample of another class j, so its row puts ~all mass on j and the
    forward loss then lets the network move class j's probability to the absent class at no cost
    (issue 15: test accuracy 0.75 -> 0.5). The identity row keeps ``p(given = j | x)`` from taking that
    mass. ``transition.json`` lists these classes under ``identity_rows``.

    Args:
        t: [C, C] estimated transition matrix ``T[true, given]``.
        labels: [N] given training labels.

    Returns:
        ``(T copy [C, C], the absent classes [k] int64, ascending)``.
    """
    c = t.shape[0]
    absent = np.flatnonzero(np.bincount(np.asarray(labels, dtype=np.int64), minlength=c)[:c] == 0)
    out = np.array(t, dtype=np.float64, copy=True)
    out[absent] = np.eye(c)[absent]
    return out, absent


# transition.json; a report's label_issues_summary.json; a spot check's noise_estimate.json (robust-paddle estimate)
TRANSITION_KEYS = ("transition", "estimated_noise_matrix", "transition_matrix")


def _read_csv_matrix(path: str, key: str) -> np.ndarray:
    """Rows of comma-separated numbers (BOM, CRLF and blank lines allowed); errors name ``file:line``."""
    rows = []
    for i, line in read_text_lines(path, what=key):
        try:
            rows.append([float(v) for v in line.split(",")])
        except ValueError:
            raise DataError(f"{key}: {where(path, i)}: {line.strip()!r} is not comma-separated numbers") from None
        if len(rows[-1]) != len(rows[0]):
            raise DataError(f"{key}: {where(path, i)}: {len(rows[-1])} values, the first row has {len(rows[0])}")
    return np.asarray(rows, dtype=np.float64)


def _read_matrix_file(path: str, key: str) -> Any:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".json", ".csv"):
        raise ConfigError(f"{key}: unsupported file type {ext!r}; use .npy, .json or .csv")
    try:
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        if ext == ".csv":
            return _read_csv_matrix(path, key)
        data = json.loads(read_text(path, what=key))
    except DataError:
        raise
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{key}: cannot read {path!r}: {e}") from None
    if not isinstance(data, dict):
        return data
    found = next((k for k in TRANSITION_KEYS if k in data), None)
    if found is None:
        raise ConfigError(f"{key}: {path!r} has none of the entries {', '.join(TRANSITION_KEYS)}")
    return data[found]


def load_transition(value: Any, num_classes: int) -> np.ndarray:
    """``method.params.transition`` as a checked [C, C] matrix (nested list or a .npy/.json/.csv file)."""
    key = "method.params.transition"
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise ConfigError(f"{key}: {value!r} is neither 'auto' nor an existing .npy/.json/.csv file")
        value = _read_matrix_file(value, key)
    try:
        return check_transition(np.asarray(value, dtype=np.float64), num_classes)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {e}") from None


def forward_loss(logits: paddle.Tensor, labels: paddle.Tensor, t: paddle.Tensor) -> paddle.Tensor:
    """Per-sample ``-log (softmax(logits) @ T)[label]`` [B]."""
    noisy = paddle.matmul(F.softmax(logits.astype("float32"), axis=-1), t)
    picked = paddle.take_along_axis(noisy, labels.reshape([-1, 1]).astype("int64"), axis=1).squeeze(1)
    return -paddle.log(picked.clip(min=PROB_FLOOR))


def transition_error(t: np.ndarray, clean: np.ndarray, noisy: np.ndarray) -> float:
    """Mean absolute error per entry of ``t`` [C, C] against the noise matrix realised by ``clean`` -> ``noisy``."""
    return float(np.abs(t - realised_matrix(clean, noisy, t.shape[0])).mean())


class LearnedTransition(paddle.nn.Layer):
    """A trainable row-stochastic ``T = rownorm(I + sigmoid(W) * (1 - I))`` [C, C] (VolMinNet's ``sig_t``).

    Li, Liu, Han, Niu & Sugiyama, "Provably End-to-end Label-Noise Learning without Anchor Points", ICML
    2021, https://arxiv.org/abs/2102.02400: trained with the forward loss plus ``volume_weight * log|det T|``
    (:meth:`volume`), the smallest-volume ``T`` that explains the noisy labels is the true one when the clean
    posteriors are sufficiently scattered -- no anchor points needed. ``W`` starts at ``-init`` everywhere,
    so the diagonal always dominates each row and starts at ``1 / (1 + (C-1) sigmoid(-init))`` (0.48 for
    10 classes and the reference's ``init=2``). ``W`` is marked ``no_weight_decay`` (decay would pull the
    off-diagonal toward uniform) and learns at ``lr_scale`` times the optimizer's rate.
    """

    def __init__(self, num_classes: int, *, init: float = 2.0, lr_scale: float = 1.0) -> None:
        super().__init__()
        attr = paddle.ParamAttr(learning_rate=lr_scale, initializer=paddle.nn.initializer.Constant(-init))
        self.w = self.create_parameter([num_classes, num_classes], dtype="float32", attr=attr)
        self.w.no_weight_decay = True
        self.register_buffer("off", paddle.to_tensor(1.0 - np.eye(num_classes, dtype=np.float32)), persistable=False)

    def forward(self) -> paddle.Tensor:
        t = 1.0 - self.off + F.sigmoid(self.w) * self.off
        return t / t.sum(axis=1, keepdim=True)

    @staticmethod
    def volume(t: paddle.Tensor) -> paddle.Tensor:
        """``log|det T|`` (scalar), the volume penalty."""
        return paddle.linalg.slogdet(t)[1]


@METHODS.register("forward_correction")
class ForwardCorrectionMethod(Method):
    """Forward loss correction (Patrini et al. 2017) with a given or estimated transition matrix.

    Args:
        transition: ``"auto"`` or a matrix / file (see the module docstring).
        warmup_epochs: ``auto``: epochs of plain ``cfg.loss`` training before ``T`` is estimated (>= 1).
        estimator: ``anchor`` or ``confident_joint``.
        anchor_quantile: the anchor filter's quantile in (0, 1] (0.97 in the reference).
        reinit: ``auto``: re-initialise the network after the estimate (the reference trains a second
            network from scratch with the corrected loss); False fine-tunes the warm-up network.
        restart_schedule: with ``reinit``, True starts the lr schedule again over the remaining epochs for the
            re-initialised network (the reference's second model gets its own schedule); False continues the
            run's schedule where the warm-up left it; ``auto`` (default) restarts only when the warm-up took at
            least half of ``train.epochs`` -- continuing was 2-7 points better on the 20-epoch digits grid (a
            quarter of warm-up), while after a long warm-up the fresh network would get only the schedule's
            low-lr tail (17.5 % test accuracy on digits at 2 epochs). True or False with ``reinit: false`` or a given
            transition (no re-initialisation to restart for) raises ConfigError.
        identity_weight: ``auto``: the estimate used is ``(1 - w) T + w I`` (:func:`smooth_transition`).
        require_dominant: ``auto``: refuse an estimate whose diagonal does not dominate every row, train on
            with the warm-up loss and try again next epoch (:func:`dominance_failure`).
    """

    method_name = "forward_correction"
    ignores_because = "the forward-corrected cross-entropy -log((softmax @ T)[y]) from epoch 0 (a given transition)"

    @classmethod
    def settings_used(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """``transition: auto`` trains ``cfg.loss`` during warm-up; a given T uses only the forward loss."""
        return cls.uses if params.get("transition", "auto") == "auto" else ()

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``method.params`` of ``forward_correction`` (checked by the registry)."""

        transition: Any = param("auto", doc="auto (estimate after the warm-up), a [C, C] matrix, or a file")
        warmup_epochs: float = param(5, min=0, min_open=True, doc="auto: epochs of plain training before T is estimated (>= 1), or a fraction of the run in (0, 1)")
        estimator: str = param("anchor", choices=ESTIMATORS, doc="anchor (Patrini et al.) or confident_joint")
        anchor_quantile: float = param(0.97, min=0.0, max=1.0, min_open=True, doc="the anchor filter's quantile")
        reinit: bool = param(True, doc="auto: re-initialise the network after the estimate")
        restart_schedule: bool | str = param("auto", choices=("auto", True, False),
                                             doc="auto + reinit: restart the lr schedule for the fresh network "
                                                 "(False: continue the run's; auto: restart when the warm-up took "
                                                 ">= half the run)")
        identity_weight: float = param(0.0, min=0.0, max=1.0, doc="auto: use (1 - w) T + w I (shrink toward CE)")
        require_dominant: bool = param(True, doc="auto: refuse a T whose diagonal does not dominate each row "
                                                 "(train on with the warm-up loss, retry next epoch)")

    def __init__(self, ctx: MethodContext, *, transition: Any = "auto", warmup_epochs: int = 5,
                 estimator: str = "anchor", anchor_quantile: float = 0.97, reinit: bool = True,
                 restart_schedule: bool | str = "auto", identity_weight: float = 0.0,
                 require_dominant: bool = True) -> None:
        super().__init__(ctx)
        m = self.method_name
        self.auto = transition == "auto"
        # the transition needs num_classes (and may be a file): loaded and checked here; the rest was checked
        # by the registry against Params
        self.t: np.ndarray | None = None if self.auto else load_transition(transition, ctx.num_classes)
        self.warmup_epochs = epoch_param(ctx, warmup_epochs, "warmup_epochs")
        self.estimator, self.anchor_quantile, self.reinit = estimator, float(anchor_quantile), bool(reinit)
        self.identity_weight, self.require_dominant = float(identity_weight), bool(require_dominant)
        self.restart_schedule = restart_schedule if restart_schedule == "auto" else bool(restart_schedule)
        if self.restart_schedule != "auto" and not (self.auto and self.reinit):
            raise ConfigError(f"method.params.restart_schedule={restart_schedule}: the schedule restarts only for the "
                              "network re-initialised after the warm-up (transition: auto with reinit: true); this run "
                              f"has {'reinit: false' if self.auto else 'a given transition'}, so remove it")
        if self.auto:
            check_training_after(ctx, self.warmup_epochs, keys="method.params.warmup_epochs", method=m,
                                 what="the warm-up that estimates T")
        self.networks = {"net": ctx.build_network()}
        self.loss_fn = ctx.build_loss()
        self.estimate: dict[str, Any] = {}  # floats, and identity_rows (list of classes)
        self.refused = 0  # estimates refused so far (require_dominant)
        self._t_tensor: paddle.Tensor | None = None

    # ------------------------------------------------------------------------------------------ training
    def _tensor(self) -> paddle.Tensor:
        if self._t_tensor is None:
            self._t_tensor = paddle.to_tensor(self.t.astype(np.float32))
        return self._t_tensor

    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        x, y = batch[0], batch[1]
        logits = self.networks["net"](x)
        if self.t is None:  # auto warm-up: the run's loss on the given labels
            loss = self.loss_fn(logits, y)
            return loss, {"warmup": 1.0}
        loss = forward_loss(logits, y, self._tensor()).mean()
        return loss, {"warmup": 0.0}

    def before_epoch(self, trainer: Trainer) -> None:
        if self.t is not None or trainer.epoch < self.warmup_epochs:
            return
        logits = trainer.train_set_logits()  # the shared per-sample pass (every rank calls it)
        labels = np.asarray(trainer.loaders["train_eval"].dataset.labels)
        probs = softmax(logits)
        if self.estimator == "anchor":
            t = anchor_transition(probs, quantile=self.anchor_quantile)
        else:
            t = estimate_noise_matrix(labels, probs)
        t, absent = identity_rows_for_absent_classes(t, labels)
        if absent.size:
            logger.warning("%s: class(es) %s have no training samples; their rows of T are identity rows (an "
                           "estimated row would send another class's probability to them)", self.method_name,
                           absent.tolist())
        failure = dominance_failure(t) if self.require_dominant else None
        if failure is not None:
            self._refuse(trainer, t, labels, failure)
            return
        self.t, self._t_tensor = check_transition(smooth_transition(t, self.identity_weight), self.num_classes), None
        self.estimate = {"epoch": float(trainer.epoch), "rate_t": self.implied_rate(labels)}
        if self.identity_weight:
            self.estimate["identity_weight"] = self.identity_weight
        if self.refused:
            self.estimate["refused"] = float(self.refused)
        if absent.size:
            self.estimate["identity_rows"] = absent.tolist()
        clean = self.ctx.clean_labels
        if clean is not None:
            self.estimate["t_error"] = transition_error(self.t, np.asarray(clean), labels)
            self.estimate["rate_true"] = float(np.mean(labels != np.asarray(clean)))
        logger.info("%s: T estimated (%s) after %d epochs; implied noise rate %.3f%s\n%s", self.method_name,
                    self.estimator, trainer.epoch, self.estimate["rate_t"],
                    (f", true rate {self.estimate['rate_true']:.3f}, mean |T - T_true| "
                     f"{self.estimate['t_error']:.4f}") if clean is not None else "",
                    np.array2string(self.t, precision=3, suppress_small=True))
        self._save(trainer)
        if self.reinit:
            net, fresh = self.networks["net"], self.ctx.build_network()
            net.set_state_dict(fresh.state_dict())
            if self.restarts_schedule(trainer.epoch):  # trainer.epoch (0-based) epochs of warm-up are done
                trainer.restart_schedule(f"{self.method_name}: network re-initialised after the warm-up")

    def restarts_schedule(self, done: int) -> bool:
        """Whether the network re-initialised after ``done`` epochs restarts the lr schedule (``restart_schedule``;
        ``auto``: when ``done`` is at least half of ``train.epochs``)."""
        if self.restart_schedule == "auto":
            return 2 * done >= self.ctx.cfg.train.epochs
        return bool(self.restart_schedule)

    def _refuse(self, trainer: Trainer, t: np.ndarray, labels: np.ndarray, failure: str) -> None:
        """Keep training with the warm-up loss: the estimate's diagonal does not dominate (``failure``)."""
        self.refused += 1
        last = trainer.epoch >= trainer.cfg.train.epochs - 1
        log = logger.warning if self.refused == 1 or last else logger.info
        log("%s: the T estimated (%s) after %d epochs is refused -- its diagonal does not dominate (%s): the "
            "warm-up network still confuses these classes. Training goes on with plain %s%s (set a later "
            "method.params.warmup_epochs, give method.params.transition, or require_dominant: false)",
            self.method_name, self.estimator, trainer.epoch, failure, trainer.cfg.loss.name,
            "; this was the last chance, the run is a plain " + trainer.cfg.loss.name + " run" if last
            else "; trying again next epoch")
        clean = self.ctx.clean_labels
        record = {"accepted": False, "reason": failure, "epoch": float(trainer.epoch), "refused": self.refused}
        if clean is not None:
            record["t_error"] = transition_error(t, np.asarray(clean), labels)
        trainer.save_artifact("transition.json", {"transition": t.tolist(), "estimator": self.estimator, **record})

    def implied_rate(self, labels: np.ndarray) -> float:
        """Noise rate implied by ``T`` and the given-label counts: ``sum_i prior_i (1 - T[i, i])`` with the
        clean prior estimated by solving ``prior^T T = noisy prior`` (least squares, clipped, renormalised)."""
        noisy_prior = np.bincount(labels, minlength=self.num_classes) / max(labels.size, 1)
        prior, *_ = np.linalg.lstsq(self.t.T, noisy_prior, rcond=None)
        prior = np.clip(prior, 0.0, None)
        prior = prior / prior.sum() if prior.sum() > 0 else noisy_prior
        return float(np.sum(prior * (1.0 - np.diag(self.t))))

    def _save(self, trainer: Trainer) -> None:
        trainer.save_artifact("transition.json", {"transition": self.t.tolist(), "estimator": self.estimator,
                                                  "accepted": True, **self.estimate})

    def after_epoch(self, trainer: Trainer) -> None:
        for key in ("rate_t", "t_error", "rate_true"):
            if key in self.estimate:
                trainer.log_scalar(f"noise/{key}", self.estimate[key])

    # --------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"transition": None if self.t is None else self.t.tolist(), "estimate": dict(self.estimate),
                "refused": self.refused}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state) - {"transition", "estimate", "refused"})
        if unknown:
            raise CheckpointError(f"{self.method_name}: checkpoint method state has unknown key(s) {unknown}")
        t = state.get("transition")
        if t is not None:
            self.t, self._t_tensor = check_transition(np.asarray(t, dtype=np.float64), self.num_classes), None
        self.estimate = {k: [int(i) for i in v] if k == "identity_rows" else float(v)
                         for k, v in (state.get("estimate") or {}).items()}
        self.refused = int(state.get("refused", 0))  # absent in checkpoints from before the guard
