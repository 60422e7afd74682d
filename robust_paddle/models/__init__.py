"""Classification models with a feature / classifier split.

Registered in ``MODELS``: ``mlp``, ``small_cnn``, ``resnet18_cifar``, ``resnet34_cifar``,
``preact_resnet18``; text models over token ids ``textcnn``, ``bigru_attention``,
``bilstm_attention``, ``transformer``, and ``ernie`` (PaddleNLP ERNIE from a local model directory). :func:`build_model` also accepts ``paddle.vision.models`` names and a user factory
``"package.module:function"``.
"""

from robust_paddle.models.base import FeatureClassifier
from robust_paddle.models.build import build_model, has_feature_split
from robust_paddle.models.ernie import ErnieClassifier
from robust_paddle.models.resnet import PreActResNet18, ResNet18Cifar, ResNet34Cifar
from robust_paddle.models.simple import MLP, SmallCNN
from robust_paddle.models.text import TEXT_MODELS, TextClassifier, TextCNN, TransformerText
from robust_paddle.models.vision import VISION_FACTORIES, VisionClassifier
from robust_paddle.registry import MODELS

__all__ = [
    "ErnieClassifier",
    "MLP",
    "MODELS",
    "VISION_FACTORIES",
    "FeatureClassifier",
    "PreActResNet18",
    "ResNet18Cifar",
    "ResNet34Cifar",
    "SmallCNN",
    "TEXT_MODELS",
    "TextCNN",
    "TextClassifier",
    "TransformerText",
    "VisionClassifier",
    "build_model",
    "has_feature_split",
]
