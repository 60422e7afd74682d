"""The training-strategy contract.

A method owns its networks (one or two) and its per-sample state (refined labels, clean probabilities,
selection masks); the trainer owns the loop, the single optimizer over ``method.parameters()``, AMP,
gradient accumulation and clipping. Per step the trainer calls::

    with auto_cast(...):
        loss, terms = method.train_step(batch, epoch=e, step=s)   # loss: scalar Tensor to backprop
    scaler.scale(loss / accumulate_steps).backward() ...

``terms`` are named scalars (Tensors or floats) logged to VisualDL and the progress bar. Two-network
methods return the sum of both networks' losses (their parameters are disjoint, so one backward trains
both). ``before_epoch`` / ``after_epoch`` receive the trainer, so methods can run eval-mode passes over
``trainer.loaders["train_eval"]`` (GMM division, relabelling) and log epoch scalars and histograms.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import paddle

from robust_paddle.config import run_epochs
from robust_paddle.errors import CheckpointError, ConfigError
from robust_paddle.registry import METHODS

if TYPE_CHECKING:
    from robust_paddle.config import Config
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class MethodContext:
    """What a method may use to build itself.

    Attributes:
        cfg: the resolved run config.
        num_classes: C.
        input_shape: one sample's shape, e.g. (1, 8, 8).
        train_labels: [N] int64 labels the training set carries (noisy).
        clean_labels: [N] int64 true labels when known (injected noise, ``y_clean``), else None.
        build_network: returns a freshly initialised network from ``cfg.model``.
        build_loss: ``build_loss(name=None, **overrides)`` -> loss Layer from ``cfg.loss`` (or ``name``).
        soft_targets: [N, C] float target distributions per training sample (the annotators' consensus
            posterior, ``data.annotations_target: soft``), or None.
        sample_weights: [N] float per-sample loss weights (``data.annotations_weighting: agreement``), or None.
        clean_prior: [N] float prior probability that each training label is right, from the annotators
            (``data.annotations_prior``; NaN for a sample nobody answered), or None. Methods with
            ``uses_clean_prior`` start their clean probabilities / selections from it.
    """

    cfg: Config
    num_classes: int
    input_shape: tuple[int, ...]
    train_labels: np.ndarray
    clean_labels: np.ndarray | None
    build_network: Callable[[], paddle.nn.Layer]
    build_loss: Callable[..., paddle.nn.Layer]
    soft_targets: np.ndarray | None = None
    sample_weights: np.ndarray | None = None
    clean_prior: np.ndarray | None = None

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])


#: config keys outside ``method`` whose effect depends on the method; each method declares those it applies
#: (``Method.settings_used``) and a run that sets one the method ignores is refused (``check_method_settings``)
METHOD_DEPENDENT_KEYS = ("loss.name", "loss.params", "loss.class_weighting", "loss.class_weighting_beta")


class Method(abc.ABC):
    """Base class of training strategies (``*Method``); subclasses register in ``METHODS``."""

    #: names of networks in ``self.networks``, first = default for evaluation/export
    networks: dict[str, paddle.nn.Layer]
    #: which of :data:`METHOD_DEPENDENT_KEYS` the method applies (default: all of them)
    uses: tuple[str, ...] = METHOD_DEPENDENT_KEYS
    #: what the method trains with instead, for the error naming an ignored key
    ignores_because: str = ""
    #: whether the method takes ``MethodContext.clean_prior`` (``data.annotations_prior``)
    uses_clean_prior: bool = False

    @classmethod
    def settings_used(cls, params: dict[str, Any]) -> tuple[str, ...]:
        """The :data:`METHOD_DEPENDENT_KEYS` this method applies with ``method.params = params``."""
        return cls.uses

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.num_classes = ctx.num_classes
        self.networks = {}

    # ------------------------------------------------------------------ required
    @abc.abstractmethod
    def train_step(self, batch: tuple[paddle.Tensor, ...], *, epoch: int, step: int) -> tuple[paddle.Tensor, dict[str, Any]]:
        """One training step's loss.

        Args:
            batch: (x [B, ...] float32, y [B] int64 given labels, idx [B] int64 dataset indices).
            epoch: 0-based epoch; step: global optimizer-step counter.

        Returns:
            (scalar loss Tensor to backpropagate, {term name: scalar Tensor or float}).
        """

    # ------------------------------------------------------------------ defaults
    def parameters(self) -> list[paddle.Tensor]:
        """Trainable parameters of every network (the trainer builds one optimizer over them)."""
        params = []
        for net in self.networks.values():
            params.extend(p for p in net.parameters() if not p.stop_gradient)
        return params

    def train(self) -> None:
        for net in self.networks.values():
            net.train()

    def eval(self) -> None:
        for net in self.networks.values():
            net.eval()

    def predict(self, x: paddle.Tensor) -> paddle.Tensor:
        """Evaluation logits [B, C]: the first network, or the mean of all networks' logits."""
        return self.predict_all(x)[0]

    def predict_all(self, x: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
        """(evaluation logits [B, C] as :meth:`predict`, [each network's logits [B, C]] in ``networks``
        order), from one forward per network."""
        each = [n(x) for n in self.networks.values()]
        return (each[0] if len(each) == 1 else paddle.stack(each).mean(axis=0)), each

    def export_network(self, which: str = "auto") -> paddle.nn.Layer:
        """The Layer to export: a named network, or ``"ensemble"`` (averaged logits of all networks)."""
        names = list(self.networks)
        if which == "auto":
            which = names[0] if len(names) == 1 else "ensemble"
        if which == "ensemble":
            return EnsembleNet(list(self.networks.values())) if len(names) > 1 else self.networks[names[0]]
        if which not in self.networks:
            raise ConfigError(f"export.network: {which!r} is not a network of this method; choose one of: "
                             f"{', '.join(names + ['ensemble', 'auto'])}")
        return self.networks[which]

    def loader_views(self, dataset: Any) -> tuple[tuple[int, bool], ...]:
        """Extra augmented views of each training sample the method wants in its batches, as
        ``(view, strong)`` pairs: the train loader's workers compute them and a batch becomes
        ``(x, y, idx, x_view_a, ...)`` (``dataset.get_x(i, view=view, strong=strong)``). Default: none."""
        return ()

    def before_epoch(self, trainer: Trainer) -> None:
        """Called before each training epoch (e.g. co-divide with a GMM)."""

    def after_epoch(self, trainer: Trainer) -> None:
        """Called after each training epoch, before evaluation hooks (e.g. relabelling)."""

    def clean_probability(self) -> np.ndarray | None:
        """[N] probability that each training label is correct, when the method estimates one."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Extra per-sample state to checkpoint (numpy arrays / plain python)."""
        return {}

    def set_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise CheckpointError(f"{type(self).__name__} keeps no extra state but the checkpoint has {sorted(state)}")


def epoch_param(ctx: MethodContext, value: Any, name: str) -> int:
    """``method.params.<name>`` (an epoch count; the registry's ``Params`` checked it is a number >= 0) as whole
    epochs: a fraction of the run in (0, 1) becomes epochs of ``train.epochs`` (``config.run_epochs``: rounded,
    at least 1), so a config written as ``warmup_epochs: 0.4`` keeps its plan at any budget; a whole number
    (``10`` or the ``10.0`` a float field holds) is returned as an int.

    Raises:
        ConfigError: any other value (``1.5``): the one rule the declared range cannot express.
    """
    key = f"method.params.{name}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"{key}: expected a number of epochs >= 0 or a fraction of the run in (0, 1), got {value!r}")
    if 0 < value < 1:
        epochs = int(ctx.cfg.train.epochs)
        out = int(run_epochs(value, epochs=epochs, key=key))
        logger.info("method.params.%s: %g of train.epochs=%d -> %d epochs", name, value, epochs, out)
        return out
    if not float(value).is_integer():
        raise ConfigError(f"{key}: {value!r} is not allowed; expected a whole number of epochs or a fraction of "
                          "the run in (0, 1)")
    return int(value)


def check_training_after(ctx: MethodContext, epochs_before: int, *, keys: str, method: str, what: str) -> None:
    """Raise ConfigError when ``epochs_before`` (a warm-up, an estimate epoch) leaves no epoch of the method's
    real training within ``train.epochs``; the message names ``keys``."""
    epochs = int(ctx.cfg.train.epochs)
    if epochs_before >= epochs:
        raise ConfigError(f"{keys}={epochs_before} leaves method '{method}' no training after {what} with "
                          f"train.epochs={epochs}; lower {keys} (a fraction of the run in (0, 1) such as 0.3 "
                          f"keeps it relative) or raise train.epochs")


class EnsembleNet(paddle.nn.Layer):
    """Averages the logits of several networks (exportable with to_static)."""

    def __init__(self, nets: list[paddle.nn.Layer]) -> None:
        super().__init__()
        self.nets = paddle.nn.LayerList(nets)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.nets[0](x)
        for net in self.nets[1:]:
            out = out + net(x)
        return out / len(self.nets)


def check_method_settings(cfg: Config) -> None:
    """Refuse a setting the chosen method would silently ignore (issue 15: no silently ignored setting).

    Each key of :data:`METHOD_DEPENDENT_KEYS` that differs from its default must be one the method applies
    (``settings_used``); otherwise the run stops before anything is written, so ``config.yaml`` never
    records a setting that had no effect.

    Raises:
        ConfigError: naming the key, its value, the method and what the method trains with instead.
    """
    from robust_paddle import config as config_mod
    from robust_paddle.errors import ConfigError

    builder = METHODS.get(cfg.method.name)
    used_fn = getattr(builder, "settings_used", None)
    used = METHOD_DEPENDENT_KEYS if used_fn is None else used_fn(dict(cfg.method.params))
    defaults = config_mod.to_dict(config_mod.Config())
    values = config_mod.to_dict(cfg)
    for key in METHOD_DEPENDENT_KEYS:
        if key in used:
            continue
        section, name = key.split(".")
        value, default = values[section][name], defaults[section][name]
        if value != default:
            reason = getattr(builder, "ignores_because", "") or "its own loss"
            raise ConfigError(f"{key}={value!r} has no effect with method {cfg.method.name!r}, which trains with "
                              f"{reason}; remove it (default {default!r})")


def build_method(cfg: Config, ctx: MethodContext) -> Method:
    """``METHODS.build(cfg.method.name, ctx, **cfg.method.params)``; unknown params name ``method.params``."""
    return METHODS.build(cfg.method.name, ctx, field="method.params", **cfg.method.params)
