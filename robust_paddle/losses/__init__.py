"""Robust losses for training on noisy labels; every family registers itself in ``LOSSES``.

Every loss is a ``paddle.nn.Layer`` called as ``loss(logits [N, C], target, sample_weight=None)`` where
``target`` is int labels ``[N]`` or soft targets ``[N, C]``; see
:class:`~robust_paddle.losses.base.RobustLoss` for the shared contract.
"""

from __future__ import annotations

import paddle

from robust_paddle.losses import bootstrap, ce, focal, gce, mae, normalized, symmetric  # noqa: F401 (register)
from robust_paddle.losses.base import RobustLoss
from robust_paddle.losses.bootstrap import HardBootstrappingLoss, SoftBootstrappingLoss
from robust_paddle.losses.ce import CrossEntropyLoss
from robust_paddle.losses.focal import FocalLoss
from robust_paddle.losses.functional import per_sample_ce, target_probs, to_one_hot
from robust_paddle.losses.gce import GeneralizedCrossEntropyLoss, TruncatedGCELoss
from robust_paddle.losses.mae import MAELoss
from robust_paddle.losses.normalized import NCEAndMAELoss, NCEAndRCELoss
from robust_paddle.losses.symmetric import SymmetricCrossEntropyLoss
from robust_paddle.registry import LOSSES

__all__ = [
    "LOSSES",
    "CrossEntropyLoss",
    "FocalLoss",
    "GeneralizedCrossEntropyLoss",
    "HardBootstrappingLoss",
    "MAELoss",
    "NCEAndMAELoss",
    "NCEAndRCELoss",
    "RobustLoss",
    "SoftBootstrappingLoss",
    "SymmetricCrossEntropyLoss",
    "TruncatedGCELoss",
    "build_loss",
    "per_sample_ce",
    "target_probs",
    "to_one_hot",
]


def build_loss(name: str, *, num_classes: int, field: str = "loss.params", **params: object) -> paddle.nn.Layer:
    """Build the registered loss ``name``.

    Args:
        name: a ``LOSSES`` name (``ce``, ``gce``, ``truncated_gce``, ``sce``, ``nce_rce``, ``nce_mae``,
            ``focal``, ``mae``, ``bootstrap_soft``, ``bootstrap_hard``).
        num_classes: C.
        field: config path of ``params``, named in the error for an unknown key.
        **params: the loss's own keyword options (``reduction``, ``weight``, ``q``, ...).

    Returns:
        The loss Layer.

    Raises:
        ConfigError: unknown name (listing the choices), unknown key in ``params`` (naming ``field`` and the
            allowed keys), or a bad value (``loss.params.q: 0.0 is out of range; must be > 0.0 and <= 1.0``:
            the loss's declared ``Params``, checked by the registry).
    """
    return LOSSES.build(name, field=field, fixed={"num_classes": num_classes}, **params)
