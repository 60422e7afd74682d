"""ResNets for small images (CIFAR-style: 3x3 stem, no max-pool).

- ``resnet18_cifar`` / ``resnet34_cifar``: He et al., "Deep Residual Learning for Image Recognition",
  CVPR 2016, https://arxiv.org/abs/1512.03385, with the 3x3-stem CIFAR layout of the ImageNet-depth nets
  widely used in noisy-label papers (Co-teaching+, JoCoR, ELR).
- ``preact_resnet18``: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016,
  https://arxiv.org/abs/1603.05027, exactly as in DivideMix's ``PreResNet18`` (Li et al., ICLR 2020,
  https://arxiv.org/abs/2002.07394; github.com/LiJunnan1992/DivideMix, PreResNet.py), so DivideMix
  results can be reproduced. That network differs from the paper's in two details kept here: the stem is
  conv-BN-ReLU with no BN-ReLU after the last block, and every shortcut (identity or 1x1 projection)
  reads the pre-activated input ``relu(bn1(x))``.

Spatial sizes: stages run at strides 1, 2, 2, 2 and end with global average pooling, so any input of
at least 8x8 works (32x32 CIFAR, 28x28 MNIST, 8x8 digits). Control flow depends only on build-time
attributes, so the models export with ``paddle.jit.to_static``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import paddle
import paddle.nn.functional as F
from paddle import nn

from robust_paddle.models.base import FeatureClassifier, check_image_shape, check_num_classes
from robust_paddle.registry import MODELS
from robust_paddle.schema import param

logger = logging.getLogger(__name__)


def _conv3x3(in_c: int, out_c: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(in_c, out_c, 3, stride=stride, padding=1, bias_attr=False)


class BasicBlock(nn.Layer):
    """Post-activation block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; ``[N, in_c, H, W]`` ->
    ``[N, out_c, H/stride, W/stride]``."""

    def __init__(self, in_c: int, out_c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_c, out_c, stride)
        self.bn1 = nn.BatchNorm2D(out_c)
        self.conv2 = _conv3x3(out_c, out_c)
        self.bn2 = nn.BatchNorm2D(out_c)
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Sequential(nn.Conv2D(in_c, out_c, 1, stride=stride, bias_attr=False),
                                          nn.BatchNorm2D(out_c))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Layer):
    """Pre-activation block (arXiv 1603.05027, Fig. 4e) as in DivideMix: with ``pre = relu(bn1(x))``,
    ``conv2(relu(bn2(conv1(pre)))) + shortcut(pre)``; the shortcut is a 1x1 conv (no BN) when the shape
    changes, else the identity."""

    def __init__(self, in_c: int, out_c: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2D(in_c)
        self.conv1 = _conv3x3(in_c, out_c, stride)
        self.bn2 = nn.BatchNorm2D(out_c)
        self.conv2 = _conv3x3(out_c, out_c)
        if stride != 1 or in_c != out_c:
            self.shortcut = nn.Conv2D(in_c, out_c, 1, stride=stride, bias_attr=False)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + self.shortcut(pre)


@dataclasses.dataclass(frozen=True)
class ResNetParams:
    """``model.params`` of the CIFAR-style ResNets (checked by the registry)."""

    width: int = param(64, min=1, doc="channels of the first stage (64 in the paper; smaller for quick runs)")


class _CifarResNet(FeatureClassifier):
    """Stem ``conv3x3 -> BN -> ReLU``, four stages of widths ``w, 2w, 4w, 8w`` at strides 1, 2, 2, 2,
    global average pooling and a linear classifier. ``[N, C, H, W]`` -> features ``[N, 8w]``."""

    def __init__(self, block: type[nn.Layer], depths: Sequence[int], *, name: str,
                 num_classes: int, input_shape: Sequence[int], width: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes, model=name)
        c, h, w = check_image_shape(input_shape, model=name, min_size=8)
        self.input_shape = (c, h, w)
        self.stem = nn.Sequential(_conv3x3(c, width), nn.BatchNorm2D(width), nn.ReLU())
        stages, in_c = [], width
        for i, depth in enumerate(depths):
            out_c = width * 2**i
            blocks = []
            for j in range(depth):
                blocks.append(block(in_c, out_c, stride=2 if (i > 0 and j == 0) else 1))
                in_c = out_c
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.feature_dim = in_c
        self.classifier = nn.Linear(in_c, self.num_classes)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.flatten(self.pool(self.stages(self.stem(x))), start_axis=1)


@MODELS.register("resnet18_cifar")
class ResNet18Cifar(_CifarResNet):
    """ResNet-18 with a 3x3 stem and no max-pool (arXiv 1512.03385); ~11.2M parameters at width 64.

    Args:
        num_classes: number of logits.
        input_shape: ``(C, H, W)``, C in {1, 3}, H and W >= 8.
        width: channels of the first stage (64 in the paper; smaller for quick runs).
    """

    Params = ResNetParams

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, width: int = 64) -> None:
        super().__init__(BasicBlock, (2, 2, 2, 2), name="resnet18_cifar",
                         num_classes=num_classes, input_shape=input_shape, width=width)


@MODELS.register("resnet34_cifar")
class ResNet34Cifar(_CifarResNet):
    """ResNet-34 with a 3x3 stem and no max-pool (arXiv 1512.03385); ~21.3M parameters at width 64.

    Args:
        num_classes: number of logits.
        input_shape: ``(C, H, W)``, C in {1, 3}, H and W >= 8.
        width: channels of the first stage.
    """

    Params = ResNetParams

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, width: int = 64) -> None:
        super().__init__(BasicBlock, (3, 4, 6, 3), name="resnet34_cifar",
                         num_classes=num_classes, input_shape=input_shape, width=width)


@MODELS.register("preact_resnet18")
class PreActResNet18(_CifarResNet):
    """Pre-activation ResNet-18 (arXiv 1603.05027) as in DivideMix's ``PreResNet18`` (see the module
    docstring for its two differences from the paper); ~11.2M parameters at width 64.

    Args:
        num_classes: number of logits.
        input_shape: ``(C, H, W)``, C in {1, 3}, H and W >= 8.
        width: channels of the first stage.
    """

    Params = ResNetParams

    def __init__(self, num_classes: int, input_shape: Sequence[int], *, width: int = 64) -> None:
        super().__init__(PreActBlock, (2, 2, 2, 2), name="preact_resnet18",
                         num_classes=num_classes, input_shape=input_shape, width=width)
