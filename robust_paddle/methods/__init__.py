"""Training strategies, selected by name from the ``METHODS`` registry."""

from robust_paddle.methods import co_teaching, dividemix, gmm_correction, standard  # noqa: F401  (registers)
from robust_paddle.methods.base import EnsembleNet, Method, MethodContext, build_method

__all__ = ["EnsembleNet", "Method", "MethodContext", "build_method"]
