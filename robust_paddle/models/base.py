"""The feature / classifier split every model exposes, and input-shape checks."""

from __future__ import annotations

import abc
from collections.abc import Sequence

import paddle
from paddle import nn

from robust_paddle.errors import ConfigError


class FeatureClassifier(nn.Layer, metaclass=abc.ABCMeta):
    """Base for models built here: ``forward(x) = classifier(forward_features(x))``.

    Subclasses set ``self.feature_dim`` (int) and ``self.classifier`` (a layer mapping
    ``[N, feature_dim]`` to ``[N, num_classes]``) and implement ``forward_features``. Methods that need
    embeddings (embedding-level adversarial training, DivideMix mixup on features) call
    ``forward_features`` and ``classifier`` separately.

    Attributes:
        feature_dim: width of the feature vector returned by ``forward_features``.
        num_classes: number of logits.
        input_shape: ``(C, H, W)`` (or any per-sample shape for the MLP) the model was built for.
    """

    feature_dim: int
    num_classes: int
    input_shape: tuple[int, ...]
    classifier: nn.Layer

    @abc.abstractmethod
    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        """``[N, *input_shape]`` -> ``[N, feature_dim]``."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """``[N, *input_shape]`` -> logits ``[N, num_classes]``."""
        return self.classifier(self.forward_features(x))


def check_image_shape(input_shape: Sequence[int], *, model: str, channels: tuple[int, ...] = (1, 3),
                      min_size: int = 1) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` image shape for ``model``; returns it as a tuple of ints."""
    if len(input_shape) != 3:
        raise ConfigError(f"model '{model}': input_shape must be (channels, height, width), got {tuple(input_shape)!r}")
    c, h, w = (int(v) for v in input_shape)
    if c not in channels:
        raise ConfigError(f"model '{model}': input_shape {tuple(input_shape)!r} has {c} channels; "
                         f"allowed: {', '.join(map(str, channels))} (see data.channels)")
    if h < min_size or w < min_size:
        raise ConfigError(f"model '{model}': input_shape {tuple(input_shape)!r} is smaller than "
                         f"{min_size}x{min_size} (see data.image_size)")
    return c, h, w


def check_num_classes(num_classes: int, *, model: str) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"model '{model}': num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes
