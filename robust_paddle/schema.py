"""Declared, typed parameters: frozen dataclasses whose fields carry ranges and choices, built from plain
mappings with errors that name the key.

``param(default, choices=..., min=..., max=...)`` declares one field; ``build(cls, data, prefix)`` checks a
mapping against the dataclass ``cls`` (unknown keys, types, ranges) and returns the frozen instance. The
run configuration (``config.py``), the compression stages (``compress/spec.py``) and the registered
methods', losses' and models' ``Params`` use it, so every bad value raises the same
:class:`~robust_paddle.errors.ConfigError`: ``method.params.warmup: -1 is out of range; must be >= 0``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import types
import typing
from dataclasses import field
from typing import Any, Union

from robust_paddle.errors import ConfigError

__all__ = ["param", "build", "convert", "check_range", "type_name"]


def param(default: Any = dataclasses.MISSING, *, choices: tuple | None = None, min: float | None = None,
          max: float | None = None, min_open: bool = False, max_open: bool = False, min_items: int | None = None,
          factory: Any = None, doc: str = "") -> Any:
    """A dataclass field with its allowed values (``choices``, ``min``/``max``, ``min_open``: ``> min``,
    ``max_open``: ``< max``; for a list they bound every item, and ``min_items`` its length) and a one-line
    ``doc`` (shown by ``robust-paddle list``)."""
    meta = {"choices": choices, "min": min, "max": max, "min_open": min_open, "max_open": max_open,
            "min_items": min_items, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against type ``tp``; returns the value (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) == 1:  # Optional[X]: report X's own error
            return convert(value, args[0], key)
        errors = []
        for arg in args:
            try:
                return convert(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{key}: expected {type_name(tp)}, got {value!r} ({type(value).__name__})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return build(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if origin is list:
        if isinstance(value, tuple):  # a Python caller's tuple; YAML gives lists
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list ({type_name(tp)}), got {value!r} ({type(value).__name__})")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float:  # numbers.Real: NumPy scalars from a Python caller too
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{key}: expected float, got {value!r} ({type(value).__name__})")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not allowed; expected a finite number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{key}: expected int, got {value!r} ({type(value).__name__})")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {value!r} ({type(value).__name__})")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r} ({type(value).__name__})")
        return value
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r} ({type(value).__name__})")
        return copy.deepcopy(value)
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - schema bug


def check_range(value: Any, meta: Any, key: str) -> None:
    """``value`` against a field's ``choices``, ``min``/``max`` (every item of a list) and ``min_items``."""
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of: {', '.join(map(str, choices))}")
    if isinstance(value, list):
        if meta.get("min_items") is not None and len(value) < meta["min_items"]:
            raise ConfigError(f"{key}: {value!r} is too short; needs at least {meta['min_items']} item(s)")
        for i, item in enumerate(value):
            check_range(item, {k: v for k, v in meta.items() if k != "choices"}, f"{key}[{i}]")
        return
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo_op, hi_op = (">" if meta.get("min_open") else ">="), ("<" if meta.get("max_open") else "<=")
        if lo is not None and (value < lo or (meta.get("min_open") and value == lo)):
            raise ConfigError(f"{key}: {value!r} is out of range; must be {lo_op} {lo}"
                              + (f" and {hi_op} {hi}" if hi is not None else ""))
        if hi is not None and (value > hi or (meta.get("max_open") and value == hi)):
            raise ConfigError(f"{key}: {value!r} is out of range; must be {hi_op} {hi}"
                              + (f" and {lo_op} {lo}" if lo is not None else ""))


def build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key '{where}{unknown[0]}'; allowed in {prefix or 'the top level'}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        value = convert(value, hints[name], key)
        check_range(value, fields[name].metadata, key)
        kwargs[name] = value
    return cls(**kwargs)
