"""Weights-only unpickling: pickles from outside (``.pdparams``, old ``.pdckpt``, caches, dataset archives)
are read with an allow-list, so loading one never runs code.

``pickle.load`` calls whatever callable a file names; a crafted file runs ``os.system`` that way. The
:class:`RestrictedUnpickler` resolves only the globals that rebuild numpy arrays and plain containers (plus,
per call, a few named data-only classes); any other global is refused with one line naming the file and the
global. Written here instead of taken from a library because PaddlePaddle has no weights-only loader
(``paddle.load`` is plain ``pickle.load``) and torch's ``weights_only`` unpickler is torch-specific.

What ``paddle.save`` writes is covered: a Tensor pickles as ``tuple((name, ndarray))`` and a LoDTensor as
``eval('data', {'data': ndarray})`` -- that one ``eval`` is replaced by a function accepting exactly that
call and nothing else.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any

import numpy as np

from robust_paddle.errors import CheckpointError

__all__ = ["RestrictedUnpickler", "safe_load", "safe_loads", "is_pickle"]


def _paddle_lodtensor_eval(expr: Any, scope: Any = None, *_: Any) -> np.ndarray:
    """Stands in for ``builtins.eval`` in Paddle pickles: only ``eval('data', {'data': ndarray})``."""
    if expr == "data" and isinstance(scope, dict) and set(scope) == {"data"} and isinstance(scope["data"], np.ndarray):
        return scope["data"]
    raise pickle.UnpicklingError("builtins.eval with arguments other than Paddle's LoDTensor form")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    from numpy.core import multiarray, numeric

    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):  # numpy 2 pickles name numpy._core
        out[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        out[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        out[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return out


ALLOWED: dict[tuple[str, str], Any] = {
    ("builtins", "tuple"): tuple, ("builtins", "list"): list, ("builtins", "dict"): dict,
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex, ("builtins", "eval"): _paddle_lodtensor_eval,
    ("__builtin__", "eval"): _paddle_lodtensor_eval,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): __import__("codecs").encode,  # protocol-2 pickles spell bytes this way
    **_numpy_globals(),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED` globals and ``extra`` (``{(module, name): obj}``)."""

    def __init__(self, fh: Any, *, source: str, extra: dict[tuple[str, str], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(fh, **kwargs)
        self.source = source
        self.extra = extra or {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in ALLOWED:
            return ALLOWED[key]
        if key in self.extra:
            return self.extra[key]
        raise CheckpointError(f"{self.source}: refused to load: the file references {module}.{name}; only "
                              "arrays, tensors and plain containers are read from pickles (weights-only "
                              "loading: a pickle can run code). Use a file you trust, or a .safetensors file")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError(f"{self.source}: refused to load: the pickle uses persistent ids (a torch-style "
                              "archive?); only plain pickles of arrays are read")


def is_pickle(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts like a pickle (protocol 2+ or protocol 0/1 dict)."""
    return head[:1] == b"\x80" or head[:1] in (b"}", b"(", b"]")


def safe_loads(data: bytes, *, source: str, extra: dict[tuple[str, str], Any] | None = None,
               encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Args:
        data: pickle bytes.
        source: what to call the data in errors (a path, ``archive.tar.gz:member``).
        extra: further allowed globals ``{(module, name): object}`` (data-only classes).
        encoding: as :class:`pickle.Unpickler` (``"bytes"`` for Python 2 pickles such as CIFAR).

    Raises:
        CheckpointError: a refused global, or data that is not a readable pickle (names ``source``).
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), source=source, extra=extra, encoding=encoding).load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{source}: cannot be read (nested too deeply)") from None
    except Exception as e:  # corrupt or truncated: pickle raises assorted types
        raise CheckpointError(f"{source}: cannot be read as a pickle ({type(e).__name__}: {e})") from None


def safe_load(path: str, *, extra: dict[tuple[str, str], Any] | None = None, encoding: str = "ASCII") -> Any:
    """:func:`safe_loads` on the file ``path`` (errors name the path)."""
    with open(path, "rb") as fh:
        data = fh.read()
    return safe_loads(data, source=path, extra=extra, encoding=encoding)
