"""Declared model parameters: one frozen Params dataclass per registered model, checked by the registry."""

import dataclasses
import inspect
import os

import pytest

import robust_paddle.models  # noqa: F401  (registers)
from robust_paddle import config as C
from robust_paddle.catalog import describe, format_catalog
from robust_paddle.errors import ConfigError
from robust_paddle.models import MODELS, build_model
from robust_paddle.models.text import DATA_KWARGS, TextClassifier
from robust_paddle.schema import build

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
FIXED = {"num_classes", "input_shape", "name", "cell", *DATA_KWARGS}  # filled by the toolkit, not model.params


def constructor_kwargs(builder):
    """Keyword parameters (with defaults) the builder accepts, following ``**kw`` into TextClassifier."""
    out, target = {}, builder.__init__ if inspect.isclass(builder) else builder
    for p in inspect.signature(target).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            out.update(constructor_kwargs(TextClassifier))
        elif p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in FIXED and p.name != "self":
            out[p.name] = p.default
    return out


def test_every_model_declares_its_parameters():
    assert all(dataclasses.is_dataclass(getattr(MODELS.get(n), "Params", None)) for n in MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_params_match_the_constructor(name):
    builder = MODELS.get(name)
    fields = {f.name: f.default for f in dataclasses.fields(builder.Params)}
    assert fields == constructor_kwargs(builder)
    assert all(f.metadata["doc"] for f in dataclasses.fields(builder.Params))


@pytest.mark.parametrize("name, shape, params, message", [
    ("mlp", (4,), {"dropout": 1.0}, r"^model.params.dropout: 1.0 is out of range; must be < 1.0 and >= 0.0$"),
    ("resnet18_cifar", (3, 8, 8), {"width": 2.5}, r"^model.params.width: expected int, got 2.5 \(float\)$"),
    ("textcnn", (8,), {"vocab_size": 9, "num_filters": 0},
     r"^model.params.num_filters: 0 is out of range; must be >= 1$"),
    ("transformer", (8,), {"vocab_size": 9, "heads": 2}, r"^unknown key 'model.params.heads'; allowed in model.params: "
                                                         r"embed_dim, dropout, .*num_heads"),
])
def test_registry_names_the_key_the_value_and_what_is_allowed(name, shape, params, message):
    with pytest.raises(ConfigError, match=message):
        build_model(name, num_classes=3, input_shape=shape, **params)


def test_every_shipped_config_model_params_validate():
    paths = [os.path.join(d, f) for d, _, files in os.walk(CONFIGS) for f in files
             if f.endswith(".yaml") and "_base_" not in d]
    checked = 0
    for path in paths:
        cfg = C.load(path)
        if cfg.model.name in MODELS:
            build(MODELS.get(cfg.model.name).Params, dict(cfg.model.params), "model.params")
            checked += 1
    assert checked > 20


def test_list_models_shows_parameters_ranges_docs_and_paper():
    entries = {e["name"]: e for e in describe("models")}
    cnn = {p["name"]: p for p in entries["textcnn"]["params"]}
    assert cnn["kernel_sizes"]["type"] == "list[int]" and cnn["kernel_sizes"]["default"] == [3, 4, 5]
    assert cnn["kernel_sizes"]["min"] == 1 and cnn["embed_dim"]["doc"]
    assert entries["textcnn"]["paper"] == "arXiv:1408.5882" and entries["resnet18_cifar"]["paper"] == "arXiv:1512.03385"
    assert "    width: int = 64 in [1, inf]  -- channels of the first stage" in format_catalog([entries["resnet18_cifar"]])
    assert entries["bigru_attention"]["paper"] == "Zhou et al. 2016, ACL (no arXiv id)"
    assert "    kernel_sizes: list[int] = [3, 4, 5] in [1, inf], at least 1 item(s)" in format_catalog([entries["textcnn"]])
    assert "dropout: float = 0.5 in [0.0, 1.0)" in format_catalog([entries["textcnn"]])
