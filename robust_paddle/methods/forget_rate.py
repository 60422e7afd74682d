"""The forget rate of small-loss methods: a fixed value, or ``auto`` (estimated once after a warm-up).

The reference code of Co-teaching, Co-teaching+ and JoCoR sets the forget rate ``tau`` to the injected
noise rate, which real data does not tell you. ``forget_rate: auto`` trains on every sample for
``estimate_epoch`` epochs (the schedule's keep ratio is 1), then estimates the noise rate once from the
ensemble's logits on the un-augmented training set (``trainer.loaders["train_eval"]``) with two
independent estimators and uses their mean:

* ``rate_gmm``: the posterior mass of the high-loss component of a 2-component Gaussian mixture fitted to
  the per-sample cross-entropy losses (:func:`robust_paddle.methods.correction.gmm_noise_rate`, as in DivideMix,
  Li et al. 2020, https://arxiv.org/abs/2002.07394);
* ``rate_cj``: ``1 - trace(Q)`` of the calibrated confident joint
  (:func:`robust_paddle.quality.estimation.estimate_noise_rate`, Northcutt et al. 2021,
  https://arxiv.org/abs/1911.00068).

The GMM tends to read high when the network is under-fitted (hard clean samples look noisy) and the
confident joint reads low on in-sample probabilities (the network has already started to fit some wrong
labels); averaging the two cancels much of either bias. The mean is capped at ``MAX_AUTO_FORGET_RATE``.
The estimate, both components and the epoch are checkpointed so a resumed run uses the same ``tau``.

When to estimate (``estimate_epoch``, default 2): after the network has fitted the easy clean samples
and before it memorises the wrong labels. Measured on digits (small CNN, SGD 0.05, true rates 0.22 /
0.40-0.42 / 0.60 symmetric, 0.48 pair): after 1 epoch the GMM reads high (0.53 at 40 %), after 2 epochs
the mean is within 0.03 of the truth in every case, after 6+ epochs the confident joint has collapsed
(0.23 at 40 %, 0.08 at 20 %) and the mean reads low. Co-teaching's schedule has not reached ``tau`` by
then anyway (``T / T_k = 0.2``). Slower-memorising setups (CIFAR-10 with Adam 1e-3) should use about 10,
DivideMix's CIFAR-10 warm-up; the CIFAR-10N configs do.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.data.textfile import read_text
from robust_paddle.errors import ConfigError
from robust_paddle.methods.correction import gmm_noise_rate
from robust_paddle.methods.selection import forget_rate_schedule
from robust_paddle.ops import per_sample_ce, softmax
from robust_paddle.quality.estimation import estimate_noise_rate

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

#: upper bound of an ``auto`` forget rate: at least 10 % of every batch is always kept
MAX_AUTO_FORGET_RATE = 0.9


def estimate_noise_rates(logits: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """Noise-rate estimates from one model's logits on the training set.

    Args:
        logits: ``[N, C]`` float logits (e.g. the mean of both networks' logits, eval mode).
        labels: ``[N]`` int given (noisy) labels.
        seed: random_state of the Gaussian mixture.

    Returns:
        ``{"rate_gmm", "rate_cj", "forget_rate"}``; ``forget_rate`` is the mean of the two finite estimates
        clipped to ``[0, MAX_AUTO_FORGET_RATE]``.

    Raises:
        ValueError: shapes disagree, or neither estimator gives a finite value.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ConfigError(f"estimate_noise_rates: logits must be [N, C] and labels [N], got shapes "
                         f"{list(logits.shape)} and {list(labels.shape)}")
    losses = per_sample_ce(logits, labels)
    rate_gmm = float(gmm_noise_rate(losses, seed=seed))
    rate_cj = float(estimate_noise_rate(labels, softmax(logits)))
    finite = [r for r in (rate_gmm, rate_cj) if math.isfinite(r)]
    if not finite:
        raise ConfigError("forget_rate auto: neither the GMM nor the confident-joint noise estimate is "
                         "finite; set method.params.forget_rate to a number")
    mean = float(np.mean(finite))
    if mean > MAX_AUTO_FORGET_RATE:
        logger.warning("estimated noise rate %.3f is above %.2f; the forget rate is capped there", mean,
                       MAX_AUTO_FORGET_RATE)
    tau = float(np.clip(mean, 0.0, MAX_AUTO_FORGET_RATE))
    return {"rate_gmm": rate_gmm, "rate_cj": rate_cj, "forget_rate": tau}


def forget_rate_from_file(path: str) -> float:
    """The noise rate of a ``noise_estimate.json`` (``robust-paddle estimate``): ``combined`` when present, else
    the spot check's ``noise_rate``.

    Raises:
        ConfigError: not an existing .json file, or it holds no noise rate in [0, 1).
    """
    key = "method.params.forget_rate"
    if not (path.lower().endswith(".json") and os.path.isfile(path)):
        raise ConfigError(f"{key}: {path!r} is neither a number in [0, 1), 'auto', nor an existing noise_estimate.json")
    try:
        data = json.loads(read_text(path, what=key))
        rate = (data.get("combined") or data)["noise_rate"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{key}: {path} has no noise_rate entry (write it with robust-paddle estimate)") from None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise ConfigError(f"{key}: {path} gives noise_rate {rate!r}; it must be in [0, 1)")
    logger.info("forget rate %.4f from %s", rate, path)
    return float(rate)


class AutoForgetRate:
    """The forget rate ``tau`` of a small-loss method and its schedule.

    Args:
        forget_rate: tau in [0, 1), ``"auto"``, or the path of a ``noise_estimate.json`` written by
            ``robust-paddle estimate`` (its combined estimate when it has one, else the spot check's).
        num_gradual, exponent: T_k and c of :func:`robust_paddle.methods.selection.forget_rate_schedule`.
        estimate_epoch: ``auto`` only: epochs trained on every sample before the estimate (>= 1).
        epochs: the run's ``train.epochs`` (a warning is logged when the estimate would never happen).
        where: the method name, for messages. seed: the GMM's random_state.
    """

    def __init__(self, forget_rate: float | str, *, num_gradual: int, exponent: float, estimate_epoch: int,
                 epochs: int, where: str, seed: int = 0) -> None:
        self.auto = forget_rate == "auto"
        self.source = None
        if isinstance(forget_rate, str) and not self.auto:
            self.source, forget_rate = forget_rate, forget_rate_from_file(forget_rate)
        # a number was checked by the registry (SmallLossParams: [0, 1)), a file by forget_rate_from_file
        if self.auto and estimate_epoch >= epochs:
            raise ConfigError(f"method.params.estimate_epoch={estimate_epoch} leaves {where} no training after "
                              f"the forget_rate auto estimate with train.epochs={epochs}; lower "
                              "method.params.estimate_epoch (a fraction of the run in (0, 1) keeps it relative) or "
                              "raise train.epochs")
        self.tau: float | None = None if self.auto else float(forget_rate)
        self.num_gradual, self.exponent = num_gradual, exponent
        self.estimate_epoch, self.where, self.seed = estimate_epoch, where, seed
        self.estimate: dict[str, float] = {}

    @property
    def forget_rate(self) -> float:
        """tau in force (0 while ``auto`` has not been estimated yet)."""
        return 0.0 if self.tau is None else self.tau

    def keep_ratio(self, epoch: int) -> float:
        """R(T) = 1 - tau * min((T / T_k)^c, 1) for 0-based ``epoch``."""
        return 1.0 - forget_rate_schedule(epoch, forget_rate=self.forget_rate, num_gradual=self.num_gradual,
                                          exponent=self.exponent)

    def maybe_estimate(self, trainer: Trainer, *, epoch: int, clean_labels: np.ndarray | None) -> None:
        """Estimate tau once, at the start of epoch ``estimate_epoch`` (``auto`` only)."""
        if not self.auto or self.tau is not None or epoch < self.estimate_epoch:
            return
        logits = trainer.train_set_logits()  # the shared per-sample pass (every rank calls it)
        labels = np.asarray(trainer.loaders["train_eval"].dataset.labels)
        est = estimate_noise_rates(logits, labels, seed=self.seed)
        self.tau = est["forget_rate"]
        self.estimate = {**est, "epoch": float(epoch)}
        if clean_labels is not None:
            self.estimate["rate_true"] = float(np.mean(labels != np.asarray(clean_labels)))
        truth = f" (true rate {self.estimate['rate_true']:.3f})" if "rate_true" in self.estimate else ""
        logger.info("%s: forget_rate auto after %d epochs: GMM noisy mass %.3f, confident joint %.3f -> "
                    "forget rate %.3f (their mean)%s", self.where, epoch, est["rate_gmm"], est["rate_cj"],
                    self.tau, truth)

    def scalars(self) -> dict[str, float]:
        """Epoch scalars: ``noise/forget_rate`` and, once estimated, ``noise/rate_gmm``, ``noise/rate_cj``
        (and ``noise/rate_true`` when clean labels are known)."""
        out = {"noise/forget_rate": self.forget_rate}
        for key in ("rate_gmm", "rate_cj", "rate_true"):
            if key in self.estimate:
                out[f"noise/{key}"] = self.estimate[key]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "estimate": dict(self.estimate)} if self.auto else {}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        if not self.auto:
            return
        tau = state.get("tau")
        self.tau = None if tau is None else float(tau)
        self.estimate = {k: float(v) for k, v in (state.get("estimate") or {}).items()}
