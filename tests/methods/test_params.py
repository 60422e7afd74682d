"""Declared method parameters: one frozen Params dataclass per method, checked by the registry."""

import dataclasses
import inspect

import pytest

import robust_paddle.methods  # noqa: F401  (registers)
from robust_paddle.catalog import describe
from robust_paddle.errors import ConfigError
from robust_paddle.registry import METHODS

DECLARED = [n for n in METHODS.names() if dataclasses.is_dataclass(getattr(METHODS.get(n), "Params", None))]


def test_every_method_declares_its_parameters():
    assert set(DECLARED) == set(METHODS.names())


@pytest.mark.parametrize("name", DECLARED)
def test_params_match_the_constructor(name):
    cls = METHODS.get(name)
    sig = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
           if p.kind is p.KEYWORD_ONLY}
    fields = {f.name: f.default for f in dataclasses.fields(cls.Params)}
    assert fields == sig
    assert all(f.metadata["doc"] for f in dataclasses.fields(cls.Params))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls.Params().__setattr__(next(iter(fields)), 1)


@pytest.mark.parametrize("name, params, message", [
    ("dividemix", {"T": 0}, r"^method.params.T: 0.0 is out of range; must be > 0.0$"),
    ("dividemix", {"warmup_epochs": -1}, r"^method.params.warmup_epochs: -1.0 is out of range; must be >= 0$"),
    ("dividemix", {"warmup": "cold"}, r"^method.params.warmup: 'cold' is not allowed; choose one of: ce, volmin$"),
    ("gmm_correction", {"p_threshold": 2}, r"^method.params.p_threshold: 2.0 is out of range; must be <= 1.0"),
    ("forward_correction", {"estimator": "x"}, r"^method.params.estimator: 'x' is not allowed"),
    ("dividemix", {"lambda": 1}, r"^method.params: unknown key\(s\) lambda for method 'dividemix'"),
])
def test_registry_names_the_key_the_value_and_what_is_allowed(name, params, message):
    with pytest.raises(ConfigError, match=message):
        METHODS.build(name, None, field="method.params", **params)


def test_list_shows_the_declared_fields():
    dm = {e["name"]: e for e in describe("methods")}["dividemix"]
    t = {p["name"]: p for p in dm["params"]}["T"]
    assert t["type"] == "float" and t["default"] == 0.5 and t["min"] == 0.0 and "sharpening" in t["doc"]


def test_every_shipped_config_method_params_validate():
    import os

    from robust_paddle import config as C
    from robust_paddle.schema import build

    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    paths = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files
             if f.endswith(".yaml") and "_base_" not in d]
    assert len(paths) > 20
    for path in paths:
        cfg = C.load(path)
        build(METHODS.get(cfg.method.name).Params, dict(cfg.method.params), "method.params")
