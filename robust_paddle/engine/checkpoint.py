"""Checkpoints (``*.pdckpt``) that cannot carry code, and weights-only loading of outside weight files.

A checkpoint is one `safetensors <https://github.com/huggingface/safetensors>`_ file: every array and
Paddle tensor of the state is a named tensor, and the rest of the state (config, history, meta, scalars) is
JSON in the file's metadata (key ``robust_paddle``), with ``{"__tensor__": name}`` where a tensor was.
Reading it parses JSON and copies bytes; nothing is unpickled. The state is::

    {"format": 2, "epoch": completed epochs, "global_step": int,
     "networks": {name: state_dict}, "optimizer": ..., "scaler": ..., "scheduler": ...,
     "method": method extra state, "hooks": {hook name: state}, "history": [...],
     "config": resolved config dict, "meta": {num_classes, input_shape, class_names, mean, std, signature}}

Files are written to a temp file, then ``os.replace``-d (a crash mid-write leaves the previous file).
Checkpoints of format 1 (``paddle.save`` pickles) and ``.pdparams`` files are read through the allow-listed
unpickler of :mod:`robust_paddle.data.safe_pickle`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import struct
from typing import Any

import numpy as np

from robust_paddle.data import safe_pickle
from robust_paddle.errors import CheckpointError
from robust_paddle.ops import atomic_write

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
REQUIRED_KEYS = ("format", "epoch", "networks", "config", "meta")
METADATA_KEY = "robust_paddle"

__all__ = ["save_checkpoint", "encode_checkpoint", "write_checkpoint", "load_checkpoint", "load_weights",
           "check_signature", "check_state_keys", "FORMAT_VERSION"]


# ------------------------------------------------------------------------------------------ encoding
def _is_paddle_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("paddle") and hasattr(x, "numpy") and hasattr(x, "place")


def _encode(obj: Any, path: str, tensors: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``obj``; arrays and tensors go to ``tensors`` under a name derived from ``path``."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and not isinstance(obj, (np.generic,)):
        return obj
    if isinstance(obj, np.generic):
        return {"__scalar__": obj.dtype.str, "value": obj.item()}
    is_tensor = _is_paddle_tensor(obj)
    if is_tensor or isinstance(obj, np.ndarray):
        dtype = str(obj.dtype).replace("paddle.", "") if is_tensor else obj.dtype.str
        if is_tensor and dtype == "bfloat16":  # numpy has no bfloat16: stored as float32, cast back on load
            arr = obj.astype("float32").numpy()
        else:
            arr = obj.numpy() if is_tensor else obj
        if arr.dtype == object:
            raise TypeError(f"checkpoint entry {path!r}: object arrays cannot be stored")
        name = path or "tensor"
        while name in tensors:
            name += "#"
        tensors[name] = np.ascontiguousarray(arr)
        return {"__tensor__": name, "paddle": is_tensor, "dtype": dtype}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{path}/{k}" if path else k, tensors) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, f"{path}/key{i}", tensors), _encode(v, f"{path}/{k}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, (tuple, set, frozenset)):
        tag = "__tuple__" if isinstance(obj, tuple) else "__set__"
        return {tag: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, bytes):
        return {"__bytes__": base64.b64encode(obj).decode("ascii")}
    raise TypeError(f"checkpoint entry {path!r}: {type(obj).__name__} cannot be stored (arrays, tensors, "
                    "numbers, strings and containers only)")


def _decode(obj: Any, tensors: dict[str, np.ndarray], source: str) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, source) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        name = obj["__tensor__"]
        if name not in tensors:
            raise CheckpointError(f"checkpoint {source}: tensor {name!r} is named in the metadata but missing")
        arr = tensors[name]
        if not obj.get("paddle"):
            return arr
        import paddle

        t = paddle.to_tensor(arr)
        return t.astype("bfloat16") if obj.get("dtype") == "bfloat16" else t
    if "__scalar__" in obj:
        return np.array(obj["value"], dtype=np.dtype(obj["__scalar__"]))[()]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, source) for v in obj["__tuple__"])
    if "__set__" in obj:
        return set(_decode(v, tensors, source) for v in obj["__set__"])
    if "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    if "__dict__" in obj:
        return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in obj["__dict__"]}
    return {k: _decode(v, tensors, source) for k, v in obj.items()}


# ------------------------------------------------------------------------------------------ formats
def _is_safetensors(head: bytes) -> bool:
    """A safetensors file starts with a little-endian u64 header length, then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] < 100_000_000


def _read_head(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(16)


def _read_safetensors(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises SafetensorError / OSError on a bad header or truncated data
        raise CheckpointError(f"{path} cannot be read as safetensors ({type(e).__name__}: {e})") from None
    return tensors, meta


def _from_paddle_pickle(obj: Any) -> Any:
    """What ``paddle.load`` does after unpickling: ``(name, ndarray)`` tuples (pickled Tensors) become Tensors
    (or, in files without any, every ndarray does) and Paddle's split big arrays are joined again."""
    import paddle

    def is_varbase(x: Any) -> bool:
        return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], np.ndarray)

    def contains(x: Any) -> bool:
        if is_varbase(x):
            return True
        if isinstance(x, dict):
            return any(contains(v) for v in x.values())
        return isinstance(x, (list, tuple)) and any(contains(v) for v in x)

    def convert(x: Any, cond: Any) -> Any:
        if cond(x):
            return paddle.to_tensor(x[1] if is_varbase(x) else x)
        if isinstance(x, dict):
            return type(x)((k, convert(v, cond)) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return type(x)(convert(v, cond) for v in x)
        return x

    obj = _join_big_arrays(obj)
    return convert(obj, is_varbase if contains(obj) else (lambda x: isinstance(x, np.ndarray)))


def _join_big_arrays(obj: Any) -> Any:
    info = obj.get("UnpackBigParamInfor@@") if isinstance(obj, dict) else None
    if not isinstance(info, dict):
        return obj
    for key, value in info.items():
        obj[key] = np.concatenate([obj.pop(part) for part in value["slices"]]).reshape(value["OriginShape"])
    obj.pop("UnpackBigParamInfor@@")
    return obj


def _read_any(path: str) -> tuple[str, Any]:
    """``("safetensors", (tensors, metadata))`` or ``("pickle", object)``; nothing else is accepted."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    head = _read_head(path)
    if _is_safetensors(head):
        return "safetensors", _read_safetensors(path)
    if safe_pickle.is_pickle(head):
        return "pickle", safe_pickle.safe_load(path)
    raise CheckpointError(f"{path} cannot be read: it is neither a safetensors file nor a Paddle pickle "
                          "(.pdckpt, .pdparams)")


# ------------------------------------------------------------------------------------------ API
def save_checkpoint(state: dict[str, Any], path: str) -> str:
    """Write ``state`` to ``path`` atomically as safetensors + JSON metadata (see the module docstring)."""
    return write_checkpoint(encode_checkpoint(state), path)


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """The bytes :func:`save_checkpoint` writes for ``state`` (a copy: later changes to the weights or the
    state do not reach them).

    Raises:
        TypeError: an entry that cannot be stored (objects other than arrays, tensors, numbers, strings, containers).
    """
    from safetensors.numpy import save as st_save

    tensors: dict[str, np.ndarray] = {}
    skeleton = _encode({**state, "format": FORMAT_VERSION}, "", tensors)
    return st_save(tensors, metadata={METADATA_KEY: json.dumps(skeleton)})


def write_checkpoint(payload: bytes, path: str) -> str:
    """Write :func:`encode_checkpoint`'s ``payload`` to ``path`` atomically (its folder is created).

    Raises:
        OSError: naming ``path`` (the disk is full, the folder is not writable); ``path`` keeps its old content.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "wb") as fh:  # fsync-ed before the rename makes it visible
        fh.write(payload)
    return path


def copy_checkpoint(src: str, dst: str) -> str:
    """Make ``dst`` hold the checkpoint now in ``src`` without encoding it again (``best.pdckpt`` after
    ``latest.pdckpt`` in the same epoch): a hard link renamed over ``dst``, or an atomic copy where the file
    system has no hard links. ``src`` is later replaced, never rewritten in place (:func:`save_checkpoint`
    renames a new file over it), so the link keeps this epoch's bytes.

    Raises:
        OSError: ``src`` is missing or ``dst``'s folder is not writable (``dst`` keeps its old content).
    """
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(folder, f".{os.path.basename(dst)}.link-{os.getpid()}")
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not os.path.exists(src):
            raise
        with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return dst


def resolve_checkpoint(path: str) -> str:
    """A run folder means its ``checkpoints/latest.pdckpt`` (or ``latest.pdckpt`` inside it)."""
    if os.path.isdir(path):
        cand = os.path.join(path, "checkpoints", "latest.pdckpt")
        return cand if os.path.exists(cand) else os.path.join(path, "latest.pdckpt")
    return path


def load_checkpoint(path: str) -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint` (or a format-1 pickle, read weights-only).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a robust_paddle checkpoint (names what is missing), is unreadable,
            or is a pickle that references anything but arrays and containers.
    """
    path = resolve_checkpoint(path)
    kind, content = _read_any(path)
    if kind == "safetensors":
        tensors, meta = content
        if METADATA_KEY not in meta:
            raise CheckpointError(f"{path} is a safetensors file but not a robust_paddle checkpoint (no "
                                  f"'{METADATA_KEY}' metadata); plain weights go to model.pretrained")
        try:
            state = _decode(json.loads(meta[METADATA_KEY]), tensors, path)
        except (ValueError, RecursionError, TypeError, KeyError) as e:
            raise CheckpointError(f"checkpoint {path}: metadata cannot be read ({type(e).__name__}: {e})") from None
    else:
        state = content if not isinstance(content, dict) else _from_paddle_pickle(content)
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a robust_paddle checkpoint (missing: {', '.join(missing)})")
    if state["format"] not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: checkpoint format {state['format']} is not supported (readable: "
                              f"{', '.join(map(str, READABLE_FORMATS))})")
    return state


def _array(v: Any) -> np.ndarray | None:
    if isinstance(v, np.ndarray):
        return v
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], np.ndarray):
        return v[1]  # a Tensor pickled by paddle.save
    if _is_paddle_tensor(v):
        return v.numpy()
    return None


def load_weights(path: str, *, network: str | None = None) -> dict[str, np.ndarray]:
    """A state dict ``{parameter name: array}`` from a weights file, read without running code.

    Accepts a ``.safetensors`` file, a ``.pdparams`` (``paddle.save`` pickle or a pickled dict of numpy
    arrays, read weights-only) or a robust_paddle checkpoint (its network ``network``; default: the first).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, unsafe (a pickle referencing code), or no arrays in it; names the file.
    """
    kind, content = _read_any(path)
    if kind == "safetensors":
        tensors, meta = content
        if METADATA_KEY not in meta:
            return dict(tensors)
        nets = load_checkpoint(path)["networks"]
    else:
        obj = _join_big_arrays(content) if isinstance(content, dict) else content
        if isinstance(obj, dict) and all(k in obj for k in REQUIRED_KEYS):
            nets = obj["networks"]
        else:
            nets = None
            if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
                obj = obj["state_dict"]
    if nets is not None:
        if network is None:
            network = next(iter(nets))
        if network not in nets:
            raise CheckpointError(f"{path}: checkpoint has no network {network!r} (has: {', '.join(nets)})")
        obj = nets[network]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of parameter arrays, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        arr = _array(v)
        if arr is not None:
            out[str(k)] = arr
        elif not str(k).endswith("@@"):  # paddle's own bookkeeping keys (StructuredToParameterName@@)
            raise CheckpointError(f"{path}: entry {k!r} is a {type(v).__name__}, not an array")
    if not out:
        raise CheckpointError(f"{path}: no parameter arrays in the file")
    return out


# ------------------------------------------------------------------------------------------ matching
#: signature fields in the order mismatches are listed
SIGNATURE_FIELDS = ("model", "model_params", "method", "networks", "num_classes", "input_shape", "mean", "std",
                    "tokenizer")


def saved_signature(state: dict[str, Any]) -> dict[str, Any]:
    """The model signature a checkpoint records (``meta.signature``); for checkpoints written before it
    existed, rebuilt from their config, meta and network names (no normalisation or tokenizer then)."""
    meta = state.get("meta") or {}
    if isinstance(meta.get("signature"), dict):
        return meta["signature"]
    cfg = state.get("config") or {}
    model, method = cfg.get("model") or {}, cfg.get("method") or {}
    sig = {"model": model.get("name"), "model_params": model.get("params"), "method": method.get("name"),
           "networks": sorted(state.get("networks") or {}), "num_classes": meta.get("num_classes"),
           "input_shape": meta.get("input_shape")}
    return {k: v for k, v in sig.items() if v is not None}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b), rtol=1e-5, atol=1e-7))
        except (TypeError, ValueError):
            return False
    return a == b


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, float) for x in v):
        return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
    return json.dumps(v, sort_keys=True, default=str)


def check_signature(state: dict[str, Any], expected: dict[str, Any], *, source: str) -> None:
    """Stop when the checkpoint's model signature differs from the one the config builds.

    ``expected``: what the current config and data give (same fields as :data:`SIGNATURE_FIELDS`). A field
    the checkpoint does not record is not compared.

    Raises:
        CheckpointError: one line listing every mismatching field with both values.
    """
    saved = saved_signature(state)
    diffs = [f"{k}: checkpoint {_show(saved[k])}, config {_show(expected.get(k))}"
             for k in SIGNATURE_FIELDS if k in saved and not _same(saved[k], expected.get(k))]
    if diffs:
        raise CheckpointError(f"checkpoint {source} does not match the config -- {'; '.join(diffs)}; use the "
                              "config it was trained with (its run folder's config.yaml)")


def check_state_keys(expected: dict[str, Any], saved: dict[str, Any], *, what: str, source: str) -> None:
    """Every parameter/buffer of ``expected`` (a ``state_dict()``) must be in ``saved`` with the same shape,
    and nothing else (Paddle's ``set_state_dict`` would only warn and keep random weights).

    Raises:
        CheckpointError: names the missing, unexpected and mis-shaped keys (the first few of each).
    """
    def shape(v: Any) -> list[int]:
        return [int(d) for d in getattr(v, "shape", [])]

    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [f"{k} {shape(saved[k])} vs {shape(expected[k])}" for k in expected
              if k in saved and shape(saved[k]) != shape(expected[k])]
    parts = [f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
             for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes))
             if keys]
    if parts:
        raise CheckpointError(f"checkpoint {source}: {what} does not fit the model -- {'; '.join(parts)}")
