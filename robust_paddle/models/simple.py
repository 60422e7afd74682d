"""Small models for quick experiments: an MLP for any input and a small CNN for 8x8 to 32x32 images."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import paddle
from paddle import nn

from robust_paddle.errors import ConfigError
from robust_paddle.models.base import FeatureClassifier, check_image_shape, check_num_classes
from robust_paddle.registry import MODELS

logger = logging.getLogger(__name__)


def _check_dropout(dropout: float, model: str) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.params.dropout: expected a number in [0, 1) for model '{model}', got {dropout!r}")
    return float(dropout)


def _check_widths(widths: Sequence[int], key: str, model: str, *, allow_empty: bool) -> list[int]:
    if not isinstance(widths, (list, tuple)) or (not widths and not allow_empty) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
        raise ConfigError(f"model.params.{key}: expected a list of positive ints for model '{model}', got {widths!r}")
    return list(widths)


@MODELS.register("mlp")
class MLP(FeatureClassifier):
    """Multi-layer perceptron: flatten, then ``Linear -> ReLU -> Dropout`` per hidden layer.

    Input ``[N, *input_shape]`` (any shape), features ``[N, hidden[-1]]``, logits ``[N, num_classes]``.

    Args:
        num_classes: number of logits.
        input_shape: per-sample shape; its product is the input width.
        hidden: hidden-layer widths; empty gives a linear (softmax-regression) model.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model="mlp")
        self.input_shape = tuple(int(v) for v in input_shape)
        hidden = _check_widths(hidden, "hidden", "mlp", allow_empty=True)
        dropout = _check_dropout(dropout, "mlp")
        layers: list[nn.Layer] = []
        width = math.prod(self.input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.classifier = nn.Linear(width, self.num_classes)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.body(paddle.flatten(x, start_axis=1))


@MODELS.register("small_cnn")
class SmallCNN(FeatureClassifier):
    """A few ``Conv3x3 -> BatchNorm -> ReLU`` stages with 2x2 max-pooling between them, global average
    pooling, dropout and a linear classifier.

    Built for small images: 8x8 (sklearn digits), 28x28 (MNIST family) and 32x32 (CIFAR), with 1 or 3
    channels. A stage is followed by pooling when it is not the last one and its maps are at least 4x4,
    so 8x8 inputs go 8 -> 4 -> 2 and 32x32 inputs 32 -> 16 -> 8 before global pooling. Pooling decisions
    are made at build time from ``input_shape`` (no control flow on tensors: the model exports with
    ``paddle.jit.to_static``).

    Input ``[N, C, H, W]``, features ``[N, channels[-1]]``, logits ``[N, num_classes]``.

    Args:
        num_classes: number of logits.
        input_shape: ``(C, H, W)`` with C in {1, 3}.
        channels: output channels of each stage.
        convs_per_stage: conv-BN-ReLU blocks per stage.
        dropout: dropout probability inside ``classifier``, before its linear layer.
    """

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels: Sequence[int] = (32, 64, 128),
                 convs_per_stage: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model="small_cnn")
        c, h, w = check_image_shape(input_shape, model="small_cnn", min_size=4)
        self.input_shape = (c, h, w)
        channels = _check_widths(channels, "channels", "small_cnn", allow_empty=False)
        if isinstance(convs_per_stage, bool) or not isinstance(convs_per_stage, int) or convs_per_stage < 1:
            raise ConfigError(f"model.params.convs_per_stage: expected an int >= 1, got {convs_per_stage!r}")
        dropout = _check_dropout(dropout, "small_cnn")
        layers: list[nn.Layer] = []
        in_c, size = c, min(h, w)
        for i, out_c in enumerate(channels):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2D(in_c, out_c, 3, padding=1, bias_attr=False), nn.BatchNorm2D(out_c), nn.ReLU()]
                in_c = out_c
            if i < len(channels) - 1 and size >= 4:
                layers.append(nn.MaxPool2D(2))
                size //= 2
        layers += [nn.AdaptiveAvgPool2D(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.feature_dim = in_c
        head = nn.Linear(in_c, self.num_classes)
        self.classifier = nn.Sequential(nn.Dropout(dropout), head) if dropout > 0 else head

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.body(x)
