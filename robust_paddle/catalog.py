"""What can be named in a config: every registered method, loss, model, optimizer and scheduler with its
parameters, defaults and the paper it implements (``robust-paddle list KIND``, ``robust_paddle.list_methods``).

A builder that declares a frozen ``Params`` dataclass (``schema.param`` fields) is described from it: type,
default, allowed values and the one-line doc of each field. Other builders are described from their
signature (names, defaults, annotations).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing
from typing import Any

from robust_paddle.errors import ConfigError
from robust_paddle.schema import type_name

#: kind -> (module that registers every entry, registry name in robust_paddle.registry, positional args)
KINDS = {"methods": ("robust_paddle.methods", "METHODS", 1), "losses": ("robust_paddle.losses", "LOSSES", 0),
         "models": ("robust_paddle.models", "MODELS", 0), "optimizers": ("robust_paddle.optim", "OPTIMIZERS", 0),
         "schedulers": ("robust_paddle.optim", "SCHEDULERS", 0)}
#: arguments the toolkit fills itself (not config parameters)
INTERNAL = {"ctx", "num_classes", "input_shape", "parameters", "learning_rate", "base_lr", "epochs",
            "steps_per_epoch", "weight_decay", "grad_clip", "optimizer", "common"}
_ARXIV = re.compile(r"arXiv[: ]*(\d{4}\.\d{4,5})|arxiv\.org/abs/(\d{4}\.\d{4,5})", re.I)


def _paper(doc: str) -> str:
    ids = []
    for m in _ARXIV.finditer(doc):
        i = m.group(1) or m.group(2)
        if i not in ids:
            ids.append(i)
    return ", ".join(f"arXiv:{i}" for i in ids)


def _fmt(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)  # as it is written in YAML
    return value if isinstance(value, (int, float, str, bool, type(None), list, dict, tuple)) else repr(value)


def params_of(builder: Any, *, positional: int = 0) -> list[dict[str, Any]]:
    """``[{"name", "type", "default", "doc", "choices"?, "min"?, "max"?}]`` of a registered builder."""
    spec = getattr(builder, "Params", None)
    if spec is not None and dataclasses.is_dataclass(spec):
        hints = typing.get_type_hints(spec)
        out = []
        for f in dataclasses.fields(spec):
            meta = dict(f.metadata)
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            row = {"name": f.name, "type": type_name(hints[f.name]), "default": _fmt(default),
                   "doc": meta.get("doc", "")}
            for k in ("choices", "min", "max"):
                if meta.get(k) is not None:
                    row[k] = list(meta[k]) if k == "choices" else meta[k]
            for k in ("min_open", "max_open"):
                if meta.get(k):
                    row[k] = True
            if meta.get("min_items"):
                row["min_items"] = meta["min_items"]
            out.append(row)
        return out
    target = builder.__init__ if inspect.isclass(builder) else builder
    out = []
    params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
    for i, p in enumerate(params):
        if i < positional or p.name in INTERNAL or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = p.annotation if p.annotation is not p.empty else ""
        out.append({"name": p.name, "type": ann if isinstance(ann, str) else type_name(ann),
                    "default": None if p.default is p.empty else _fmt(p.default), "doc": ""})
    return out


def describe(kind: str) -> list[dict[str, Any]]:
    """Every entry of ``kind`` (``methods``, ``losses``, ``models``, ``optimizers``, ``schedulers``)."""
    if kind not in KINDS:
        raise ConfigError(f"list: {kind!r} is not a catalog; choose one of: {', '.join(KINDS)}")
    module, registry, positional = KINDS[kind]
    importlib.import_module(module)  # registers the entries
    reg = getattr(importlib.import_module("robust_paddle.registry"), registry)
    out = []
    for name in reg.names():
        builder = reg.get(name)
        doc = inspect.getdoc(builder) or ""
        paper = getattr(builder, "paper", None)  # an explicit citation (e.g. a paper with no arXiv id)
        out.append({"name": name, "summary": doc.split("\n\n")[0].replace("\n", " ").strip(),
                    "paper": paper if paper is not None else
                    _paper(doc) or _paper(inspect.getdoc(inspect.getmodule(builder)) or ""),
                    "params": params_of(builder, positional=positional)})
    return out


def format_catalog(entries: list[dict[str, Any]]) -> str:
    """Human-readable listing: one block per entry, one line per parameter."""
    lines = []
    for e in entries:
        lines.append(f"{e['name']}: {e['summary']}" + (f"  [{e['paper']}]" if e["paper"] else ""))
        for p in e["params"]:
            allowed = ""
            if "choices" in p:
                allowed = f" one of {', '.join(map(str, p['choices']))}"
            elif "min" in p or "max" in p:
                allowed = (f" in {'(' if p.get('min_open') else '['}{p.get('min', '-inf')}, {p.get('max', 'inf')}"
                           f"{')' if p.get('max_open') else ']'}")
                if "min_items" in p:
                    allowed += f", at least {p['min_items']} item(s)"
            doc = f"  -- {p['doc']}" if p["doc"] else ""
            lines.append(f"    {p['name']}: {p['type']} = {p['default']!r}{allowed}{doc}")
        if not e["params"]:
            lines.append("    (no parameters)")
    return "\n".join(lines)
