"""Atomic single-file checkpoints (``*.pdckpt``): written to a temp file, then ``os.replace``-d.

A checkpoint is one ``paddle.save`` dict::

    {"format": 1, "epoch": completed epochs, "global_step": int,
     "networks": {name: state_dict}, "optimizer": ..., "scaler": ..., "scheduler": ...,
     "method": method extra state, "hooks": {hook name: state}, "history": [...],
     "config": resolved config dict, "meta": {num_classes, input_shape, class_names, mean, std}}
"""

from __future__ import annotations

import logging
import os
from typing import Any

import paddle

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "epoch", "networks", "config", "meta")


def save_checkpoint(state: dict[str, Any], path: str) -> str:
    """Write ``state`` to ``path`` atomically: a crash mid-write leaves the previous file intact."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        paddle.save({"format": FORMAT_VERSION, **state}, tmp)
        with open(tmp, "rb") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a robust_paddle checkpoint (names what is missing).
    """
    if os.path.isdir(path):
        cand = os.path.join(path, "checkpoints", "latest.pdckpt")
        path = cand if os.path.exists(cand) else os.path.join(path, "latest.pdckpt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = paddle.load(path)
    except Exception as e:  # paddle raises assorted errors on foreign/corrupt files
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise ValueError(f"{path} is not a robust_paddle checkpoint (missing: {', '.join(missing)})")
    if state["format"] != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state['format']} is not supported (expected {FORMAT_VERSION})")
    return state
