"""``paddle.vision.models`` networks with the feature / classifier split.

The network is built by its public factory with ``num_classes`` and ``pretrained=False``; its last
``nn.Linear`` (the classification layer: ``fc``, ``classifier.6``, ``out`` ... depending on the family)
is moved out as ``classifier`` and replaced by ``nn.Identity``, so ``forward_features`` returns the
input of that layer and ``forward`` computes exactly what the original network computes.

Not offered: ``squeezenet*`` (its classifier is a convolution) and ``googlenet`` (returns auxiliary
heads as a tuple).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import paddle
import paddle.vision.models as pvm
from paddle import nn

from robust_paddle.errors import ConfigError
from robust_paddle.models.base import FeatureClassifier, check_image_shape, check_num_classes

logger = logging.getLogger(__name__)

# Explicit table of public factory functions (selection by name, never getattr on the module).
VISION_FACTORIES: dict[str, Callable[..., nn.Layer]] = {
    "resnet18": pvm.resnet18,
    "resnet34": pvm.resnet34,
    "resnet50": pvm.resnet50,
    "resnet101": pvm.resnet101,
    "resnet152": pvm.resnet152,
    "resnext50_32x4d": pvm.resnext50_32x4d,
    "resnext50_64x4d": pvm.resnext50_64x4d,
    "resnext101_32x4d": pvm.resnext101_32x4d,
    "resnext101_64x4d": pvm.resnext101_64x4d,
    "resnext152_32x4d": pvm.resnext152_32x4d,
    "resnext152_64x4d": pvm.resnext152_64x4d,
    "wide_resnet50_2": pvm.wide_resnet50_2,
    "wide_resnet101_2": pvm.wide_resnet101_2,
    "vgg11": pvm.vgg11,
    "vgg13": pvm.vgg13,
    "vgg16": pvm.vgg16,
    "vgg19": pvm.vgg19,
    "mobilenet_v1": pvm.mobilenet_v1,
    "mobilenet_v2": pvm.mobilenet_v2,
    "mobilenet_v3_small": pvm.mobilenet_v3_small,
    "mobilenet_v3_large": pvm.mobilenet_v3_large,
    "densenet121": pvm.densenet121,
    "densenet161": pvm.densenet161,
    "densenet169": pvm.densenet169,
    "densenet201": pvm.densenet201,
    "densenet264": pvm.densenet264,
    "alexnet": pvm.alexnet,
    "inception_v3": pvm.inception_v3,
    "shufflenet_v2_x0_25": pvm.shufflenet_v2_x0_25,
    "shufflenet_v2_x0_33": pvm.shufflenet_v2_x0_33,
    "shufflenet_v2_x0_5": pvm.shufflenet_v2_x0_5,
    "shufflenet_v2_x1_0": pvm.shufflenet_v2_x1_0,
    "shufflenet_v2_x1_5": pvm.shufflenet_v2_x1_5,
    "shufflenet_v2_x2_0": pvm.shufflenet_v2_x2_0,
    "shufflenet_v2_swish": pvm.shufflenet_v2_swish,
}


def _detach_last_linear(net: nn.Layer) -> tuple[nn.Linear, str]:
    """Replace the last registered ``nn.Linear`` of ``net`` by ``nn.Identity``; return it and its path."""
    last: tuple[str, nn.Linear] | None = None
    for path, layer in net.named_sublayers():
        if isinstance(layer, nn.Linear):
            last = (path, layer)
    if last is None:
        raise ConfigError(f"{type(net).__name__} has no nn.Linear classification layer")
    path, linear = last
    parent_path, _, leaf = path.rpartition(".")
    parent = dict(net.named_sublayers())[parent_path] if parent_path else net
    setattr(parent, leaf, nn.Identity())  # same key: a Sequential parent keeps its execution order
    return linear, path


class VisionClassifier(FeatureClassifier):
    """A ``paddle.vision.models`` network split into ``backbone`` (features) and ``classifier``.

    Input ``[N, 3, H, W]``, features ``[N, feature_dim]`` (the classification layer's input width),
    logits ``[N, num_classes]``.

    Args:
        name: key of :data:`VISION_FACTORIES`.
        num_classes: number of logits.
        input_shape: ``(3, H, W)``; checked with one forward pass at build time.
        **params: passed to the factory (e.g. ``scale`` for MobileNets, ``batch_norm`` for VGG).
    """

    def __init__(self, name: str, *, num_classes: int, input_shape: Sequence[int], **params: Any) -> None:
        super().__init__()
        if name not in VISION_FACTORIES:
            raise ConfigError(f"unknown paddle.vision model {name!r}; choose one of: {', '.join(VISION_FACTORIES)}")
        self.num_classes = check_num_classes(num_classes, model=name)
        self.input_shape = check_image_shape(input_shape, model=name, channels=(3,))
        for key in ("pretrained", "num_classes"):
            if key in params:
                raise ConfigError(f"model.params.{key}: not accepted for paddle.vision model '{name}' "
                                 "(num_classes comes from the dataset; for ImageNet weights set model.pretrained "
                                 "to a .pdparams file, or model.download: true)")
        try:
            net = VISION_FACTORIES[name](pretrained=False, num_classes=self.num_classes, **params)
        except TypeError as e:
            raise ConfigError(f"model.params: {e} (paddle.vision model '{name}')") from None
        self.classifier, self.classifier_source = _detach_last_linear(net)  # source: the zoo files' key
        self.backbone = net
        self.feature_dim = int(self.classifier.weight.shape[0])
        self._check_input(name)

    def _check_input(self, name: str) -> None:
        was_training = self.training
        self.eval()
        try:
            with paddle.no_grad():
                feats = self.forward_features(paddle.zeros([1, *self.input_shape]))
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"model '{name}' cannot take input_shape {self.input_shape} "
                             f"(see data.image_size): {str(e).splitlines()[0]}") from None
        finally:
            if was_training:
                self.train()
        if list(feats.shape) != [1, self.feature_dim]:
            raise ConfigError(f"model '{name}': features have shape {feats.shape}, expected [1, {self.feature_dim}]")

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.flatten(self.backbone(x), start_axis=1)
