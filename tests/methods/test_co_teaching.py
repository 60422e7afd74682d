"""Co-teaching, Co-teaching+ and JoCoR: step losses against NumPy references, forget_rate auto, options,
and end-to-end runs on noisy digits that resume exactly."""

import glob
import json
import os

import numpy as np
import paddle
import pytest
from method_helpers import build_method, log_softmax, log_trainer, softmax, toy_context

from robust_paddle import config as C
from robust_paddle.config import run_epochs
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.errors import ConfigError
from robust_paddle.losses import build_loss
from robust_paddle.methods.co_teaching import (
    CoTeachingMethod,
    CoTeachingPlusMethod,
    JoCoRMethod,
    co_teaching_losses,
    disagreement_indices,
    jocor_losses,
)
from robust_paddle.methods.forget_rate import MAX_AUTO_FORGET_RATE, AutoForgetRate, estimate_noise_rates
from robust_paddle.ops import symmetric_kl
from robust_paddle.optim import build_scheduler
from robust_paddle.pipeline import run as run_mod
from robust_paddle.pipeline.build import build_run
from robust_paddle.registry import METHODS, check_kwargs

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
FAST = ["data.subset=400", "train.progress=false", "train.visualdl=false", "train.report=false",
        "train.calibration=false", "model.name=mlp", "data.batch_size=50", "train.checkpoint_every=1"]


def tensor(a, dtype="float32", grad=False):
    return paddle.to_tensor(np.asarray(a), dtype=dtype, stop_gradient=not grad)


# --------------------------------------------------------------------------------- pure step losses
def test_each_network_is_updated_on_the_other_networks_selection():
    l1 = tensor([0.1, 0.9, 0.2, 0.8, 0.3, 0.7], grad=True)  # network 1 trusts samples 0, 2, 4
    l2 = tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3], grad=True)  # network 2 trusts samples 1, 3, 5
    loss1, loss2, pick1, pick2 = co_teaching_losses(l1, l2, keep_ratio=0.5)
    np.testing.assert_array_equal(pick1.numpy(), [0, 2, 4])
    np.testing.assert_array_equal(pick2.numpy(), [1, 3, 5])
    assert float(loss1) == pytest.approx((0.9 + 0.8 + 0.7) / 3)  # l1 on network 2's picks
    assert float(loss2) == pytest.approx((0.9 + 0.8 + 0.7) / 3)  # l2 on network 1's picks
    (loss1 + loss2).backward()
    np.testing.assert_allclose(l1.grad.numpy(), [0, 1 / 3, 0, 1 / 3, 0, 1 / 3], atol=1e-7)
    np.testing.assert_allclose(l2.grad.numpy(), [1 / 3, 0, 1 / 3, 0, 1 / 3, 0], atol=1e-7)


def test_symmetric_kl_and_jocor_loss_match_numpy():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(9, 4)), rng.normal(size=(9, 4)) * 2
    y = rng.integers(0, 4, 9)
    p1, p2 = softmax(z1), softmax(z2)
    kl_ref = np.sum(p2 * (np.log(p2) - np.log(p1)), 1) + np.sum(p1 * (np.log(p1) - np.log(p2)), 1)
    np.testing.assert_allclose(symmetric_kl(tensor(z1), tensor(z2), reduction="none").numpy(), kl_ref, rtol=1e-5)
    ce1, ce2 = -log_softmax(z1)[np.arange(9), y], -log_softmax(z2)[np.arange(9), y]
    lam, keep = 0.7, 0.6
    joint = (1 - lam) * (ce1 + ce2) + lam * kl_ref
    k = 5  # floor(0.6 * 9 + 0.5)
    ref_pick = np.argsort(joint, kind="stable")[:k]
    t1, t2 = tensor(z1, grad=True), tensor(z2, grad=True)
    ce = build_loss("ce", num_classes=4, reduction="none")
    loss, pick, kl = jocor_losses(t1, t2, ce(t1, tensor(y, "int64")), ce(t2, tensor(y, "int64")), co_lambda=lam,
                                  keep_ratio=keep)
    np.testing.assert_array_equal(pick.numpy(), ref_pick)
    assert float(loss) == pytest.approx(joint[ref_pick].mean(), rel=1e-5)
    np.testing.assert_allclose(kl.numpy(), kl_ref, rtol=1e-5)
    loss.backward()  # one shared loss reaches both networks' logits, only through the kept rows
    for t in (t1, t2):
        g = np.abs(t.grad.numpy()).sum(1)
        assert np.all(g[ref_pick] > 0) and np.all(g[np.setdiff1d(np.arange(9), ref_pick)] == 0)


def test_disagreement_indices():
    z1 = tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    z2 = tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(disagreement_indices(z1, z2), [0])


# -------------------------------------------------------------------------------- methods on a toy batch
D, K, N = 5, 3, 10


def toy(cls, *, clean=None, epochs=30, **params):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    ctx = toy_context(labels, dim=D, classes=K, seed=3, overrides=[f"train.epochs={epochs}"], clean=clean)
    paddle.seed(3)  # the networks' initial weights do not depend on the tests that ran before
    return build_method(cls, ctx, **params), labels


def numpy_ce(net, x, y):
    z = x @ net.fc.weight.numpy().astype(np.float64) + net.fc.bias.numpy().astype(np.float64)
    return z, -log_softmax(z)[np.arange(len(y)), y]


def batch(labels, seed=1):
    x = np.random.default_rng(seed).normal(size=(N, D)).astype(np.float32)
    return x, (tensor(x), tensor(labels, "int64"), tensor(np.arange(N), "int64"))


def test_co_teaching_step_uses_the_other_networks_selection():
    clean = np.array([0, 1, 2, 0, 1, 2, 1, 2, 0, 1])  # samples 6..9 are mislabelled
    method, labels = toy(CoTeachingMethod, clean=clean, forget_rate=0.4, num_gradual=4)
    x, b = batch(labels)
    epoch = 2  # keep ratio 1 - 0.4 * 2 / 4 = 0.8 -> 8 of 10
    assert method.keep_ratio(epoch) == pytest.approx(0.8)
    loss, terms = method.train_step(b, epoch=epoch, step=0)
    _, ce1 = numpy_ce(method.networks["net1"], x, labels)
    _, ce2 = numpy_ce(method.networks["net2"], x, labels)
    pick1, pick2 = np.argsort(ce1, kind="stable")[:8], np.argsort(ce2, kind="stable")[:8]
    assert terms["loss1"].item() == pytest.approx(ce1[pick2].mean(), rel=1e-5)
    assert terms["loss2"].item() == pytest.approx(ce2[pick1].mean(), rel=1e-5)
    assert float(loss) == pytest.approx(ce1[pick2].mean() + ce2[pick1].mean(), rel=1e-5)
    assert terms["keep_ratio"] == pytest.approx(0.8)
    ok = labels == clean
    assert terms["precision"] == pytest.approx((ok[pick1].sum() + ok[pick2].sum()) / 16)
    loss.backward()
    assert all(float(n.fc.weight.grad.abs().sum()) > 0 for n in method.networks.values())


def test_epoch_statistics_sum_over_batches():
    clean = np.array([0, 1, 2, 0, 1, 2, 1, 2, 0, 1])
    method, labels = toy(CoTeachingMethod, clean=clean, forget_rate=0.4, num_gradual=0)
    trainer = log_trainer(epoch=3)
    method.before_epoch(trainer)
    x = np.random.default_rng(5).normal(size=(N, D)).astype(np.float32)
    ok, tp, n_sel = labels == clean, 0, 0
    for part in (np.arange(0, 6), np.arange(6, 10)):  # two batches of 6 and 4 samples
        b = (tensor(x[part]), tensor(labels[part], "int64"), tensor(part, "int64"))
        method.train_step(b, epoch=3, step=0)
        ce = [numpy_ce(method.networks[k], x[part], labels[part])[1] for k in ("net1", "net2")]
        k = int(np.floor(0.6 * len(part) + 0.5))
        for c in ce:
            kept = part[np.argsort(c, kind="stable")[:k]]
            tp, n_sel = tp + ok[kept].sum(), n_sel + k
    method.after_epoch(trainer)
    s = trainer.epoch_scalars
    assert s["select/keep_ratio"] == pytest.approx(n_sel / 20) and s["select/target_keep_ratio"] == 0.6
    assert s["select/precision"] == pytest.approx(tp / n_sel)
    assert s["select/recall"] == pytest.approx(tp / (2 * ok.sum()))
    assert s["noise/forget_rate"] == 0.4 and "noise/rate_gmm" not in s
    want = (numpy_ce(method.networks["net1"], x, labels)[1] + numpy_ce(method.networks["net2"], x, labels)[1]) / 2
    # per-sample losses of the epoch; their presence also makes report.SampleStatsHook leave select/* alone
    np.testing.assert_allclose(trainer.epoch_histograms["samples/loss"], want, rtol=1e-5)


def test_co_teaching_plus_updates_only_on_disagreement():
    method, labels = toy(CoTeachingPlusMethod, forget_rate=0.5, num_gradual=0, init_epoch=1)
    x, b = batch(labels, seed=7)
    z1, ce1 = numpy_ce(method.networks["net1"], x, labels)
    z2, ce2 = numpy_ce(method.networks["net2"], x, labels)
    dis = np.flatnonzero(z1.argmax(1) != z2.argmax(1))
    assert 2 <= len(dis) < N  # the two random networks disagree on some samples (not all)
    loss, terms = method.train_step(b, epoch=1, step=0)
    k = int(np.floor(0.5 * len(dis) + 0.5))
    pick1 = dis[np.argsort(ce1[dis], kind="stable")[:k]]
    pick2 = dis[np.argsort(ce2[dis], kind="stable")[:k]]
    assert terms["loss1"].item() == pytest.approx(ce1[pick2].mean(), rel=1e-5)
    assert terms["loss2"].item() == pytest.approx(ce2[pick1].mean(), rel=1e-5)
    assert terms["disagree"] == pytest.approx(len(dis) / N)
    assert terms["keep_ratio"] == pytest.approx(k / N)
    # before init_epoch: plain Co-teaching on the whole batch
    loss0, terms0 = method.train_step(b, epoch=0, step=0)
    assert "disagree" not in terms0
    assert terms0["loss1"].item() == pytest.approx(ce1[np.argsort(ce2, kind="stable")[:5]].mean(), rel=1e-5)


def test_co_teaching_plus_without_disagreement_gives_a_zero_loss():
    method, labels = toy(CoTeachingPlusMethod, forget_rate=0.2, init_epoch=0)
    method.networks["net2"].set_state_dict(method.networks["net1"].state_dict())  # identical predictions
    _, b = batch(labels)
    loss, terms = method.train_step(b, epoch=3, step=0)
    assert float(loss) == 0.0 and terms["keep_ratio"] == 0.0 and terms["disagree"] == 0.0
    loss.backward()
    assert float(method.networks["net1"].fc.weight.grad.abs().sum()) == 0.0


def test_jocor_step_matches_numpy():
    method, labels = toy(JoCoRMethod, forget_rate=0.3, num_gradual=0, co_lambda=0.6)
    x, b = batch(labels, seed=2)
    loss, terms = method.train_step(b, epoch=0, step=0)
    z1, ce1 = numpy_ce(method.networks["net1"], x, labels)
    z2, ce2 = numpy_ce(method.networks["net2"], x, labels)
    p1, p2 = softmax(z1), softmax(z2)
    kl = np.sum((p1 - p2) * (np.log(p1) - np.log(p2)), 1)
    joint = 0.4 * (ce1 + ce2) + 0.6 * kl
    pick = np.argsort(joint, kind="stable")[:7]
    assert float(loss) == pytest.approx(joint[pick].mean(), rel=1e-5)
    for key, ref in (("loss1", ce1), ("loss2", ce2), ("kl", kl)):
        assert terms[key].item() == pytest.approx(ref[pick].mean(), rel=1e-5)
    assert terms["keep_ratio"] == pytest.approx(0.7) and "precision" not in terms


@pytest.mark.parametrize("cls, params, exc, match", [
    (CoTeachingMethod, {"forget_rate": 1.0}, ConfigError,
     r"^method.params.forget_rate: 1.0 is out of range; must be < 1.0 and >= 0.0$"),
    (CoTeachingMethod, {"forget_rate": "half"}, ValueError, r"forget_rate: 'half' is neither a number in \[0, 1\), 'auto', nor an existing noise_estimate.json"),
    (CoTeachingMethod, {"num_gradual": -1}, ConfigError, r"^method.params.num_gradual: -1.0 is out of range; must be >= 0$"),
    (JoCoRMethod, {"exponent": 0.0}, ConfigError, r"^method.params.exponent: 0.0 is out of range; must be > 0.0$"),
    (CoTeachingMethod, {"estimate_epoch": 0}, ConfigError, r"^method.params.estimate_epoch: 0.0 is out of range; must be > 0$"),
    (CoTeachingMethod, {"estimate_epoch": 2.5}, ConfigError, r"^method.params.estimate_epoch: 2.5 is not allowed; expected a "
                                                             r"whole number of epochs or a fraction of the run in \(0, 1\)$"),
    (CoTeachingPlusMethod, {"init_epoch": -2}, ConfigError, r"^method.params.init_epoch: -2.0 is out of range; must be >= 0$"),
    (JoCoRMethod, {"co_lambda": 1.5}, ConfigError, r"^method.params.co_lambda: 1.5 is out of range; must be <= 1.0 and >= 0.0$"),
])
def test_options_are_checked(cls, params, exc, match):
    with pytest.raises(exc, match=match):
        toy(cls, **params)


def test_unknown_option_names_the_field(tmp_path):
    cfg = C.load(os.path.join(CONFIGS, "co_teaching", "jocor_digits.yaml"),
                 FAST + [f"output_dir={tmp_path}", "method.params.lambda=0.9"])
    with pytest.raises(ValueError, match=r"method.params: unknown key\(s\) lambda for method 'jocor'; allowed: "
                                         r"forget_rate, num_gradual, exponent, estimate_epoch, co_lambda"):
        build_run(cfg, output_dir=str(tmp_path))


# ---------------------------------------------------------------------------------- forget_rate auto
def test_estimate_noise_rates_on_synthetic_logits():
    rng = np.random.default_rng(0)
    n, c, rate = 3000, 5, 0.3
    true = rng.integers(0, c, n)
    logits = 4.0 * np.eye(c)[true] + rng.normal(0, 0.7, (n, c))  # a model that predicts the true class
    flip = rng.random(n) < rate
    given = np.where(flip, (true + rng.integers(1, c, n)) % c, true)
    est = estimate_noise_rates(logits, given, seed=0)
    assert est["rate_gmm"] == pytest.approx(rate, abs=0.05) and est["rate_cj"] == pytest.approx(rate, abs=0.05)
    assert est["forget_rate"] == pytest.approx((est["rate_gmm"] + est["rate_cj"]) / 2)
    with pytest.raises(ValueError, match=r"logits must be \[N, C\] and labels \[N\], got shapes \[3000, 5\] and \[2\]"):
        estimate_noise_rates(logits, given[:2])


def test_auto_forget_rate_state_round_trip_and_cap():
    sched = AutoForgetRate("auto", num_gradual=10, exponent=1.0, estimate_epoch=2, epochs=20, where="m")
    assert sched.forget_rate == 0.0 and sched.keep_ratio(7) == 1.0  # not estimated yet: keep everything
    sched.tau, sched.estimate = 0.4, {"rate_gmm": 0.45, "rate_cj": 0.35, "forget_rate": 0.4, "epoch": 2.0}
    other = AutoForgetRate("auto", num_gradual=10, exponent=1.0, estimate_epoch=2, epochs=20, where="m")
    other.set_state_dict(sched.state_dict())
    assert other.keep_ratio(5) == pytest.approx(0.8)
    assert other.scalars() == {"noise/forget_rate": 0.4, "noise/rate_gmm": 0.45, "noise/rate_cj": 0.35}
    fixed = AutoForgetRate(0.25, num_gradual=5, exponent=1.0, estimate_epoch=1, epochs=20, where="m")
    assert fixed.state_dict() == {} and fixed.keep_ratio(5) == pytest.approx(0.75)
    assert MAX_AUTO_FORGET_RATE < 1.0


def test_forget_rate_auto_lands_near_the_injected_rate(tmp_path):
    """Digits, 40% symmetric noise, estimated after 2 epochs as in the digits config (an MLP for speed;
    constant lr: the estimate happens long before the 60-epoch cosine has decayed)."""
    cfg = C.load(os.path.join(CONFIGS, "co_teaching", "digits.yaml"),
                 ["train.epochs=3", "scheduler.name=constant", "model.name=mlp", "train.progress=false",
                  "train.visualdl=false", "train.report=false", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=[])
        run.trainer.fit()  # the estimate happens at the start of the third epoch (after 2 epochs)
    est = run.method.schedule.estimate
    assert est["rate_true"] == pytest.approx(0.4, abs=0.03)
    assert run.method.schedule.tau == pytest.approx(est["rate_true"], abs=0.08)
    assert 0.2 < est["rate_gmm"] < 0.7 and 0.2 < est["rate_cj"] < 0.6


# ------------------------------------------------------------------------------------------ end to end
METHOD_CONFIGS = {"co_teaching": "digits.yaml", "co_teaching_plus": "plus_digits.yaml", "jocor": "jocor_digits.yaml"}


def e2e_cfg(name, out):
    return C.load(os.path.join(CONFIGS, "co_teaching", METHOD_CONFIGS[name]),
                  FAST + ["train.epochs=3", "method.params.estimate_epoch=1", "method.params.num_gradual=2",
                          f"output_dir={out}"] + (["method.params.init_epoch=1"] if name == "co_teaching_plus" else []))


def final_row(metrics):
    return {k: v for k, v in metrics["final"].items() if not k.startswith("time/")}


@pytest.mark.parametrize("name", sorted(METHOD_CONFIGS))
def test_end_to_end_resume_matches_uninterrupted(name, tmp_path):
    with paddle.utils.unique_name.guard():
        full = run_mod.train(e2e_cfg(name, tmp_path / "full"))
    rows = full["history"]
    assert len(rows) == 3 and json.loads((tmp_path / "full" / "metrics.json").read_text())["epochs_run"] == 3
    assert rows[0]["noise/forget_rate"] == 0.0 and "noise/rate_gmm" not in rows[0]  # warm-up epoch
    for row in rows[1:]:  # estimated once at the start of epoch 2, then carried
        for key in ("noise/rate_gmm", "noise/rate_cj", "noise/rate_true", "noise/forget_rate"):
            assert key in row, key
        assert row["noise/forget_rate"] == rows[1]["noise/forget_rate"] > 0.1
    assert rows[2]["select/target_keep_ratio"] == pytest.approx(1 - rows[2]["noise/forget_rate"])
    for row in rows:
        assert 0.0 < row["select/keep_ratio"] <= 1.0 and 0.0 <= row["select/recall"] <= 1.0
    if name != "co_teaching_plus":  # the small-loss selection is purer than the data once it is active
        assert rows[2]["select/precision"] > rows[0]["select/precision"] + 0.1
    assert sorted(glob.glob(str(tmp_path / "full" / "checkpoints" / "epoch_*.pdckpt")))[-1].endswith("epoch_003.pdckpt")

    state = load_checkpoint(str(tmp_path / "full" / "checkpoints" / "epoch_002.pdckpt"))
    assert state["method"]["forget_rate"]["tau"] == pytest.approx(rows[1]["noise/forget_rate"])
    with paddle.utils.unique_name.guard():
        resumed = run_mod.train(e2e_cfg(name, tmp_path / "resumed"),
                                resume=str(tmp_path / "full" / "checkpoints" / "epoch_002.pdckpt"))
    a, b = final_row(full), final_row(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), k


PAPER_CONFIGS = sorted(os.path.basename(f) for f in glob.glob(os.path.join(CONFIGS, "co_teaching", "[!_]*.yaml")))


def test_every_dataset_and_noise_has_a_config_per_method():
    want = ["digits", "mnist", "cifar10_sym20", "cifar10_sym50", "cifar10_sym80", "cifar10_asym40", "cifar10n"]
    for prefix in ("", "plus_", "jocor_"):
        assert all(f"{prefix}{w}.yaml" in PAPER_CONFIGS for w in want), prefix


@pytest.mark.parametrize("fname", PAPER_CONFIGS)
def test_configs_are_valid_and_follow_the_papers(fname):
    cfg = C.load(os.path.join(CONFIGS, "co_teaching", fname))
    method = METHODS.get(cfg.method.name)
    assert cfg.method.name == {"plus": "co_teaching_plus", "jocor": "jocor"}.get(fname.split("_")[0], "co_teaching")
    check_kwargs(method, dict(cfg.method.params), where="method.params", owner=cfg.method.name)
    params = cfg.method.params
    noise = cfg.data.noise
    if noise.kind == "symmetric" and cfg.data.name != "digits":
        assert params["forget_rate"] == noise.rate  # the papers: tau = noise rate
    elif noise.kind == "asymmetric":
        assert params["forget_rate"] == pytest.approx(noise.rate / 2)  # 5 of 10 CIFAR-10 classes flip
    else:  # digits and CIFAR-10N: unknown rate
        assert params["forget_rate"] == "auto"
    if cfg.data.name in ("mnist", "cifar10"):
        sched = build_scheduler(cfg.scheduler, base_lr=cfg.optimizer.lr, epochs=cfg.train.epochs, steps_per_epoch=1)
        plan = [1e-3 if e < 80 else (200 - e) / 120 * 1e-3 for e in range(200)]  # the reference alpha_plan
        np.testing.assert_allclose([sched.lr_at(e) for e in range(200)], plan, rtol=1e-9, atol=1e-12)
        assert cfg.optimizer.name == "adam" and cfg.data.batch_size == 128
        assert run_epochs(params["num_gradual"], epochs=cfg.train.epochs, key="num_gradual") == 10  # 0.05 of 200


def test_registered_and_ensemble_export_by_default():
    for name in ("co_teaching", "co_teaching_plus", "jocor"):
        assert name in METHODS
    method, _ = toy(CoTeachingMethod, forget_rate=0.2)
    x = tensor(np.random.default_rng(0).normal(size=(4, D)))
    want = (method.networks["net1"](x) + method.networks["net2"](x)) / 2
    np.testing.assert_allclose(method.predict(x).numpy(), want.numpy(), rtol=1e-6)
    np.testing.assert_allclose(method.export_network()(x).numpy(), want.numpy(), rtol=1e-6)
