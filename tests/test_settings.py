"""No silently ignored setting (issue 15): non-finite numbers anywhere in a config, keys the chosen method
ignores, and sub-settings of an option that is off (warned, recorded as the default)."""

import logging
import os
import re

import pytest

import robust_paddle.methods  # noqa: F401  (registers METHODS)
from robust_paddle import config as C
from robust_paddle.errors import ConfigError
from robust_paddle.methods.base import METHOD_DEPENDENT_KEYS, check_method_settings
from robust_paddle.pipeline.run import train
from robust_paddle.registry import METHODS

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIG = os.path.join(CONFIGS, "quickstart.yaml")
CE = ["loss.name=ce", "loss.params={}"]  # quickstart trains GCE; a method that ignores loss.* needs the default


@pytest.mark.parametrize("override, key", [
    ("optimizer.lr=.nan", "optimizer.lr"), ("optimizer.lr=.inf", "optimizer.lr"),
    ("data.noise.rate=.nan", "data.noise.rate"), ("loss.params={q: .nan}", "loss.params.q"),
    ("method.params={p_threshold: -.inf}", "method.params.p_threshold"), ("data.mean=[0.5, .nan]", "data.mean[1]"),
    ("slim.stages=[{name: prune, ratio: .inf}]", "slim.stages[0].ratio"),
    ("train.early_stopping.min_delta=.inf", "train.early_stopping.min_delta"),
])
def test_non_finite_numbers_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: (nan|inf|-inf) is not a finite number; give a "
                       "finite value$"):
        C.load(None, [override])


def test_config_error_is_the_hierarchy_one():
    from robust_paddle import errors

    assert C.ConfigError is errors.ConfigError and issubclass(C.ConfigError, ValueError)


@pytest.mark.parametrize("override", ["loss.name=gce", "loss.class_weighting=inverse", "loss.params={q: 0.5}",
                                      "loss.class_weighting_beta=0.9"])
def test_dividemix_refuses_loss_settings_before_writing_anything(tmp_path, override):
    out = tmp_path / "run"
    cfg = C.load(CONFIG, [*CE, "method.name=dividemix", f"output_dir={out}", override])
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=.* has no effect with method 'dividemix', which trains with "
                       r"cross-entropy .*MixMatch losses"):
        train(cfg)
    assert not out.exists()  # no config.yaml recording the ignored setting, no folder at all


def test_dividemix_applies_the_sampler_and_plain_runs_pass():
    check_method_settings(C.load(CONFIG, [*CE, "method.name=dividemix", "data.sampler=weighted"]))
    check_method_settings(C.load(CONFIG, [*CE, "method.name=dividemix"]))


def test_forward_correction_uses_the_loss_only_while_it_estimates_t():
    check_method_settings(C.load(CONFIG, ["method.name=forward_correction", "loss.name=gce"]))  # auto: warm-up loss
    given = "method.params={transition: [[0.8, 0.2], [0.2, 0.8]]}"
    with pytest.raises(ConfigError, match=r"^loss.name='gce' has no effect with method 'forward_correction', "
                       r"which trains with the forward-corrected cross-entropy"):
        check_method_settings(C.load(CONFIG, ["method.name=forward_correction", "loss.name=gce", given]))
    check_method_settings(C.load(CONFIG, [*CE, "method.name=forward_correction", given]))


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_declares_the_keys_it_applies(method):
    builder = METHODS.get(method)
    used = builder.settings_used({})
    assert set(used) <= set(METHOD_DEPENDENT_KEYS)
    for key in METHOD_DEPENDENT_KEYS:  # a method that applies a key accepts it; one that ignores it refuses it
        value = {"loss.name": "gce", "loss.params": "{q: 0.5}", "loss.class_weighting": "inverse",
                 "loss.class_weighting_beta": "0.9"}[key]
        extra = ["loss.name=gce"] if key == "loss.params" else []
        extra += ["loss.class_weighting=effective"] if key == "loss.class_weighting_beta" else []
        cfg = C.load(CONFIG, [*CE, f"method.name={method}", f"{key}={value}", *extra])
        if key in used:
            check_method_settings(cfg)
        else:
            with pytest.raises(ConfigError, match=rf"^loss\.\w+=.* has no effect with method '{method}'"):
                check_method_settings(cfg)


def test_inert_sub_settings_warn_and_are_recorded_as_defaults(caplog):
    cfg = C.load(CONFIG, ["loss.class_weighting_beta=0.9", "data.sampler_weighting=inverse_sqrt"])
    with caplog.at_level(logging.WARNING, logger="robust_paddle.config"):
        eff = C.drop_inert_settings(cfg)
    assert eff.loss.class_weighting_beta == C.LossConfig().class_weighting_beta
    assert eff.data.sampler_weighting == C.DataConfig().sampler_weighting
    assert "loss.class_weighting_beta=0.9 has no effect unless loss.class_weighting is 'effective'" in caplog.text
    assert "data.sampler_weighting='inverse_sqrt' has no effect unless data.sampler is 'weighted'" in caplog.text
    kept = C.load(CONFIG, ["loss.class_weighting=effective", "loss.class_weighting_beta=0.9"])
    assert C.drop_inert_settings(kept) is kept


def test_every_shipped_config_sets_only_what_its_method_applies():
    paths = [os.path.join(d, f) for d, _, files in os.walk(CONFIGS) for f in files
             if f.endswith(".yaml") and not f.startswith("_")]
    assert len(paths) > 20
    for path in paths:
        check_method_settings(C.load(path))
