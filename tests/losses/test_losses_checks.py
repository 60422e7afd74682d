"""Every input check of the losses raises with a message naming the field, the value and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle

from robust_paddle.errors import ConfigError, DataError
from robust_paddle.losses import LOSSES, build_loss

N, C = 4, 3
NAMES = LOSSES.names()


def _z(n: int = N, c: int = C, dtype=np.float32) -> paddle.Tensor:
    return paddle.to_tensor(np.random.default_rng(0).standard_normal((n, c)).astype(dtype))


def _y(values=(0, 1, 2, 1)) -> paddle.Tensor:
    return paddle.to_tensor(np.asarray(values, dtype=np.int64))


# ------------------------------------------------------------------------------------ construction checks
@pytest.mark.parametrize("name", NAMES)
def test_common_constructor_checks(name):
    with pytest.raises(ConfigError, match=r"^loss.params.reduction: 'avg' is not allowed; choose one of: mean, sum, none$"):
        build_loss(name, num_classes=C, reduction="avg")
    with pytest.raises(ValueError, match=rf"{name}: num_classes must be an int >= 2, got 1"):
        build_loss(name, num_classes=1)
    with pytest.raises(ValueError, match=rf"{name}: num_classes must be an int >= 2, got True"):
        build_loss(name, num_classes=True)
    with pytest.raises(ValueError, match=rf"{name}: weight must have one entry per class \(length 3\), got length 2"):
        build_loss(name, num_classes=C, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=rf"{name}: weight must be finite, >= 0 and not all zero"):
        build_loss(name, num_classes=C, weight=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=rf"{name}: weight must be finite, >= 0 and not all zero"):
        build_loss(name, num_classes=C, weight=[0, 0, 0])
    with pytest.raises(ConfigError, match=r"^loss.params.weight: expected a list \(list\[float\]\), got 'balanced' \(str\)$"):
        build_loss(name, num_classes=C, weight="balanced")
    with pytest.raises(ConfigError, match=r"^loss.params.weight\[1\]: expected float, got 'a' \(str\)$"):
        build_loss(name, num_classes=C, weight=[1.0, "a", 1.0])
    with pytest.raises(ValueError, match=rf"loss.params: unknown key\(s\) bogus for loss '{name}'; allowed: reduction, weight"):
        build_loss(name, num_classes=C, bogus=1)
    with pytest.raises(ValueError, match=r"model.loss: unknown key\(s\) bogus"):
        build_loss(name, num_classes=C, field="model.loss", bogus=1)


def test_unknown_loss_name_lists_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'l2'; choose one of: bootstrap_hard, .*truncated_gce"):
        build_loss("l2", num_classes=C)


# declared in each loss's Params and checked by the registry (loss.params.<key>, the value, what is allowed);
# combinations and per-class vectors (they depend on num_classes) by the constructor
HYPER_CASES = [
    ("ce", {"label_smoothing": 1.0}, ConfigError, r"^loss.params.label_smoothing: 1.0 is out of range; must be < 1.0 and >= 0.0$"),
    ("ce", {"label_smoothing": -0.1}, ConfigError, r"^loss.params.label_smoothing: -0.1 is out of range; must be >= 0.0 and < 1.0$"),
    ("gce", {"q": 0}, ConfigError, r"^loss.params.q: 0.0 is out of range; must be > 0.0 and <= 1.0$"),
    ("gce", {"q": 1.5}, ConfigError, r"^loss.params.q: 1.5 is out of range; must be <= 1.0 and > 0.0$"),
    ("gce", {"q": float("nan")}, ConfigError, r"^loss.params.q: nan is not allowed; expected a finite number$"),
    ("gce", {"q": "0.7"}, ConfigError, r"^loss.params.q: expected float, got '0.7' \(str\)$"),
    ("gce", {"q": True}, ConfigError, r"^loss.params.q: expected float, got True \(bool\)$"),
    ("truncated_gce", {"q": 0.0}, ConfigError, r"^loss.params.q: 0.0 is out of range; must be > 0.0 and <= 1.0$"),
    ("truncated_gce", {"k": 1.0}, ConfigError, r"^loss.params.k: 1.0 is out of range; must be < 1.0 and >= 0.0$"),
    ("truncated_gce", {"k": -0.5}, ConfigError, r"^loss.params.k: -0.5 is out of range; must be >= 0.0 and < 1.0$"),
    ("sce", {"alpha": -1.0}, ConfigError, r"^loss.params.alpha: -1.0 is out of range; must be >= 0.0$"),
    ("sce", {"beta": -0.1}, ConfigError, r"^loss.params.beta: -0.1 is out of range; must be >= 0.0$"),
    ("sce", {"alpha": 0, "beta": 0}, ConfigError, r"sce: alpha and beta cannot both be 0"),
    ("sce", {"log_zero": 0.0}, ConfigError, r"^loss.params.log_zero: 0.0 is out of range; must be < 0.0$"),
    ("nce_rce", {"alpha": -2}, ConfigError, r"^loss.params.alpha: -2.0 is out of range; must be >= 0.0$"),
    ("nce_rce", {"alpha": 0.0, "beta": 0.0}, ConfigError, r"nce_rce: alpha and beta cannot both be 0"),
    ("nce_rce", {"log_zero": 1.0}, ConfigError, r"^loss.params.log_zero: 1.0 is out of range; must be < 0.0$"),
    ("nce_mae", {"beta": float("inf")}, ConfigError, r"^loss.params.beta: inf is not allowed; expected a finite number$"),
    ("nce_mae", {"alpha": 0, "beta": 0}, ConfigError, r"nce_mae: alpha and beta cannot both be 0"),
    ("focal", {"gamma": -1.0}, ConfigError, r"^loss.params.gamma: -1.0 is out of range; must be >= 0.0$"),
    ("focal", {"alpha": 0.0}, ConfigError, r"focal: alpha must be > 0, got 0.0"),
    ("focal", {"alpha": [1.0, 1.0]}, ConfigError, r"focal: alpha must have one entry per class \(length 3\), got length 2"),
    ("focal", {"alpha": [1.0, -1.0, 1.0]}, ConfigError, r"focal: alpha must be finite, >= 0 and not all zero"),
    ("focal", {"alpha": "auto"}, ConfigError, r"^loss.params.alpha: expected float or list\[float\] or null, got 'auto' \(str\)$"),
    ("bootstrap_soft", {"beta": 1.5}, ConfigError, r"^loss.params.beta: 1.5 is out of range; must be <= 1.0 and >= 0.0$"),
    ("bootstrap_hard", {"beta": -0.2}, ConfigError, r"^loss.params.beta: -0.2 is out of range; must be >= 0.0 and <= 1.0$"),
]


@pytest.mark.parametrize("name,params,exc,message", HYPER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(HYPER_CASES)])
def test_hyper_parameter_checks(name, params, exc, message):
    with pytest.raises(exc, match=message):
        build_loss(name, num_classes=C, **params)


def test_every_loss_hyper_parameter_has_a_range_check():
    checked = {(name, key) for name, params, _, _ in HYPER_CASES for key in params}
    for name in NAMES:
        # ignore_index belongs to the base class; its check is in tests/losses/test_ignore_index.py
        own = set(LOSSES.get(name).__init__.__kwdefaults__) - {"reduction", "weight", "ignore_index"}
        assert {(name, key) for key in own} <= checked, name


# ----------------------------------------------------------------------------------------- forward checks
@pytest.mark.parametrize("name", NAMES)
def test_forward_input_checks(name):
    loss = build_loss(name, num_classes=C)
    cases = [
        ((_z().reshape([-1]), _y()), ValueError, r"logits must have shape \[N, C\], got shape \[12\]"),
        ((_z(c=4), _y()), ValueError, r"logits have 4 classes \(shape \[4, 4\]\) but num_classes=3"),
        ((_z(n=0), _y(())), ValueError, r"logits has an empty batch"),
        ((paddle.to_tensor(np.zeros((N, C), np.int64)), _y()), DataError, r"logits must be a float Tensor \[N, C\], got dtype int64"),
        ((_z().numpy(), _y()), DataError, r"logits must be a paddle.Tensor, got ndarray"),
        ((_z(), _y((0, 1, 2))), ValueError, r"target has 3 labels but logits have N=4 rows"),
        ((_z(), _y((0, 1, 3, 1))), ValueError, r"label 3 is out of range; labels must be in \[0, 2\]"),
        ((_z(), _y((0, -1, 2, 1))), ValueError, r"label -1 is out of range; labels must be in \[0, 2\]"),
        ((_z(), paddle.zeros([N, 2, 1], "int64")), ValueError, r"hard labels must have shape \[N\] or \[N, 1\], got shape \[4, 2, 1\]"),
        ((_z(), paddle.zeros([N, 4])), ValueError, r"soft target must have shape \[4, 3\] like the logits, got shape \[4, 4\]"),
        ((_z(), paddle.zeros([3, C])), ValueError, r"soft target must have shape \[4, 3\] like the logits, got shape \[3, 3\]"),
        ((_z(), paddle.zeros([N])), ValueError, r"soft target must have shape \[4, 3\] like the logits, got shape \[4\] \(float \[N\] targets are not labels; pass int64 labels\)"),
        ((_z(), paddle.zeros([N], "bool")), DataError, r"target must be int labels \[N\] or float soft targets \[N, C\], got dtype bool"),
        ((_z(), [0, 1, 2, 1]), DataError, r"target must be a paddle.Tensor, got list"),
        ((_z(), _y(), paddle.ones([3])), ValueError, r"sample_weight must have shape \[4\] \(one weight per sample\), got shape \[3\]"),
        ((_z(), _y(), paddle.ones([N, 2])), ValueError, r"sample_weight must have shape \[4\]"),
        ((_z(), _y(), paddle.ones([N], "int64")), DataError, r"sample_weight must be a float Tensor \[N\], got dtype int64"),
        ((_z(), _y(), np.ones(N)), DataError, r"sample_weight must be a paddle.Tensor, got ndarray"),
    ]
    for args, exc, message in cases:
        with pytest.raises(exc, match=rf"^{name}: {message}"):
            loss(*args)
