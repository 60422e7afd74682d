"""PaddleSlim access, version checks, model size counters and the Paddle Inference predictor of compressed models.

PaddleSlim is optional (``pip install robust_paddle[slim]``) and imported only here, on first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from types import ModuleType

import numpy as np
import paddle

from robust_paddle import _compat
from robust_paddle.errors import MissingDependencyError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install robust_paddle[slim]"


def import_paddleslim(stage: str) -> ModuleType:
    """``import paddleslim`` for ``stage``, or an ImportError that says what to install."""
    try:
        import paddleslim
    except ImportError as e:
        raise MissingDependencyError(f"compression stage '{stage}' needs PaddleSlim, which is not installed: {INSTALL_HINT} "
                          f"(paddleslim==2.6.0 with paddlepaddle 2.6); import failed with: {e}") from e
    _compat.patch_paddleslim(paddleslim)
    return paddleslim


@contextlib.contextmanager
def quiet_paddleslim(level: int = logging.WARNING) -> Iterator[None]:
    """Raise PaddleSlim's loggers (INFO by default: one line per pruned variable and trial) to ``level`` inside
    the block, unless ``robust_paddle.compress`` itself logs at DEBUG; restores their levels afterwards."""
    if logger.isEnabledFor(logging.DEBUG):
        yield
        return
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("paddleslim")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, level))
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def count_params(net: paddle.nn.Layer) -> int:
    """Trainable parameters (BatchNorm running statistics excluded)."""
    return int(sum(int(np.prod(p.shape)) for p in net.parameters() if not p.stop_gradient))


def count_flops(net: paddle.nn.Layer, input_shape: Sequence[int]) -> int:
    """Multiply-accumulate FLOPs of one sample (``paddleslim.analysis.flops``, convs and fcs)."""
    from paddleslim.analysis import flops

    was_training = net.training
    net.eval()
    try:
        return int(flops(net, [1, *[int(s) for s in input_shape]]))
    finally:
        if was_training:
            net.train()


def file_sizes(prefix: str) -> dict[str, int]:
    """Bytes of the weights file (``.pdiparams``) and the program file of a saved inference model."""
    return {"params_bytes": os.path.getsize(_compat.params_file(prefix)),
            "program_bytes": os.path.getsize(_compat.model_file(prefix))}


def mkldnn_available() -> bool:
    return bool(paddle.base.core.is_compiled_with_mkldnn())

