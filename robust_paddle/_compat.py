"""Environment shims. Imported first by ``robust_paddle/__init__.py``.

1. zlib: Paddle 2.6.2 ships and exports its own zlib symbols. On Python builds where ``zlib`` is a
   shared extension module (this project's CI machines), gzip / PNG / ``np.savez_compressed`` calls made
   after ``import paddle`` bind to Paddle's copy and segfault. Loading the system libz with
   ``RTLD_GLOBAL`` *before* paddle is imported makes every later lookup resolve to the system library.
2. Paddle 2.6 vs 3.x differences (saved-model file names, PaddleSlim support) live here so the rest
   of the package never branches on versions.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)


def preload_system_zlib() -> str | None:
    """Load the system libz globally; returns the library name loaded, or None when none is found."""
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    return name


# Must run before paddle is imported anywhere in the process.
if "paddle" in sys.modules and os.environ.get("ROBUST_PADDLE_QUIET_COMPAT") is None:
    logger.warning(
        "paddle was imported before robust_paddle; import robust_paddle first so the system zlib is "
        "preloaded (otherwise gzip/PNG writes may crash)."
    )
ZLIB_LIBRARY = preload_system_zlib()

os.environ.setdefault("GLOG_minloglevel", "2")  # silence Paddle's C++ INFO logs (inference passes)
os.environ.setdefault("FLAGS_call_stack_level", "1")

import warnings  # noqa: E402

import paddle  # noqa: E402  (must follow the zlib preload)

from robust_paddle.errors import CompatibilityError  # noqa: E402

# Paddle 2.6 BatchNorm warns on every training forward that it tracks global statistics: noise, not news.
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")

PADDLE_VERSION: tuple[int, int] = tuple(int(p) for p in paddle.__version__.split(".")[:2])  # type: ignore[assignment]
IS_PADDLE3 = PADDLE_VERSION[0] >= 3 or paddle.__version__.startswith("0.0")  # 0.0.0 = develop build


def model_file(prefix: str) -> str:
    """Path of the program file ``paddle.jit.save(prefix)`` wrote: ``.pdmodel`` (2.x) or ``.json`` (3.x)."""
    for ext in (".pdmodel", ".json"):
        if os.path.exists(prefix + ext):
            return prefix + ext
    return prefix + (".json" if IS_PADDLE3 else ".pdmodel")


def check_program_file(path: str) -> None:
    """Parse a saved inference program in Python before Paddle's C++ loader sees it.

    Paddle 2.6's predictor dies with SIGSEGV (no exception) on a ``.pdmodel`` that is not a ProgramDesc, so
    a damaged file must be caught here: ``.pdmodel`` is parsed as the ``ProgramDesc`` protobuf and must hold
    a block with operators; ``.json`` (3.x) must be a JSON object.

    Raises:
        ValueError: the file is not a saved program (names the file).
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if path.endswith(".json"):
        import json

        try:
            ok = isinstance(json.loads(data), dict)
        except (UnicodeDecodeError, ValueError):
            ok = False
    else:
        from google.protobuf.message import DecodeError

        try:
            from paddle.base.proto import framework_pb2
        except ImportError:  # older layouts
            from paddle.fluid.proto import framework_pb2  # type: ignore[no-redef]
        program = framework_pb2.ProgramDesc()
        try:
            program.ParseFromString(data)
            ok = any(len(block.ops) for block in program.blocks)
        except (DecodeError, ValueError):
            ok = False
    if not ok:
        raise ValueError(f"{path} is not a saved Paddle inference program (damaged or not written by "
                         "paddle.jit.save)")


def params_file(prefix: str) -> str:
    return prefix + ".pdiparams"


def require_paddle2_for(stage: str) -> None:
    """Raise a clear error when a PaddleSlim stage that only works on Paddle 2.x runs on Paddle 3.x."""
    if IS_PADDLE3:
        raise CompatibilityError(
            f"compression stage '{stage}' needs PaddlePaddle 2.6 (PaddleSlim 2.6 {stage} fails on "
            f"Paddle {paddle.__version__}); install the pinned stack (paddlepaddle==2.6.2) or drop the stage"
        )


def cuda_available() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
