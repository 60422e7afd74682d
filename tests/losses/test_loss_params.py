"""Declared loss parameters: one frozen Params dataclass per loss, checked by the registry (as methods' are)."""

import dataclasses
import inspect
import os

import pytest

import robust_paddle.losses  # noqa: F401  (registers)
from robust_paddle import config as C
from robust_paddle.catalog import describe, format_catalog
from robust_paddle.errors import ConfigError
from robust_paddle.losses import LOSSES, build_loss
from robust_paddle.schema import build

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def test_every_loss_declares_its_parameters():
    assert all(dataclasses.is_dataclass(getattr(LOSSES.get(n), "Params", None)) for n in LOSSES.names())


@pytest.mark.parametrize("name", LOSSES.names())
def test_params_match_the_constructor(name):
    cls = LOSSES.get(name)
    sig = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
           if p.kind is p.KEYWORD_ONLY and p.name != "num_classes"}  # num_classes comes from the data
    fields = {f.name: f.default for f in dataclasses.fields(cls.Params)}
    assert fields == sig
    assert all(f.metadata["doc"] for f in dataclasses.fields(cls.Params))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls.Params().__setattr__("reduction", "sum")


@pytest.mark.parametrize("name, params, message", [
    ("gce", {"q": 0}, r"^loss.params.q: 0.0 is out of range; must be > 0.0 and <= 1.0$"),
    ("sce", {"log_zero": 1}, r"^loss.params.log_zero: 1.0 is out of range; must be < 0.0$"),
    ("ce", {"reduction": "avg"}, r"^loss.params.reduction: 'avg' is not allowed; choose one of: mean, sum, none$"),
    ("focal", {"gamma": "2"}, r"^loss.params.gamma: expected float, got '2' \(str\)$"),
    ("gce", {"k": 0.5}, r"^loss.params: unknown key\(s\) k for loss 'gce'; allowed: reduction, weight, ignore_index, q$"),
])
def test_registry_names_the_key_the_value_and_what_is_allowed(name, params, message):
    with pytest.raises(ConfigError, match=message):
        build_loss(name, num_classes=3, **params)


def test_constructors_take_the_validated_values():
    loss = build_loss("truncated_gce", num_classes=3, q=1, k=0)  # ints from YAML become the declared floats
    assert (loss.q, loss.k) == (1.0, 0.0) and isinstance(loss.q, float)


def test_every_shipped_config_loss_params_validate():
    paths = [os.path.join(d, f) for d, _, files in os.walk(CONFIGS) for f in files
             if f.endswith(".yaml") and "_base_" not in d]
    assert len(paths) > 20
    for path in paths:
        cfg = C.load(path)
        build(LOSSES.get(cfg.loss.name).Params, dict(cfg.loss.params), "loss.params")


def test_list_losses_shows_parameters_ranges_docs_and_paper():
    gce = {e["name"]: e for e in describe("losses")}["gce"]
    q = {p["name"]: p for p in gce["params"]}["q"]
    assert (q["type"], q["default"], q["min"], q["max"], q.get("min_open")) == ("float", 0.7, 0.0, 1.0, True)
    assert "CE" in q["doc"] and gce["paper"] == "arXiv:1805.07836"
    text = format_catalog([gce])
    assert "    q: float = 0.7 in (0.0, 1.0]  -- " in text and "[arXiv:1805.07836]" in text
