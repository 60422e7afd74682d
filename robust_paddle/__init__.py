"""robust_paddle: PaddlePaddle-native training on noisy labels, from robust training to deployment."""

from robust_paddle import _compat  # noqa: F401  (must be first: preloads zlib before paddle)

__version__ = "0.1.0"
__all__ = ["__version__"]
