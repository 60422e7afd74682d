"""forward_correction: the corrected loss against NumPy, the T estimators and loaders, end-to-end runs."""

import json
import os

import numpy as np
import paddle
import pytest
from method_helpers import assert_same_final, build_method, softmax, toy_context

from robust_paddle import config as C
from robust_paddle.data.noise import apply_transition, pair_matrix, realised_matrix, symmetric_matrix
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.errors import ConfigError
from robust_paddle.methods.forward_correction import (
    ForwardCorrectionMethod,
    anchor_transition,
    dominance_failure,
    forward_loss,
    load_transition,
    smooth_transition,
)
from robust_paddle.pipeline import run as run_mod
from robust_paddle.quality.estimation import estimate_noise_matrix

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
FAST = ["data.subset=300", "train.progress=false", "train.visualdl=false", "model.name=mlp",
        "data.batch_size=32", "train.checkpoint_every=1"]
D, K = 4, 3


def toy_method(**params):
    return build_method(ForwardCorrectionMethod, toy_context([0, 1, 2, 0], dim=D, classes=K, seed=3), **params)


def test_forward_loss_matches_numpy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, K)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0])
    t = pair_matrix(K, 0.3).astype(np.float32)
    got = forward_loss(paddle.to_tensor(z), paddle.to_tensor(y), paddle.to_tensor(t)).numpy()
    p = softmax(z.astype(np.float64))
    want = -np.log((p @ t)[np.arange(5), y])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # identity T is plain cross-entropy
    ident = forward_loss(paddle.to_tensor(z), paddle.to_tensor(y), paddle.eye(K)).numpy()
    np.testing.assert_allclose(ident, -np.log(p[np.arange(5), y]), rtol=1e-5)


def test_step_uses_given_transition_from_the_start():
    t = symmetric_matrix(K, 0.2)
    method = toy_method(transition=t.tolist())
    x = np.random.default_rng(1).normal(size=(4, D)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    batch = (paddle.to_tensor(x), paddle.to_tensor(y), paddle.arange(4))
    loss, terms = method.train_step(batch, epoch=0, step=0)
    net = method.networks["net"]
    z = x @ net.fc.weight.numpy() + net.fc.bias.numpy()
    p = softmax(z.astype(np.float64))
    assert float(loss) == pytest.approx(float(np.mean(-np.log((p @ t)[np.arange(4), y]))), rel=1e-5)
    assert terms["warmup"] == 0.0


def test_auto_warms_up_with_the_run_loss():
    method = toy_method()
    assert method.t is None
    x = np.ones((2, D), np.float32)
    loss, terms = method.train_step((paddle.to_tensor(x), paddle.to_tensor([0, 1]), paddle.arange(2)), epoch=0,
                                    step=0)
    z = paddle.to_tensor(x) @ method.networks["net"].fc.weight + method.networks["net"].fc.bias
    want = paddle.nn.functional.cross_entropy(z, paddle.to_tensor([0, 1])).numpy()
    assert terms["warmup"] == 1.0 and float(loss) == pytest.approx(float(want), rel=1e-6)


def test_anchor_points_recover_t_from_ideal_posteriors():
    # noisy posteriors of samples whose clean posterior is one-hot are exactly rows of T
    t = pair_matrix(4, 0.35)
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 4, 400)
    soft = rng.dirichlet(np.ones(4) * 0.3, 400)  # ambiguous samples: mixtures of rows
    mix = np.where(rng.random(400)[:, None] < 0.5, np.eye(4)[clean], soft)
    probs = mix @ t
    np.testing.assert_allclose(anchor_transition(probs, quantile=1.0), t, atol=1e-9)
    est = anchor_transition(probs, quantile=0.97)
    assert np.abs(est - t).max() < 0.05 and np.allclose(est.sum(1), 1.0)
    with pytest.raises(ValueError, match="quantile must be in"):
        anchor_transition(probs, quantile=0.0)


def test_load_transition_sources_and_errors(tmp_path):
    t = pair_matrix(K, 0.4)
    np.save(tmp_path / "t.npy", t)
    (tmp_path / "t.json").write_text(json.dumps({"transition": t.tolist()}))
    np.savetxt(tmp_path / "t.csv", t, delimiter=",")
    (tmp_path / "label_issues_summary.json").write_text(json.dumps({"estimated_noise_matrix": t.tolist(), "x": 1}))
    for name in ("t.npy", "t.json", "t.csv", "label_issues_summary.json"):
        np.testing.assert_allclose(load_transition(str(tmp_path / name), K), t)
    with pytest.raises(ValueError, match="method.params.transition: 'nope.npy' is neither 'auto' nor an existing"):
        load_transition("nope.npy", K)
    (tmp_path / "other.json").write_text(json.dumps({"matrix": t.tolist()}))
    with pytest.raises(ValueError, match="has none of the entries transition, estimated_noise_matrix, transition_matrix"):
        load_transition(str(tmp_path / "other.json"), K)
    (tmp_path / "t.txt").write_text("1")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_transition(str(tmp_path / "t.txt"), K)
    with pytest.raises(ValueError, match=r"method.params.transition: transition matrix must be square \[C, C\] \(C=3\)"):
        load_transition(np.eye(2).tolist(), K)
    with pytest.raises(ValueError, match="each row must sum to 1"):
        load_transition([[0.5, 0.2, 0.2], [0, 1, 0], [0, 0, 1]], K)


@pytest.mark.parametrize("params,match", [
    ({"estimator": "median"}, r"^method.params.estimator: 'median' is not allowed; choose one of: anchor, confident_joint$"),
    ({"warmup_epochs": 0}, r"^method.params.warmup_epochs: 0.0 is out of range; must be > 0$"),
    ({"anchor_quantile": 1.5}, r"method.params.anchor_quantile: 1.5 is out of range"),
    ({"reinit": "yes"}, r"method.params.reinit: expected bool"),
    ({"identity_weight": 1.5}, r"method.params.identity_weight: 1.5 is out of range"),
    ({"identity_weight": -0.1}, r"method.params.identity_weight: -0.1 is out of range"),
    ({"require_dominant": "no"}, r"method.params.require_dominant: expected bool"),
])
def test_options_are_checked(params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        toy_method(**params)


def test_config_builds_the_method():
    cfg = C.load(os.path.join(CONFIGS, "forward_correction", "digits.yaml"))
    assert cfg.method.name == "forward_correction"
    assert isinstance(toy_method(**cfg.method.params), ForwardCorrectionMethod)


def digits_cfg(out, *extra):
    return C.load(os.path.join(CONFIGS, "forward_correction", "digits.yaml"),
                  FAST + ["train.epochs=3", "method.params.warmup_epochs=1", f"output_dir={out}", *extra])


def test_without_restart_the_fresh_network_continues_the_schedule(tmp_path):
    """restart_schedule: false (the behaviour before the restart; 2-7 points better on the 20-epoch digits grid):
    no lr/restart, the cosine goes on."""
    with paddle.utils.unique_name.guard():
        rows = run_mod.train(digits_cfg(tmp_path / "run", "method.params.require_dominant=false",
                                        "method.params.restart_schedule=false"))["history"]
    assert all("lr/restart" not in r for r in rows) and rows[1]["train/warmup"] == 0.0
    base = 0.05  # _base_/digits.yaml optimizer.lr, cosine to 0 stepped per batch over all 3 epochs
    assert rows[1]["train/lr"] == pytest.approx(base * (1 + np.cos(2 * np.pi / 3)) / 2, rel=0.02)


def test_auto_estimates_resumes_and_reports(tmp_path):
    # a 1-epoch warm-up's estimate of pair-45 noise need not be diagonally dominant: the guard is off here
    guard_off = ["method.params.require_dominant=false", "method.params.restart_schedule=true"]
    with paddle.utils.unique_name.guard():
        full = run_mod.train(digits_cfg(tmp_path / "full", *guard_off))
    rows = full["history"]
    assert "noise/rate_t" not in rows[0] and rows[0]["train/warmup"] == 1.0
    assert rows[1]["train/warmup"] == 0.0 and 0.0 <= rows[1]["noise/rate_t"] <= 1.0
    assert rows[1]["noise/rate_true"] == pytest.approx(0.45, abs=0.01)  # exact pair-45 sampling
    # the re-initialised network gets the whole cosine schedule over the 2 remaining epochs (not its tail)
    assert "lr/restart" not in rows[0] and rows[1]["lr/restart"] == 1.0
    base = 0.05  # _base_/digits.yaml optimizer.lr, cosine to 0 stepped per batch
    assert rows[0]["train/lr"] == pytest.approx(base * (1 + np.cos(np.pi / 3)) / 2, rel=0.02)  # 1 of 3 epochs
    assert rows[1]["train/lr"] == pytest.approx(base / 2, rel=0.02)  # 1 of the 2 epochs after the restart
    saved = json.loads((tmp_path / "full" / "transition.json").read_text())
    t = np.asarray(saved["transition"])
    assert t.shape == (10, 10) and np.allclose(t.sum(1), 1.0) and saved["estimator"] == "confident_joint"  # the digits preset
    assert saved["t_error"] == pytest.approx(rows[1]["noise/t_error"])
    assert (tmp_path / "full" / "label_issues.csv").is_file() and (tmp_path / "full" / "noise_matrix.png").is_file()
    state = load_checkpoint(str(tmp_path / "full" / "checkpoints" / "latest.pdckpt"))
    np.testing.assert_allclose(np.asarray(state["method"]["transition"]), t)

    # resume from the warm-up checkpoint: the estimate and the re-initialisation happen again, identically
    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(digits_cfg(tmp_path / "resumed", *guard_off),
                                resume=str(tmp_path / "full" / "checkpoints" / "epoch_001.pdckpt"))
    assert_same_final(full, resumed)


def test_warmup_as_a_fraction_and_no_training_after_warmup(tmp_path):
    cfg = C.load(os.path.join(CONFIGS, "forward_correction", "digits.yaml"), ["train.epochs=10",
                                                                             "method.params.warmup_epochs=0.3"])
    ctx = toy_context([0, 1, 2, 0], dim=D, classes=K, seed=3, overrides=["train.epochs=10"])
    assert ForwardCorrectionMethod(ctx, **{**cfg.method.params}).warmup_epochs == 3
    short = toy_context([0, 1, 2, 0], dim=D, classes=K, seed=3, overrides=["train.epochs=5"])
    with pytest.raises(ValueError, match=r"method.params.warmup_epochs=5 leaves method 'forward_correction' no "
                                         r"training after the warm-up that estimates T with train.epochs=5"):
        ForwardCorrectionMethod(short, warmup_epochs=5)
    assert ForwardCorrectionMethod(short, warmup_epochs=5, transition=pair_matrix(K, 0.2).tolist()).t is not None


def test_known_transition_beats_ce_on_pair_noise(tmp_path):
    # the corrected loss with the true T vs plain CE, same data and budget (45% pair noise, 300 samples)
    t = pair_matrix(10, 0.45)
    np.save(tmp_path / "t.npy", t)
    extra = ["train.epochs=12", "train.report=false", "train.checkpoint_every=0", "model.name=small_cnn"]
    with paddle.utils.unique_name.guard():
        fc = run_mod.train(digits_cfg(tmp_path / "fc", *extra, f"method.params.transition={tmp_path / 't.npy'}"))
    with paddle.utils.unique_name.guard():
        ce = run_mod.train(digits_cfg(tmp_path / "ce", *extra, "method.name=standard", "method.params={}"))
    assert fc["final"]["test/acc"] > ce["final"]["test/acc"] + 0.1


def test_exact_pair_noise_gives_each_class_the_nominal_rate():
    clean = np.repeat(np.arange(10), 125)
    noisy = apply_transition(clean, pair_matrix(10, 0.45), seed=0)
    rates = [np.mean(noisy[clean == c] != c) for c in range(10)]
    assert max(abs(r - 0.45) for r in rates) <= 1 / 125


# ------------------------------------------------------------------ estimates from a weak warm-up network
def synthetic_posteriors(t, *, n=3000, sharpness=1.0, seed=0):
    """Clean labels, noisy labels drawn through ``t`` and the noisy-label posteriors a network would learn:
    clean posteriors (near one-hot ``sharpness`` of the time, else a Dirichlet mixture) pushed through ``t``."""
    rng = np.random.default_rng(seed)
    c = t.shape[0]
    clean = rng.integers(0, c, n)
    soft = rng.dirichlet(np.ones(c), n)
    post = np.where(rng.random(n)[:, None] < sharpness, 0.97 * np.eye(c)[clean] + 0.03 * soft, soft)
    noisy = apply_transition(clean, t, seed=seed)  # exact: each class flipped at the nominal rate
    return clean, noisy, post @ t


@pytest.mark.parametrize("t", [symmetric_matrix(10, 0.4), pair_matrix(10, 0.45)], ids=["sym40", "pair45"])
def test_both_estimators_recover_a_known_t(t):
    clean, noisy, probs = synthetic_posteriors(t, sharpness=0.8)
    truth = realised_matrix(clean, noisy, 10)
    cj = estimate_noise_matrix(noisy, probs)
    anchor = anchor_transition(probs, quantile=0.97)
    assert np.abs(cj - truth).mean() < 0.02 and np.abs(anchor - truth).mean() < 0.02
    assert dominance_failure(cj) is None and dominance_failure(anchor) is None


def test_a_weak_network_overstates_the_noise_and_smoothing_corrects_it():
    # posteriors of an under-trained network (mostly mixtures): the confident joint's diagonal falls below the
    # true 0.6; shrinking toward I by w brings it back (what identity_weight is for)
    t = symmetric_matrix(10, 0.4)
    clean, noisy, probs = synthetic_posteriors(t, sharpness=0.0, seed=1)
    flat = 0.5 * probs + 0.5 / 10  # a flatter softmax than even the noisy posterior
    truth = realised_matrix(clean, noisy, 10)
    est = estimate_noise_matrix(noisy, flat)
    assert np.diag(est).mean() < np.diag(truth).mean() - 0.1
    shrunk = smooth_transition(est, 0.3)
    np.testing.assert_allclose(shrunk, 0.7 * est + 0.3 * np.eye(10))
    assert np.abs(shrunk - truth).mean() < np.abs(est - truth).mean()
    np.testing.assert_allclose(shrunk.sum(1), 1.0)
    np.testing.assert_allclose(smooth_transition(est, 1.0), np.eye(10))


def test_dominance_failure_names_the_row():
    assert dominance_failure(pair_matrix(4, 0.45)) is None
    assert dominance_failure(np.eye(3)) is None
    bad = np.array([[0.6, 0.4, 0.0], [0.1, 0.3, 0.6], [0.0, 0.5, 0.5]])
    assert dominance_failure(bad) == "row 1: T[1, 1] = 0.30 <= T[1, 2] = 0.60 (and 1 more row(s))"
    assert dominance_failure(pair_matrix(4, 0.5)) == "row 0: T[0, 0] = 0.50 <= T[0, 1] = 0.50 (and 3 more row(s))"


def test_a_refused_estimate_keeps_the_warmup_loss_and_is_tried_again(tmp_path, monkeypatch, caplog):
    from robust_paddle.methods import forward_correction as fc

    bad = pair_matrix(10, 0.6)  # more mass off the diagonal than on it: refused
    calls = []

    def estimates(labels, probs):
        calls.append(len(labels))
        return bad if len(calls) == 1 else symmetric_matrix(10, 0.3)

    monkeypatch.setattr(fc, "estimate_noise_matrix", estimates)
    with caplog.at_level("INFO", logger="robust_paddle.methods.forward_correction"):
        with paddle.utils.unique_name.guard():
            out = run_mod.train(digits_cfg(tmp_path / "run", "train.epochs=4", "method.params.reinit=false",
                                           "method.params.identity_weight=0.5", "train.report=false"))
    rows = out["history"]
    assert [r["train/warmup"] for r in rows] == [1.0, 1.0, 0.0, 0.0]  # epoch 1 refused, epoch 2 accepted
    assert len(calls) == 2
    refused = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refused) == 1 and refused[0].startswith(
        "forward_correction: the T estimated (confident_joint) after 1 epochs is refused -- its diagonal does not "
        "dominate (row 0: T[0, 0] = 0.40 <= T[0, 1] = 0.60 (and 9 more row(s))")
    assert "Training goes on with plain ce; trying again next epoch" in refused[0]
    saved = json.loads((tmp_path / "run" / "transition.json").read_text())
    assert saved["accepted"] is True and saved["refused"] == 1.0 and saved["epoch"] == 2.0
    np.testing.assert_allclose(np.asarray(saved["transition"]), 0.5 * symmetric_matrix(10, 0.3) + 0.5 * np.eye(10))
    assert "noise/rate_t" not in rows[1] and "noise/rate_t" in rows[2]


def test_a_run_whose_estimate_is_never_accepted_is_a_plain_loss_run(tmp_path, monkeypatch, caplog):
    from robust_paddle.methods import forward_correction as fc

    monkeypatch.setattr(fc, "estimate_noise_matrix", lambda labels, probs: pair_matrix(10, 0.6))
    with caplog.at_level("WARNING", logger="robust_paddle.methods.forward_correction"):
        with paddle.utils.unique_name.guard():
            out = run_mod.train(digits_cfg(tmp_path / "run", "train.report=false"))  # 3 epochs, warm-up 1
    assert [r["train/warmup"] for r in out["history"]] == [1.0, 1.0, 1.0]
    refused = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refused) == 2 and "this was the last chance, the run is a plain ce run" in refused[1]
    saved = json.loads((tmp_path / "run" / "transition.json").read_text())
    assert saved["accepted"] is False and saved["refused"] == 2 and saved["reason"].startswith("row 0:")
    state = load_checkpoint(str(tmp_path / "run" / "checkpoints" / "latest.pdckpt"))
    assert state["method"]["transition"] is None and state["method"]["refused"] == 2
    # with the guard off the same estimate is used as it is
    with paddle.utils.unique_name.guard():
        off = run_mod.train(digits_cfg(tmp_path / "off", "train.report=false", "method.params.require_dominant=false"))
    assert [r["train/warmup"] for r in off["history"]] == [1.0, 0.0, 0.0]


def test_shipped_forward_configs_build_with_the_guards():
    for name in ("digits", "mnist", "cifar10"):
        cfg = C.load(os.path.join(CONFIGS, "forward_correction", f"{name}.yaml"), ["train.epochs=6"])
        method = toy_method(**cfg.method.params)
        assert method.require_dominant is True and 0.0 <= method.identity_weight < 1.0


def test_anchor_filter_matches_the_reference_and_survives_tied_top_values():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 400)
    ref = np.empty((4, 4))
    for i in range(4):  # Patrini et al.'s code: drop values >= the 97th percentile ('higher'), take the arg-max
        col = probs[:, i].copy()
        col[col >= np.percentile(col, 97, method="higher")] = 0.0
        ref[i] = probs[np.argmax(col)]
    np.testing.assert_allclose(anchor_transition(probs, quantile=0.97), ref / ref.sum(1, keepdims=True))
    # half the samples saturated at exactly 0.98 for their class: the anchor is one of them, not another class
    labels = np.repeat([0, 1], 30)
    sat = np.full((60, 3), 0.01)
    sat[np.arange(60), labels] = 0.98
    t = anchor_transition(sat, quantile=0.97)
    np.testing.assert_allclose(t[:2], sat[[0, 30]])


@pytest.mark.parametrize("epochs,done,expected", [(20, 5, False), (2, 1, True), (6, 2, False), (6, 3, True),
                                                  (3, 1, False)])
def test_auto_restarts_the_schedule_only_after_a_warm_up_of_half_the_run_or_more(epochs, done, expected):
    cfg = C.load(os.path.join(CONFIGS, "forward_correction", "digits.yaml"), [f"train.epochs={epochs}"])
    ctx = toy_context([0, 1, 2, 0], dim=D, classes=K, seed=3, overrides=[f"train.epochs={epochs}"])
    m = build_method(ForwardCorrectionMethod, ctx, **{**cfg.method.params, "warmup_epochs": 1})
    assert m.restart_schedule == "auto" and m.restarts_schedule(done) is expected
    for fixed in (True, False):
        m.restart_schedule = fixed
        assert m.restarts_schedule(done) is fixed
    with pytest.raises(ConfigError, match=r"method.params.restart_schedule"):
        build_method(ForwardCorrectionMethod, ctx, restart_schedule="sometimes")


@pytest.mark.parametrize("epochs,warmup,restarts", [(3, 1, False), (4, 2, True)])
def test_auto_counts_the_warm_up_epochs_done_at_the_re_initialisation(tmp_path, epochs, warmup, restarts):
    """restart_schedule: auto in a real run: the network re-initialised after a 2-epoch warm-up restarts the schedule
    in a 4-epoch run (half of it), after a 1-epoch one in a 3-epoch run (a third) it does not; a run resumed after
    the re-initialisation epoch follows the same schedule and ends identically."""
    extra = ["method.params.require_dominant=false", f"train.epochs={epochs}", f"method.params.warmup_epochs={warmup}"]
    with paddle.utils.unique_name.guard():
        full = run_mod.train(digits_cfg(tmp_path / "full", *extra))
    rows = full["history"]
    assert rows[warmup]["train/warmup"] == 0.0 and ("lr/restart" in rows[warmup]) is restarts
    assert all("lr/restart" not in r for i, r in enumerate(rows) if i != warmup)
    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(digits_cfg(tmp_path / "resumed", *extra),
                                resume=str(tmp_path / "full" / "checkpoints" / f"epoch_{warmup + 1:03d}.pdckpt"))
    assert_same_final(full, resumed)
    assert [r["train/lr"] for r in resumed["history"]] == pytest.approx([r["train/lr"] for r in rows])


@pytest.mark.parametrize("params,what", [({"reinit": False}, "reinit: false"),
                                         ({"transition": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]},
                                          "a given transition")])
@pytest.mark.parametrize("value", [True, False])
def test_an_explicit_restart_schedule_that_could_not_apply_is_refused(params, what, value):
    ctx = toy_context([0, 1, 2, 0], dim=D, classes=K, seed=3, overrides=["train.epochs=4"])
    with pytest.raises(ConfigError, match=rf"method.params.restart_schedule={value}: .*this run has {what}"):
        build_method(ForwardCorrectionMethod, ctx, warmup_epochs=1, restart_schedule=value, **params)
    assert build_method(ForwardCorrectionMethod, ctx, warmup_epochs=1, **params).restart_schedule == "auto"
