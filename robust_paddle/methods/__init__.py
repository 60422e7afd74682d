"""Training strategies, selected by name from the ``METHODS`` registry."""

from robust_paddle.methods import (  # noqa: F401  (registers)
    co_teaching,
    dividemix,
    elr,
    forward_correction,
    gmm_correction,
    promix,
    sop,
    standard,
)
from robust_paddle.methods.base import EnsembleNet, Method, MethodContext, build_method

__all__ = ["EnsembleNet", "Method", "MethodContext", "build_method"]
