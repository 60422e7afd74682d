"""EMA and SWA hooks: shadow vs a NumPy recurrence, evaluation swap, checkpoint format, SWA mean, BN update."""

from types import SimpleNamespace

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.engine.ema import EMAHook, SWAHook, ema_decay, update_bn
from robust_paddle.pipeline.hooks import build_hooks


def small_net():
    paddle.seed(1)
    return paddle.nn.Sequential(paddle.nn.Linear(4, 5), paddle.nn.BatchNorm1D(5), paddle.nn.ReLU(),
                                paddle.nn.Linear(5, 3))


def fake_trainer(nets, *, epochs=4, n_batches=5, accum=1):
    cfg = SimpleNamespace(train=SimpleNamespace(epochs=epochs, accumulate_steps=accum))
    return SimpleNamespace(method=SimpleNamespace(networks=nets), cfg=cfg, epoch=0, global_step=0,
                           epoch_scalars={}, loaders={"train": [None] * n_batches}, scheduler=None,
                           optimizer=SimpleNamespace(set_lr=lambda lr: None))


def perturb(net, rng):
    with paddle.no_grad():
        for _, p in net.state_dict().items():
            p.set_value(p.numpy() + rng.normal(size=p.shape).astype("float32"))


@pytest.mark.parametrize("warmup", [True, False])
def test_shadow_after_n_steps_matches_numpy_recurrence(warmup):
    net = small_net()
    trainer = fake_trainer({"net": net})
    hook = EMAHook(decay=0.9, warmup=warmup)
    hook.before_train(trainer)
    ref = {k: v.numpy().astype(np.float64) for k, v in net.state_dict().items()}
    rng = np.random.default_rng(0)
    for n in range(7):
        perturb(net, rng)
        hook.after_step(trainer, {})
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        ref = {k: d * ref[k] + (1 - d) * v.numpy() for k, v in net.state_dict().items()}
    assert hook.num_updates == 7
    assert set(hook.shadow["net"]) == set(ref)  # BN statistics are averaged too
    for k in ref:
        np.testing.assert_allclose(hook.shadow["net"][k].numpy(), ref[k], rtol=1e-5, atol=1e-5)


def test_decay_formula():
    assert ema_decay(0, decay=0.999, warmup=True) == pytest.approx(0.1)
    assert ema_decay(90, decay=0.999, warmup=True) == pytest.approx(91 / 100)
    assert ema_decay(10**6, decay=0.999, warmup=True) == 0.999
    assert ema_decay(0, decay=0.5, warmup=False) == 0.5


def test_eval_swaps_shadow_in_and_restores_training_weights():
    net = small_net()
    trainer = fake_trainer({"net": net})
    hook = EMAHook(decay=0.5, warmup=False)
    hook.before_train(trainer)
    perturb(net, np.random.default_rng(1))
    hook.after_step(trainer, {})
    train_w = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    hook.before_eval(trainer)
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(v.numpy(), hook.shadow["net"][k].numpy())
    hook.after_eval(trainer)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), train_w[k])


def test_no_swap_when_eval_disabled():
    net = small_net()
    trainer = fake_trainer({"net": net})
    hook = EMAHook(decay=0.5, eval=False)
    hook.before_train(trainer)
    perturb(net, np.random.default_rng(2))
    before = net[0].weight.numpy().copy()
    hook.before_eval(trainer)
    np.testing.assert_array_equal(net[0].weight.numpy(), before)


def test_state_dict_format_and_resume_keeps_restored_shadow():
    net = small_net()
    trainer = fake_trainer({"net": net})
    hook = EMAHook(decay=0.9)
    hook.before_train(trainer)
    perturb(net, np.random.default_rng(3))
    hook.after_step(trainer, {})
    state = hook.state_dict()
    assert set(state) == {"shadow", "num_updates"} and state["num_updates"] == 1
    assert set(state["shadow"]) == {"net"} and set(state["shadow"]["net"]) == set(net.state_dict())
    fresh = EMAHook(decay=0.9)
    fresh.set_state_dict(state)
    perturb(net, np.random.default_rng(4))
    fresh.before_train(trainer)  # a resumed run must not re-initialise the shadow from the current weights
    np.testing.assert_array_equal(fresh.shadow["net"]["0.weight"].numpy(), state["shadow"]["net"]["0.weight"].numpy())
    assert fresh.num_updates == 1


def test_ema_checks():
    with pytest.raises(ValueError, match=r"train.ema.decay must be a number in \[0, 1\], got 1.5"):
        EMAHook(decay=1.5)


def test_swa_average_equals_manual_mean():
    net = small_net()
    hook = SWAHook(start_epoch=2)
    trainer = fake_trainer({"net": net}, epochs=4)
    rng = np.random.default_rng(5)
    snapshots = []
    for epoch in range(4):
        trainer.epoch = epoch
        perturb(net, rng)
        hook.after_epoch(trainer)
        if epoch >= 1:
            snapshots.append({k: p.numpy().copy() for k, p in net.named_parameters() if not p.stop_gradient})
    assert hook.num_averaged == 3
    for k, avg in hook.average["net"].items():
        np.testing.assert_allclose(avg.numpy(), np.mean([s[k] for s in snapshots], axis=0), rtol=1e-5, atol=1e-6)
    assert "1._mean" not in hook.average["net"]  # BN statistics are recomputed, not averaged
    hook.apply({"net": net})
    np.testing.assert_allclose(net[0].weight.numpy(), np.mean([s["0.weight"] for s in snapshots], 0), rtol=1e-5)


def test_swa_cyclic_averages_at_cycle_ends_and_sets_lr():
    hook = SWAHook(start_epoch=1, lr=0.1, lr_min=0.01, cycle_epochs=2)
    # per-step cyclic rate over a 4-step cycle: t = 1/4 .. 1
    np.testing.assert_allclose([hook.lr_at(i, 4) for i in range(5)],
                               [0.1 - 0.09 * t for t in (0.25, 0.5, 0.75, 1.0, 0.25)])
    net = small_net()
    trainer = fake_trainer({"net": net}, epochs=4, n_batches=2)
    sched = paddle.optimizer.lr.StepDecay(learning_rate=1.0, step_size=100)
    trainer.scheduler = sched
    hook.before_train(trainer)
    seen = []
    for epoch in range(4):
        trainer.epoch = epoch
        hook.before_epoch(trainer)
        for _ in range(2):
            seen.append(sched.last_lr)
            trainer.global_step += 1
            hook.after_step(trainer, {})
        hook.after_epoch(trainer)
    np.testing.assert_allclose(seen, [0.1 - 0.09 * t for t in (0.25, 0.5, 0.75, 1.0)] * 2)
    assert hook.num_averaged == 2  # the ends of epochs 2 and 4


def test_swa_start_epoch_defaults_to_last_quarter_and_checks():
    assert SWAHook().first_epoch(20) == 16
    assert SWAHook().first_epoch(2) == 2
    trainer = fake_trainer({"net": small_net()}, epochs=3)
    with pytest.raises(ValueError, match="train.swa.start_epoch=5 is after the last epoch"):
        SWAHook(start_epoch=5).before_train(trainer)
    with pytest.raises(ValueError, match="cycle_epochs=2 needs a cyclic upper rate train.swa.lr > 0"):
        SWAHook(cycle_epochs=2)
    with pytest.raises(ValueError, match="train.swa.start_epoch must be an int >= 0"):
        SWAHook(start_epoch=-1)


def test_update_bn_sets_statistics_to_the_mean_over_batches():
    net = small_net()
    rng = np.random.default_rng(6)
    xs = [rng.normal(2.0, 3.0, size=(8, 4)).astype("float32") for _ in range(5)]
    net.eval()
    assert update_bn([(paddle.to_tensor(x),) for x in xs], {"net": net}) == 5
    assert not net.training  # mode restored
    with paddle.no_grad():
        h = [net[0](paddle.to_tensor(x)).numpy() for x in xs]
    np.testing.assert_allclose(net[1]._mean.numpy(), np.mean([a.mean(0) for a in h], 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net[1]._variance.numpy(), np.mean([a.var(0) for a in h], 0), rtol=1e-4, atol=1e-5)
    assert net[1]._momentum == 0.9  # restored
    assert update_bn([], paddle.nn.Linear(2, 2)) == 0  # no batch norm: nothing to do


def test_build_hooks_adds_ema_swa_and_rejects_both():
    cfg = C.from_dict({"train": {"ema": {"enabled": True}, "visualdl": False}})
    assert "ema" in [h.name for h in build_hooks(cfg.train)]
    cfg = C.from_dict({"train": {"swa": {"enabled": True}, "visualdl": False}})
    assert "swa" in [h.name for h in build_hooks(cfg.train)]
    cfg = C.from_dict({"train": {"swa": {"enabled": True}, "ema": {"enabled": True}}})
    with pytest.raises(ValueError, match="train.ema.enabled and train.swa.enabled are both true"):
        build_hooks(cfg.train)
