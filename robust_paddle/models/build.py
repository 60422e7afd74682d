"""``build_model``: registry names, ``paddle.vision.models`` names, or a user's ``"pkg.module:function"``."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from typing import Any

from paddle import nn

from robust_paddle.errors import ConfigError
from robust_paddle.models.text import DATA_KWARGS
from robust_paddle.models.vision import VISION_FACTORIES, VisionClassifier
from robust_paddle.registry import MODELS

logger = logging.getLogger(__name__)

_USER_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def has_feature_split(model: nn.Layer) -> bool:
    """Whether ``model`` exposes ``feature_dim``, ``forward_features`` and ``classifier``."""
    return (isinstance(getattr(model, "feature_dim", None), int) and callable(getattr(model, "forward_features", None))
            and isinstance(getattr(model, "classifier", None), nn.Layer))


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in input_shape
    ):
        raise ConfigError(f"input_shape: expected a non-empty tuple of positive ints (per-sample shape without "
                         f"the batch axis, e.g. (3, 32, 32)), got {input_shape!r}")
    return tuple(input_shape)


def _build_user_factory(name: str, *, num_classes: int, input_shape: tuple[int, ...], **params: Any) -> nn.Layer:
    module_name, func_name = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"model.name: cannot import module '{module_name}' for {name!r}: {e}") from None
    # The user named this attribute explicitly in model.name; this is not selection among our own code.
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ConfigError(f"model.name: module '{module_name}' has no callable '{func_name}' (from {name!r})")
    model = factory(num_classes=num_classes, input_shape=input_shape, **params)
    if not isinstance(model, nn.Layer):
        raise ConfigError(f"model.name: {name!r} returned {type(model).__name__}, expected a paddle.nn.Layer")
    if not has_feature_split(model):
        logger.warning("model %r has no feature_dim / forward_features / classifier; methods that need "
                       "features (DivideMix, embedding-level adversarial training) will not work with it", name)
    return model


def build_model(name: str, *, num_classes: int, input_shape: Sequence[int], **params: Any) -> nn.Layer:
    """Build a classifier that maps ``[N, *input_shape]`` to logits ``[N, num_classes]``.

    Lookup order:

    1. ``MODELS`` registry: ``mlp``, ``small_cnn``, ``resnet18_cifar``, ``resnet34_cifar``,
       ``preact_resnet18`` and the text models; ``params`` are checked against the model's declared ``Params``
       by the registry (``model.params.<key>``, the value, what is allowed).
    2. ``"package.module:function"``: imported with importlib and called as
       ``function(num_classes=..., input_shape=..., **params)``; must return a ``paddle.nn.Layer``.
    3. A ``paddle.vision.models`` factory name (``resnet18``, ``mobilenet_v2`` ...), built with
       ``pretrained=False`` (see :mod:`robust_paddle.models.vision`).

    Models from 1 and 3 expose ``feature_dim``, ``forward_features(x) -> [N, feature_dim]`` and
    ``classifier`` (``forward(x) == classifier(forward_features(x))``).

    Args:
        name: ``model.name``.
        num_classes: number of classes (from the dataset).
        input_shape: per-sample input shape without the batch axis, e.g. ``(3, 32, 32)``.
        **params: ``model.params``.

    Raises:
        ValueError: unknown name, unknown or invalid ``model.params``, unsupported input shape.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"model.name: expected a non-empty string, got {name!r}")
    input_shape = _check_input_shape(input_shape)
    if name in MODELS:
        fixed = {"num_classes": num_classes, "input_shape": input_shape,
                 **{k: params.pop(k) for k in DATA_KWARGS if k in params}}  # from the data, not model.params
        model = MODELS.build(name, field="model.params", fixed=fixed, **params)
    elif ":" in name:
        if not _USER_FACTORY.match(name):
            raise ConfigError(f"model.name: {name!r} is not a 'package.module:function' path")
        model = _build_user_factory(name, num_classes=num_classes, input_shape=input_shape, **params)
    elif name in VISION_FACTORIES:
        model = VisionClassifier(name, num_classes=num_classes, input_shape=input_shape, **params)
    else:
        raise ConfigError(
            f"model.name: unknown model {name!r}; registered: {', '.join(MODELS.names())}; also accepted: "
            f"paddle.vision.models names (e.g. resnet18, mobilenet_v2; all: {', '.join(VISION_FACTORIES)}) "
            "and a user factory "
            "'pkg.mod:fn' called as fn(num_classes=..., input_shape=..., **params)"
        )
    n_params = sum(int(p.size) for p in model.parameters())
    logger.info("model %s: %d parameters, input_shape=%s, num_classes=%d", name, n_params, input_shape, num_classes)
    return model
