"""Training strategies, selected by name from the ``METHODS`` registry."""

from robust_paddle.methods import co_teaching, standard  # noqa: F401  (registers)
from robust_paddle.methods import dividemix, gmm_correction  # noqa: F401  (registers dividemix, gmm_correction)
from robust_paddle.methods.base import EnsembleNet, Method, MethodContext, build_method

__all__ = ["EnsembleNet", "Method", "MethodContext", "build_method"]
