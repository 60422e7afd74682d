"""Every method at any budget: epoch-valued params as fractions of the run, and one-line errors naming the
keys when an epoch count leaves a method no training after its warm-up."""

import pytest
from method_helpers import toy_context

from robust_paddle.config import run_epochs
from robust_paddle.errors import ConfigError
from robust_paddle.registry import METHODS

D, K = 4, 3


def build(name, epochs, **params):
    ctx = toy_context([0, 1, 2, 0], dim=D, classes=K, seed=0, overrides=[f"train.epochs={epochs}"])
    return METHODS.build(name, ctx, field="method.params", **params)


@pytest.mark.parametrize("value, epochs, whole, expected", [
    (0.4, 200, True, 80), (0.4, 6, True, 2), (0.4, 6, False, 2.4), (0.05, 6, True, 1), (0.5, 5, True, 3),
    (3, 6, True, 3), (0, 6, True, 0), (2.5, 6, False, 2.5)])
def test_run_epochs(value, epochs, whole, expected):
    assert run_epochs(value, epochs=epochs, key="k", whole=whole) == pytest.approx(expected)


def test_run_epochs_errors():
    with pytest.raises(ValueError, match=r"k: 2.5 must be a whole number of epochs or a fraction of the run in "
                                          r"\(0, 1\) \(e.g. 0.42 of train.epochs=6\)"):
        run_epochs(2.5, epochs=6, key="k")
    for bad in (-1, "half", True, float("nan")):
        with pytest.raises(ValueError, match="k: expected a number of epochs >= 0 or a fraction of the run"):
            run_epochs(bad, epochs=6, key="k")
    with pytest.raises(ValueError, match="k: 0 is out of range; must be >= 1 epochs"):
        run_epochs(0, epochs=6, key="k", lo=1)


@pytest.mark.parametrize("name, params, attr, epochs, expected", [
    ("gmm_correction", {"warmup_epochs": 0.1}, "warmup_epochs", 300, 30),
    ("gmm_correction", {"warmup_epochs": 0.1}, "warmup_epochs", 6, 1),
    ("dividemix", {"warmup_epochs": 0.1, "rampup_length": 0.05}, "rampup_length", 300, 15),
    ("dividemix", {"warmup_epochs": 0.1}, "warmup_epochs", 2, 1),
    ("forward_correction", {"warmup_epochs": 0.2}, "warmup_epochs", 30, 6),
    ("co_teaching", {"num_gradual": 0.05}, "num_gradual", 200, 10),
    ("co_teaching", {"num_gradual": 0.05}, "num_gradual", 6, 1),
    ("jocor", {"estimate_epoch": 0.1, "forget_rate": "auto"}, "estimate_epoch", 60, 6),
    ("co_teaching_plus", {"init_epoch": 0.1, "forget_rate": 0.2}, "init_epoch", 200, 20),
])
def test_fractions_of_the_run(name, params, attr, epochs, expected):
    method = build(name, epochs, **params)
    obj = method.schedule if attr == "estimate_epoch" else method
    assert getattr(obj, attr) == expected


@pytest.mark.parametrize("name, params, key", [
    ("gmm_correction", {"warmup_epochs": 6}, "method.params.warmup_epochs=6"),
    ("dividemix", {"warmup_epochs": 8}, "method.params.warmup_epochs=8"),
    ("forward_correction", {"warmup_epochs": 6}, "method.params.warmup_epochs=6"),
    ("co_teaching", {"estimate_epoch": 6, "forget_rate": "auto"}, "method.params.estimate_epoch=6"),
    ("co_teaching_plus", {"init_epoch": 7, "forget_rate": 0.2}, "method.params.init_epoch=7"),
])
def test_no_training_after_warmup_is_an_error_naming_the_key(name, params, key):
    with pytest.raises(ConfigError, match=rf"{key} leaves method '{name}' no training after .* train.epochs=6; "
                                          rf"lower method.params"):
        build(name, 6, **params)
