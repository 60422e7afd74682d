"""gmm_correction: the training step against NumPy references, the shared division helpers, end-to-end runs."""

import glob
import json
import os

import numpy as np
import paddle
import pytest
from method_helpers import assert_same_final, build_method, softmax, toy_context

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.methods.gmm_correction import Division, GMMCorrectionMethod, neg_entropy
from robust_paddle.ops import derive_seed
from robust_paddle.pipeline import run as run_mod

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
FAST = ["data.subset=300", "train.progress=false", "train.visualdl=false", "train.report=false",
        "model.name=mlp", "data.batch_size=32", "train.checkpoint_every=1"]
D, K, N = 4, 3, 8


def toy_method(loss="ce", loss_params=None, **params):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    ctx = toy_context(labels, dim=D, classes=K, seed=9, loss=loss, loss_params=loss_params)
    return build_method(GMMCorrectionMethod, ctx, **params), labels


def batch_of(x, labels):
    return paddle.to_tensor(x), paddle.to_tensor(labels, dtype="int64"), paddle.to_tensor(np.arange(len(x)))


# ---------------------------------------------------------------------------------- training step
@pytest.mark.parametrize("weighting,T", [("clean_prob", 1.0), ("clean_prob", 0.5), ("none", 1.0)])
def test_step_is_weighted_ce_on_refined_labels(weighting, T):
    method, labels = toy_method(warmup_epochs=1, weighting=weighting, T=T)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.random(N).astype(np.float32)
    method.divisions[0].prob = w
    loss, terms = method.train_step(batch_of(x, labels), epoch=2, step=0)
    net = method.networks["net"]
    z = x.astype(np.float64) @ net.fc.weight.numpy() + net.fc.bias.numpy()
    p = softmax(z) ** (1 / T)
    p /= p.sum(1, keepdims=True)
    target = w[:, None] * np.eye(K)[labels] + (1 - w[:, None]) * p
    per = -np.sum(target * np.log(softmax(z)), 1)
    want = np.mean(w * per) if weighting == "clean_prob" else np.mean(per)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert terms["mean_w"] == pytest.approx(w.mean(), rel=1e-6)


def test_step_uses_the_configured_loss_on_refined_targets():
    method, labels = toy_method(loss="gce", loss_params={"q": 0.7}, warmup_epochs=1, T=0.5)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.random(N).astype(np.float32)
    method.divisions[0].prob = w
    loss, _ = method.train_step(batch_of(x, labels), epoch=1, step=0)
    net = method.networks["net"]
    p = softmax(x.astype(np.float64) @ net.fc.weight.numpy() + net.fc.bias.numpy())
    t = w[:, None] * np.eye(K)[labels] + (1 - w[:, None]) * (p**2 / (p**2).sum(1, keepdims=True))
    gce = np.sum(t * (1 - p**0.7) / 0.7, 1)  # GCE with soft targets: sum_k t_k (1 - p_k^q) / q
    assert float(loss) == pytest.approx(np.mean(w * gce), rel=1e-5)


def test_step_with_mixup_matches_numpy():
    method, labels = toy_method(warmup_epochs=0, mixup_alpha=1.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, D)).astype(np.float32)
    w = rng.random(N).astype(np.float32)
    method.divisions[0].prob = w
    method._batch = 3
    loss, _ = method.train_step(batch_of(x, labels), epoch=4, step=0)
    net = method.networks["net"]
    W, b = net.fc.weight.numpy().astype(np.float64), net.fc.bias.numpy().astype(np.float64)
    target = w[:, None] * np.eye(K)[labels] + (1 - w[:, None]) * softmax(x @ W + b)
    g = np.random.default_rng([9, 4, 3])
    lam = g.beta(1.0, 1.0)
    lam = max(lam, 1 - lam)
    perm = g.permutation(N)
    mx, mt, mw = (lam * a + (1 - lam) * a[perm] for a in (x.astype(np.float64), target, w.astype(np.float64)))
    per = -np.sum(mt * np.log(softmax(mx @ W + b)), 1)
    assert float(loss) == pytest.approx(np.mean(mw * per), rel=1e-5)


def test_warmup_with_mixup_is_ce_on_mixed_one_hot_targets():
    method, labels = toy_method(warmup_epochs=3, mixup_alpha=2.0)
    x = np.random.default_rng(5).normal(size=(N, D)).astype(np.float32)
    method._batch = 1
    loss, terms = method.train_step(batch_of(x, labels), epoch=0, step=0)
    net = method.networks["net"]
    W, b = net.fc.weight.numpy().astype(np.float64), net.fc.bias.numpy().astype(np.float64)
    g = np.random.default_rng([9, 0, 1])
    lam = g.beta(2.0, 2.0)
    lam = max(lam, 1 - lam)
    perm = g.permutation(N)
    y = np.eye(K)[labels]
    mx, mt = lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]
    want = np.mean(-np.sum(mt * np.log(softmax(mx @ W + b)), 1))
    assert float(loss) == pytest.approx(want, rel=1e-5) and float(terms["warmup_loss"]) == pytest.approx(want, rel=1e-5)


def test_warmup_is_ce_plus_penalty_for_asym():
    method, labels = toy_method(warmup_epochs=2, noise_mode="asym")
    x = np.random.default_rng(2).normal(size=(N, D)).astype(np.float32)
    loss, terms = method.train_step(batch_of(x, labels), epoch=1, step=0)
    net = method.networks["net"]
    z = paddle.to_tensor(x) @ net.fc.weight + net.fc.bias
    pz = softmax(z.numpy().astype(np.float64))
    ce = -np.mean(np.log(pz[np.arange(N), labels]))
    assert terms["warmup_loss"].item() == pytest.approx(ce, rel=1e-5)
    assert float(loss) == pytest.approx(ce + np.mean(np.sum(pz * np.log(pz), 1)), rel=1e-5)
    assert float(neg_entropy(paddle.zeros([2, K]))) == pytest.approx(-np.log(K), rel=1e-6)


def test_stays_in_warmup_until_a_division_exists():
    method, labels = toy_method(warmup_epochs=0)
    x = np.random.default_rng(3).normal(size=(N, D)).astype(np.float32)
    _, terms = method.train_step(batch_of(x, labels), epoch=5, step=0)
    assert "warmup_loss" in terms and "mean_w" not in terms  # no division yet: warm-up loss


@pytest.mark.parametrize("params,match", [
    ({"weighting": "hard"}, "^method.params.weighting: 'hard' is not allowed; choose one of: clean_prob, none$"),
    ({"T": -0.5}, r"^method.params.T: -0.5 is out of range; must be > 0.0$"),
    ({"mixup_alpha": -1.0}, r"method.params.mixup_alpha: -1.0 is out of range"),
    ({"warmup_epochs": -1}, r"^method.params.warmup_epochs: -1.0 is out of range; must be >= 0$"),
    ({"p_threshold": "0.5"}, r"^method.params.p_threshold: expected float, got '0.5' \(str\)$"),
])
def test_options_are_checked(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        toy_method(**params)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "gmm_correction", "*.yaml"))))
def test_every_config_builds_the_method(path):
    cfg = C.load(path)
    method, _ = toy_method(**cfg.method.params)
    assert cfg.method.name == "gmm_correction" and isinstance(method, GMMCorrectionMethod)


# ------------------------------------------------------------------------------------ division
def test_division_averages_the_loss_window_and_round_trips():
    rng = np.random.default_rng(0)
    noisy = rng.random(500) < 0.4
    div = Division()
    for epoch in range(3):
        losses = np.where(noisy, rng.normal(3, 0.5, 500), np.abs(rng.normal(0, 0.3, 500)))
        div.update(losses, window=2, seed=derive_seed(0, epoch, 0))
    assert len(div.history) == 2 and div.prob.dtype == np.float32
    assert np.mean((div.prob > 0.5) == ~noisy) > 0.97
    back = Division.from_state(div.state_dict())
    np.testing.assert_array_equal(back.prob, div.prob)
    assert len(back.history) == 2 and derive_seed(0, 1, 0) != derive_seed(0, 1, 1)


def test_per_class_division_keeps_a_class_a_biased_network_makes_look_noisy():
    """Every class-1 loss is above every class-0 loss (a network leaning to class 0): the global mixture marks
    (almost) the whole class 1 noisy, the per-class one finds the planted flips inside each class."""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 400)
    noisy = rng.random(800) < 0.3
    losses = np.where(noisy, rng.normal(1.0, 0.05, 800), np.abs(rng.normal(0.2, 0.05, 800)))
    losses[labels == 1] += 1.5
    glob_div, per_class = Division(), Division()
    glob_div.update(losses, window=1, seed=0)
    per_class.update(losses, window=1, seed=0, labels=labels)
    assert np.mean(glob_div.prob[labels == 1] > 0.5) < 0.05  # class 1 emptied
    assert abs(np.mean(per_class.prob[labels == 1] > 0.5) - np.mean(~noisy[labels == 1])) < 0.03
    assert np.mean((per_class.prob > 0.5) == ~noisy) > 0.97
    # a class of one sample has no mixture: it counts as clean; the normalised history is per class
    single = Division()
    single.update(np.array([0.1, 0.2, 2.0, 2.1, 5.0]), window=1, seed=0, labels=np.array([0, 0, 1, 1, 2]))
    assert single.prob[4] == 1.0
    np.testing.assert_allclose(single.history[-1], [0, 1, 0, 1, 0], atol=1e-6)


def test_per_class_division_runs_end_to_end(tmp_path):
    """method.params.division is checked, reaches the division (per-class mixtures) and the run trains."""
    with pytest.raises(ValueError, match="^method.params.division: 'classwise' is not allowed; choose one of: "
                                         "global, per_class$"):
        toy_method(division="classwise")
    with paddle.utils.unique_name.guard():
        summary = run_mod.train(digits_cfg(tmp_path / "r", "train.epochs=2", "method.params.division=per_class",
                                           "train.checkpoint_every=0"))
    table = np.load(tmp_path / "r" / "train_labels.npy")
    row = summary["history"][1]
    assert row["select/precision"] > 1.0 - (table["label"] != table["clean_label"]).mean()  # better than chance


# ------------------------------------------------------------------------------------ end to end
def digits_cfg(out, *extra):
    return C.load(os.path.join(CONFIGS, "gmm_correction", "digits.yaml"),
                  FAST + ["train.epochs=2", "method.params.warmup_epochs=1", f"output_dir={out}", *extra])


def test_two_epochs_resume_and_division_quality(tmp_path):
    with paddle.utils.unique_name.guard():
        full = run_mod.train(digits_cfg(tmp_path / "full"))
    rows = full["history"]
    for key in ("noise/rate_gmm", "select/labeled_ratio", "select/precision", "select/recall", "time/gmm_s"):
        assert key in rows[0] and key in rows[1], key
    assert "train/mean_w" in rows[1]
    assert json.loads((tmp_path / "full" / "metrics.json").read_text())["epochs_run"] == 2
    state = load_checkpoint(str(tmp_path / "full" / "checkpoints" / "latest.pdckpt"))
    (div,) = state["method"]["divisions"]
    prob = div["prob"]
    assert prob.shape == (300,) and prob.min() >= 0 and prob.max() <= 1
    table = np.load(tmp_path / "full" / "train_labels.npy")
    noisy = table["label"] != table["clean_label"]
    assert noisy[prob < 0.5].mean() > 1.5 * noisy.mean()
    assert prob[~noisy].mean() > prob[noisy].mean() + 0.3

    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(digits_cfg(tmp_path / "resumed"),
                                resume=str(tmp_path / "full" / "checkpoints" / "epoch_001.pdckpt"))
    assert_same_final(full, resumed)
    state_b = load_checkpoint(str(tmp_path / "resumed" / "checkpoints" / "latest.pdckpt"))
    np.testing.assert_allclose(prob, state_b["method"]["divisions"][0]["prob"], atol=1e-6)
    for key, v in state["networks"]["net"].items():
        np.testing.assert_allclose(np.asarray(v), np.asarray(state_b["networks"]["net"][key]), atol=1e-6)


def test_no_warmup_divides_before_the_first_epoch(tmp_path):
    with paddle.utils.unique_name.guard():
        summary = run_mod.train(digits_cfg(tmp_path / "r", "train.epochs=1", "method.params.warmup_epochs=0"))
    (row,) = summary["history"]
    assert "train/mean_w" in row and "train/warmup_loss" not in row  # trained on a division from epoch 1
    assert 0.0 <= row["noise/rate_gmm"] <= 1.0
