"""Name -> class/function registries. Selection by registry only: no eval, no getattr on modules."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from robust_paddle.errors import ConfigError
from robust_paddle.schema import build


class Registry:
    """A named table of builders (classes or factory functions).

    Names are lowercase strings. Registering a name twice, or asking for an unknown one, raises
    ``ValueError`` listing the names that exist.

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("ce")
        ... class CrossEntropyLoss: ...
        >>> LOSSES.get("ce")
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
            key = name if name is not None else obj.__name__.lower()
            if not isinstance(key, str) or not key or key != key.lower():
                raise ConfigError(f"{self.kind} registry: names must be non-empty lowercase strings, got {key!r}")
            if key in self._table:
                raise ConfigError(
                    f"{self.kind} '{key}' is already registered (by {self._table[key].__qualname__}); "
                    f"registered: {', '.join(self.names())}"
                )
            self._table[key] = obj
            return obj

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str) or name not in self._table:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._table[name]

    def build(self, name: str, *args: Any, field: str | None = None, fixed: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
        """Build ``name`` with the config parameters ``kwargs``, validated here (the one place they are).

        A builder that declares a frozen ``Params`` dataclass (``schema.param`` fields) gets its ``kwargs``
        checked against it -- unknown keys, types, ranges, choices -- and receives the validated values; the
        constructor does not check them again. Other builders get ``kwargs`` checked against their signature.

        Args:
            field: the config path the kwargs came from (e.g. ``"loss.params"``), used in messages.
            fixed: arguments the toolkit fills itself (``num_classes``, ``input_shape``, a text model's
                vocabulary), passed through unchecked and not config parameters.

        Raises:
            ConfigError: ``<field>.<key>: <value> is out of range; must be > 0.0`` (and the like) for a bad
                value, ``<field>: unknown key(s) ...`` naming the allowed keys for an unknown one.
        """
        fixed = dict(fixed or {})
        kwargs = self.check(name, kwargs, positional=len(args), field=field, fixed=fixed)
        return self.get(name)(*args, **fixed, **kwargs)

    def check(self, name: str, kwargs: dict[str, Any], *, positional: int = 0, field: str | None = None,
              fixed: dict[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`build`'s checks of the config parameters ``kwargs`` without building (``positional``: the
        arguments the builder takes before them); returns the validated values. Checks that need the built
        context (epoch counts against ``train.epochs``, one parameter against another) stay in the builder.

        Raises:
            ConfigError: as :meth:`build`.
        """
        obj = self.get(name)
        where = field or f"{self.kind} '{name}'"
        check_kwargs(obj, kwargs, where=where, owner=f"{self.kind} '{name}'", positional=positional,
                     exclude=set(fixed or {}))
        spec = getattr(obj, "Params", None)
        if spec is not None and dataclasses.is_dataclass(spec):
            params = build(spec, kwargs, where)
            kwargs = {k: getattr(params, k) for k in kwargs}
        return dict(kwargs)

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def accepted_kwargs(obj: Callable[..., Any], *, positional: int = 0) -> tuple[list[str], bool]:
    """Keyword names ``obj`` accepts (less the first ``positional`` ones, which the caller fills
    positionally) and whether it takes ``**kwargs``."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    names, var_kw = [], False
    params = [p for p in sig.parameters.values() if p.name != "self"]
    for i, p in enumerate(params):
        if i < positional and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return names, var_kw


def check_kwargs(obj: Callable[..., Any], kwargs: dict[str, Any], *, where: str, owner: str,
                 positional: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> None:
    """Unknown keys of ``kwargs`` for ``obj``'s signature (``exclude``: names filled elsewhere, not listed)."""
    names, var_kw = accepted_kwargs(obj, positional=positional)
    names = [n for n in names if n not in exclude]
    if var_kw:
        return
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {owner}; allowed: {', '.join(names) or '(none)'}"
        )


LOSSES = Registry("loss")
MODELS = Registry("model")
METHODS = Registry("method")
DATASETS = Registry("dataset")
NOISES = Registry("noise")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
HOOKS = Registry("hook")
