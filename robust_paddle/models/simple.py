"""Small models for quick experiments: an MLP for any input and a small CNN for 8x8 to 32x32 images."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import paddle
from paddle import nn

from robust_paddle.models.base import FeatureClassifier, check_image_shape, check_num_classes
from robust_paddle.registry import MODELS
from robust_paddle.schema import param

logger = logging.getLogger(__name__)


def dropout_param(default: float = 0.0, doc: str = "dropout probability") -> float:
    """A declared dropout probability in [0, 1)."""
    return param(default, min=0.0, max=1.0, max_open=True, doc=doc)


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

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``model.params`` of ``mlp`` (checked by the registry)."""

        hidden: list[int] = param((256, 128), min=1, doc="hidden-layer widths; [] gives softmax regression")
        dropout: float = dropout_param(doc="dropout probability after each hidden layer")

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model="mlp")
        self.input_shape = tuple(int(v) for v in input_shape)
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

    @dataclasses.dataclass(frozen=True)
    class Params:
        """``model.params`` of ``small_cnn`` (checked by the registry)."""

        channels: list[int] = param((32, 64, 128), min=1, min_items=1, doc="output channels of each stage")
        convs_per_stage: int = param(1, min=1, doc="conv-BN-ReLU blocks per stage")
        dropout: float = dropout_param(doc="dropout probability before the linear classifier")

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, channels: Sequence[int] = (32, 64, 128),
                 convs_per_stage: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model="small_cnn")
        c, h, w = check_image_shape(input_shape, model="small_cnn", min_size=4)
        self.input_shape = (c, h, w)
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
