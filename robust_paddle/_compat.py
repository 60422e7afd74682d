"""Environment shims. Imported first by ``robust_paddle/__init__.py``.

1. zlib: Paddle 2.6.2 ships and exports its own zlib symbols. On Python builds where ``zlib`` is a
   shared extension module (this project's CI machines), gzip / PNG / ``np.savez_compressed`` calls made
   after ``import paddle`` bind to Paddle's copy and segfault. Loading the system libz with
   ``RTLD_GLOBAL`` *before* paddle is imported makes every later lookup resolve to the system library.
2. Paddle 2.6 vs 3.x differences (saved-model file names, PaddleSlim support) live here so the rest
   of the package never branches on versions.
3. How DataLoader workers are started (``loader_workers``): Paddle forks them, which hangs on Paddle 3.3.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import Iterator

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

# Paddle 3.x warns on import that ccache is missing (it matters only for compiling custom C++ ops).
warnings.filterwarnings("ignore", message="No ccache found")
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


def jit_save_retrying(save, net):
    """``save(net)``, once more on an untouched deep copy of ``net`` if Paddle's ``jit.save`` raises ``KeyError``.

    Paddle 2.6's ``jit.save`` now and then misses a parameter it has just traced (``KeyError`` on a name such as
    ``'batch_norm2d_54.w_0'`` or ``'conv2d_1.w_0_deepcopy_5'``: seen in about one of several full test runs, after a
    PaddleSlim prune and in QAT's ``save_quantized_model``; never alone); a fresh conversion of a copy taken before
    the first try succeeds. ``to_static`` converts ``net`` in place, hence the copy. A known workaround, not a
    root-cause fix.

    Args:
        save: ``save(net) -> result``, the call that converts and writes ``net``.
        net: the layer; not used again after a failed first try.

    Returns:
        What ``save`` returns.

    Raises:
        KeyError: when the second try fails too; every other exception of ``save`` at once.
    """
    import copy

    spare = copy.deepcopy(net)
    try:
        return save(net)
    except KeyError as e:
        logger.warning("jit.save missed parameter %s; converting a fresh copy once more", e)
        return save(spare)


def params_file(prefix: str) -> str:
    return prefix + ".pdiparams"


def paddle2onnx_options(paddle2onnx_version: str) -> dict[str, str]:
    """Extra keyword arguments for ``paddle2onnx.export`` of this paddle2onnx.

    paddle2onnx 2.x optimises with polygraphy by default, which pip-installs packages at run time (it sets
    ``POLYGRAPHY_AUTOINSTALL_DEPS=1``; here it upgraded numpy to 2.x inside the environment). onnxoptimizer,
    pinned with the stack, does the same graph clean-up without installing anything. 1.x has no such option.
    """
    major = int(str(paddle2onnx_version).split(".")[0] or 0)
    return {"optimize_tool": "onnxoptimizer"} if major >= 2 else {}


def legacy_program_guard() -> contextlib.AbstractContextManager:
    """Context in which ``paddle.jit.to_static`` / ``jit.save`` build and write the pre-PIR program
    (``.pdmodel``), the format PaddleServing 0.9 (Paddle Inference 2.3 inside) reads.

    Paddle 3.x writes PIR programs (``.json``) by default; ``paddle.pir_utils.OldIrGuard`` switches back to
    the legacy program for the block. Paddle 2.x writes ``.pdmodel`` anyway: a no-op there.

    Paddle 3.3 no longer traces every layer into a legacy program by itself; inside the guard two gaps are
    bridged (:func:`_legacy_tracing_fixes`): (1) ``paddle[.tensor].matmul``, ``paddle.tanh``, ``paddle.sum`` and the
    other functions Paddle 3.3 generates as direct ``_C_ops`` calls reject legacy ``Variable`` inputs
    ("must be Value, but got Variable": ``nn.MultiHeadAttention``, attention pooling); while tracing they
    append the legacy op instead (``matmul_v2``, ``tanh``, ``reduce_sum``, ...; the same kernels the 2.x
    program uses). (2) Converting a buffer that has no storage yet (``nn.GRU`` / ``nn.LSTM``'s dropout state)
    reads ``Tensor.device``, which raises on such a tensor; it reads as ``None`` instead.
    """
    if IS_PADDLE3:
        return _legacy_tracing_fixes()
    return contextlib.nullcontext()


def _legacy_unary(op: str):
    def fn(x, name=None):
        from paddle.base.layer_helper import LayerHelper

        helper = LayerHelper(op)
        out = helper.create_variable_for_type_inference(dtype=x.dtype)
        helper.append_op(type=op, inputs={"X": [x]}, outputs={"Out": [out]})
        return out

    return fn


def _legacy_matmul(x, y, transpose_x=False, transpose_y=False, name=None):
    from paddle.base.layer_helper import LayerHelper

    helper = LayerHelper("matmul_v2")
    out = helper.create_variable_for_type_inference(dtype=x.dtype)
    helper.append_op(type="matmul_v2", inputs={"X": [x], "Y": [y]}, outputs={"Out": [out]},
                     attrs={"trans_x": bool(transpose_x), "trans_y": bool(transpose_y)})
    return out


def _legacy_sum(x, axis=None, dtype=None, keepdim=False, name=None):
    from paddle.base.layer_helper import LayerHelper

    if dtype is not None:
        x = paddle.cast(x, dtype)
    axes = [] if axis is None else ([int(axis)] if isinstance(axis, int) else [int(a) for a in axis])
    helper = LayerHelper("reduce_sum")
    out = helper.create_variable_for_type_inference(dtype=x.dtype)
    helper.append_op(type="reduce_sum", inputs={"X": [x]}, outputs={"Out": [out]},
                     attrs={"dim": axes or [0], "keep_dim": bool(keepdim), "reduce_all": not axes})
    return out


# paddle.<name>, paddle.tensor.<name> / paddle.nn.functional.<name> that Paddle 3.3 binds to a bare _C_ops call, and their legacy op
_LEGACY_FUNCS = {"matmul": _legacy_matmul, "sum": _legacy_sum,
                 **{n: _legacy_unary(n) for n in ("tanh", "sigmoid", "exp", "sqrt", "rsqrt", "abs", "log")}}
_LEGACY_NN_FUNCS = ("tanh", "sigmoid")


@contextlib.contextmanager
def _legacy_tracing_fixes():
    from paddle.base import core
    from paddle.base.framework import Variable

    def dispatch(original, legacy):
        def fn(*args, **kwargs):
            if any(isinstance(a, Variable) for a in (*args, *kwargs.values())):
                return legacy(*args, **kwargs)
            return original(*args, **kwargs)

        return fn

    tensor_module = sys.modules["paddle.tensor"]  # (``paddle.tensor`` itself is a function on Paddle 3.3)
    saved = [(owner, n, getattr(owner, n)) for owner in (paddle, tensor_module) for n in _LEGACY_FUNCS
             if hasattr(owner, n)]
    saved += [(paddle.nn.functional, n, getattr(paddle.nn.functional, n)) for n in _LEGACY_NN_FUNCS]
    device = core.eager.Tensor.__dict__.get("device")
    try:
        for owner, n, original in saved:
            setattr(owner, n, dispatch(original, _LEGACY_FUNCS[n]))
        if isinstance(device, property):
            def storage_device(t):
                try:
                    return device.fget(t)
                except ValueError:  # "Unknown place type": a tensor without storage
                    return None

            core.eager.Tensor.device = property(storage_device)
        with paddle.pir_utils.OldIrGuard():
            yield
    finally:
        for owner, n, original in saved:
            setattr(owner, n, original)
        if isinstance(device, property):
            core.eager.Tensor.device = device


def check_paddle2onnx_reads(model_path: str, paddle2onnx_version: str) -> None:
    """Raise CompatibilityError when paddle2onnx ``paddle2onnx_version`` cannot read ``model_path``.

    paddle2onnx 1.x reads only ``.pdmodel`` programs (Paddle 2.x); 2.x reads PIR ``.json`` programs
    (Paddle 3.x) as well.
    """
    major = int(str(paddle2onnx_version).split(".")[0] or 0)
    if model_path.endswith(".json") and major < 2:
        raise CompatibilityError(
            f"ONNX export: paddle2onnx {paddle2onnx_version} reads only .pdmodel programs; Paddle "
            f"{paddle.__version__} wrote {os.path.basename(model_path)} (PIR). Install paddle2onnx 2.x "
            "(PADDLE_VERSION=3 scripts/install.sh pins it: requirements/paddle3.txt)")


def patch_paddleslim(slim: object) -> None:
    """Make PaddleSlim 2.6's dygraph tracing (``paddleslim.core.dygraph._dy2prog``, used by the filter
    pruners and ``paddleslim.analysis.flops``) work on Paddle 3.x and never leak static mode; idempotent.

    PaddleSlim 2.6.0 (its latest release) traces a layer into a legacy static program with
    ``paddle.base.dygraph.base._to_static_mode_guard_``, which Paddle 3 renamed ``to_static_mode_guard``,
    and walks the program's ops and variables the pre-PIR way. On Paddle 3 the shim restores the old name
    and runs the tracing inside :func:`legacy_program_guard` (so the traced program is a legacy one). On
    every version it leaves static mode again when tracing fails (PaddleSlim's own code does not, which
    leaves every later dygraph call in the process in static mode).
    """
    base = paddle.base.dygraph.base
    if IS_PADDLE3 and not hasattr(base, "_to_static_mode_guard_"):
        base._to_static_mode_guard_ = base.to_static_mode_guard
    import paddleslim.core.dygraph as sd

    original = sd._dy2prog
    if getattr(original, "_robust_paddle_shim", False):
        return

    def _dy2prog(layer, inputs, dtypes=None):
        try:
            with legacy_program_guard():
                return original(layer, inputs, dtypes)
        finally:
            if not paddle.in_dynamic_mode():
                paddle.disable_static()

    _dy2prog._robust_paddle_shim = True  # type: ignore[attr-defined]
    sd._dy2prog = _dy2prog


def native_optimizer(name: str) -> type | None:
    """``paddle.optimizer.<name>`` where this Paddle ships it, else None.

    Paddle 3.x has ``NAdam`` and ``RAdam``; Paddle 2.6.2 has neither, so ``robust_paddle.optim.adaptive``
    provides hand-written ones there (they rely on 2.6's optimizer internals, which Paddle 3 changed).
    """
    if not IS_PADDLE3:
        return None
    return getattr(paddle.optimizer, name, None)


def cuda_available() -> bool:
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


# ------------------------------------------------------------------------------------- loader workers
#: How ``paddle.io.DataLoader`` worker processes are started (see :func:`loader_workers`).
LOADER_START_METHOD = "forkserver"
_start_method_lock = threading.Lock()


@contextlib.contextmanager
def loader_workers() -> Iterator[None]:
    """Inside this block, ``paddle.io.DataLoader`` starts its worker processes with ``forkserver``, not fork.

    Paddle's DataLoader (2.6 and 3.x) has no ``multiprocessing_context`` argument: its workers are
    ``multiprocessing.Process`` of the default context, i.e. forked from the training process on Linux. A
    fork copies every lock other threads hold at that moment, and nothing releases them in the child. On
    Paddle 3.3 this hangs workers for good: its host-memory statistics (``paddle::memory::Stat`` over
    ``phi::ThreadDataRegistry``) take one process-wide reader-writer lock whenever a thread allocates past its
    peak, starts or ends; forked while another thread (a loader's reader thread, an iterator's thread that is
    just ending) holds it, the worker's queue-feeder thread blocks on it at its first tensor -- holding the GIL,
    so the worker's main thread then waits for the GIL in whatever call released it last (a libjpeg decode,
    an OpenCV call). OpenCV's and OpenMP's thread pools can do the same on any Paddle. ``forkserver``
    workers are forked from a single-threaded server process (started once, ``robust_paddle.data`` preloaded
    so each worker starts fast) that never ran a Paddle op or held those locks.

    Consequences: the dataset is pickled to each worker when an epoch's iterator starts (whole-file memory
    maps travel as their file name, see ``data.datasets``), and a script using the Python API with
    ``num_workers > 0`` needs the usual ``if __name__ == "__main__":`` guard (the workers import the main
    module, as with every non-fork start method). The CLI has it.
    """
    import multiprocessing

    with _start_method_lock:
        previous = multiprocessing.get_start_method(allow_none=True)
        if previous != LOADER_START_METHOD:
            multiprocessing.set_forkserver_preload(["robust_paddle.data"])
            multiprocessing.set_start_method(LOADER_START_METHOD, force=True)
        try:
            yield
        finally:
            if previous != LOADER_START_METHOD:
                multiprocessing.set_start_method(previous, force=True)
