"""robust_paddle: PaddlePaddle-native training on noisy labels, from robust training to deployment.

The public API is imported on first use (``import robust_paddle`` only preloads zlib and Paddle):

* :func:`train`, :func:`evaluate` -- run a config like ``robust-paddle train`` / ``eval``;
* :func:`find_label_issues`, :func:`estimate_noise_matrix` -- label audit from arrays, no training;
* :func:`load_predictor` -- an exported model on Paddle Inference;
* :func:`list_methods` -- the training methods with their parameters.
"""

from typing import Any

from robust_paddle import _compat  # noqa: F401  (must be first: preloads zlib before paddle)

__version__ = "0.1.0"
_API = ("train", "evaluate", "find_label_issues", "estimate_noise_matrix", "load_predictor", "list_methods")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from robust_paddle import api

        return getattr(api, name)
    raise AttributeError(f"module 'robust_paddle' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
