"""Learning-rate schedules: closed-form values, warm-up, epoch->step conversion, state round-trip, checks."""

import math

import pytest

import robust_paddle  # noqa: F401  (before paddle: preloads the system zlib)

# isort: split
import paddle

from robust_paddle.config import OptimizerConfig, SchedulerConfig
from robust_paddle.optim import SCHEDULERS, build_optimizer, build_scheduler

BASE = 0.1


def make(name, *, epochs=10, spe=5, by="step", warmup=0.0, start=0.1, **params):
    cfg = SchedulerConfig(name=name, warmup_epochs=warmup, warmup_start_factor=start, by=by, params=params)
    return build_scheduler(cfg, base_lr=BASE, epochs=epochs, steps_per_epoch=spe)


def values(sched, n):
    """Learning rates seen by the first ``n`` optimizer steps when the trainer follows the contract."""
    out = []
    for _ in range(n):
        out.append(sched())
        sched.step()
    return out


def u(t, W, T):
    return min(max((t - W) / (T - W), 0.0), 1.0)


FORMULAS = {
    "constant": ({}, lambda t, W, T, unit: BASE),
    "cosine": ({"eta_min": 0.01}, lambda t, W, T, unit: 0.01 + (BASE - 0.01) * (1 + math.cos(math.pi * u(t, W, T))) / 2),
    "linear": ({"end_factor": 0.2}, lambda t, W, T, unit: BASE * (1 + (0.2 - 1) * u(t, W, T))),
    "polynomial": ({"power": 2.0, "end_lr": 0.001},
                   lambda t, W, T, unit: (BASE - 0.001) * (1 - u(t, W, T)) ** 2 + 0.001),
    "step": ({"step_size": 3, "gamma": 0.5}, lambda t, W, T, unit: BASE * 0.5 ** (t // (3 * unit))),
    "multistep": ({"milestones": [2, 7], "gamma": 0.1},
                  lambda t, W, T, unit: BASE * 0.1 ** ((t >= 2 * unit) + (t >= 7 * unit))),
}


def test_every_registry_entry_has_a_formula_test():
    assert set(SCHEDULERS.names()) == set(FORMULAS)


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("by,warmup", [("step", 0.0), ("step", 1.5), ("epoch", 0.0), ("epoch", 2.0)])
def test_values_match_closed_form(name, by, warmup):
    params, formula = FORMULAS[name]
    epochs, spe = 10, 5
    unit = spe if by == "step" else 1
    T, W = epochs * unit, round(warmup * unit)
    sched = make(name, epochs=epochs, spe=spe, by=by, warmup=warmup, start=0.1, **params)
    got = values(sched, T + 2)  # two extra ticks: schedules hold their end value
    for t, lr in enumerate(got):
        want = BASE * (0.1 + 0.9 * t / W) if t < W else formula(t, W, T, unit)
        assert lr == pytest.approx(want, rel=1e-12, abs=1e-15), (t, lr, want)


def test_warmup_values_and_end_points():
    sched = make("cosine", epochs=4, spe=10, warmup=1.0, start=0.2)
    lrs = values(sched, 41)
    assert lrs[0] == pytest.approx(0.2 * BASE)
    assert lrs[5] == pytest.approx(BASE * (0.2 + 0.8 * 0.5))
    assert lrs[10] == pytest.approx(BASE)  # warm-up ends exactly at base_lr
    assert lrs[25] == pytest.approx(BASE / 2)  # half-way through the 30 decay steps
    assert lrs[40] == pytest.approx(0.0, abs=1e-15)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))


def test_milestones_in_epochs_become_steps():
    sched = make("multistep", epochs=5, spe=7, milestones=[2, 4], gamma=0.5)
    lrs = values(sched, 35)
    assert lrs[13] == pytest.approx(BASE) and lrs[14] == pytest.approx(BASE / 2)
    assert lrs[27] == pytest.approx(BASE / 2) and lrs[28] == pytest.approx(BASE / 4)
    by_epoch = make("multistep", epochs=5, spe=7, by="epoch", milestones=[2, 4], gamma=0.5)
    assert values(by_epoch, 5) == pytest.approx([BASE, BASE, BASE / 2, BASE / 2, BASE / 4])


def test_fractional_warmup_rounds_to_steps():
    sched = make("constant", epochs=3, spe=4, warmup=1.5, start=0.0)  # 1.5 epochs (>= 1: epochs, not a fraction)
    assert sched.warmup == 6
    assert values(sched, 7) == pytest.approx([0.0, BASE / 6, 2 * BASE / 6, BASE / 2, 4 * BASE / 6, 5 * BASE / 6, BASE])
    half = make("constant", epochs=3, spe=4, warmup=0.5, start=0.0)  # < 1: half of the run = 6 of 12 steps
    assert half.warmup == 6


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_state_round_trips(name):
    params, _ = FORMULAS[name]
    a = make(name, warmup=1.0, **params)
    values(a, 17)
    state = a.state_dict()
    assert state["last_epoch"] == 17
    b = make(name, warmup=1.0, **params)
    b.set_state_dict(state)
    assert b() == a()
    assert values(b, 20) == values(a, 20)


def test_optimizer_follows_the_schedule():
    lin = paddle.nn.Linear(2, 2)
    sched = make("linear", epochs=2, spe=3, end_factor=0.0)
    opt = build_optimizer(OptimizerConfig(name="sgd"), lin.parameters(), learning_rate=sched)
    seen = []
    for _ in range(6):
        seen.append(opt.get_lr())
        lin(paddle.ones([1, 2])).sum().backward()
        opt.step()
        opt.clear_grad()
        sched.step()
    assert seen == pytest.approx([BASE * (1 - t / 6) for t in range(6)])


# --------------------------------------------------------------------------------------------- checks
@pytest.mark.parametrize("name,params,match", [
    ("cosine", {"eta": 0.1}, r"scheduler.params: unknown key\(s\) eta for scheduler 'cosine'; allowed: eta_min"),
    ("constant", {"gamma": 0.1}, r"scheduler.params: unknown key\(s\) gamma .*allowed: \(none\)"),
    ("step", {}, "scheduler.params.step_size: required"),
    ("step", {"step_size": 1.5}, "scheduler.params.step_size: expected a whole number of epochs"),
    ("multistep", {}, "scheduler.params.milestones: required"),
    ("multistep", {"milestones": [5, 3]}, "scheduler.params.milestones: must be increasing"),
    ("multistep", {"milestones": 5}, "scheduler.params.milestones: expected a non-empty list"),
    ("multistep", {"milestones": [2], "gamma": 0}, "scheduler.params.gamma: 0 is out of range; must be > 0"),
    ("polynomial", {"power": 0}, "scheduler.params.power: 0 is out of range"),
    ("cosine", {"eta_min": "x"}, "scheduler.params.eta_min: expected a number"),
    ("linear", {"end_factor": -1}, "scheduler.params.end_factor: -1 is out of range"),
])
def test_bad_params(name, params, match):
    with pytest.raises(ValueError, match=match):
        make(name, **params)


def test_unknown_name_and_sizes():
    with pytest.raises(ValueError, match="unknown scheduler 'onecycle'; choose one of: constant, cosine"):
        make("onecycle")
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        make("cosine", epochs=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be an int >= 1"):
        make("cosine", spe=0)
    with pytest.raises(ValueError, match="base_lr must be a number > 0"):
        build_scheduler(SchedulerConfig(), base_lr=0.0, epochs=1, steps_per_epoch=1)


def test_warmup_checks():
    with pytest.raises(ValueError, match="scheduler.warmup_epochs: 2.5 must be a whole number .*scheduler.by is 'epoch'"):
        make("cosine", by="epoch", warmup=2.5)
    with pytest.raises(ValueError, match=r"scheduler.warmup_epochs: 10.0 \(10 epochs\) must be shorter than the run "
                                         r"\(train.epochs=10\); give it as a fraction"):
        make("cosine", epochs=10, warmup=10.0)


@pytest.mark.parametrize("epochs", [2, 6, 200])
def test_fractions_of_the_run_keep_the_plan_at_any_budget(epochs):
    """warmup_epochs / milestones / step_size in (0, 1) are fractions of train.epochs."""
    spe = 5
    lin = make("linear", epochs=epochs, spe=1, by="epoch", warmup=0.4, start=1.0, end_factor=0.0)
    w = max(1, math.floor(0.4 * epochs + 0.5))  # by epoch: whole epochs
    assert lin.warmup == w
    assert values(lin, epochs)[:w] == [BASE] * w and lin.lr_at(epochs) == pytest.approx(0.0)
    cos = make("cosine", epochs=epochs, spe=spe, warmup=0.4)
    assert cos.warmup == round(0.4 * epochs * spe)  # by step: the exact fraction of the steps
    ms = make("multistep", epochs=epochs, spe=spe, milestones=[0.5], gamma=0.1)
    m = max(1, math.floor(0.5 * epochs + 0.5))
    assert ms.lr_at(m * spe - 1) == pytest.approx(BASE) and ms.lr_at(m * spe) == pytest.approx(BASE * 0.1)
    st = make("step", epochs=epochs, spe=1, by="epoch", step_size=0.25, gamma=0.5)
    assert st.shape.step_size == max(1, math.floor(0.25 * epochs + 0.5))
    with pytest.raises(ValueError, match=r"scheduler.warmup_epochs: expected a number of epochs >= 0 or a fraction"):
        build_scheduler(SchedulerConfig(warmup_epochs=-0.4), base_lr=BASE, epochs=epochs, steps_per_epoch=1)


def test_restart_replays_the_schedule_on_the_rest_of_the_run():
    sched = make("cosine", epochs=10, spe=4, warmup=0.2, start=0.1, eta_min=0.0)  # 8 warm-up ticks of 40
    values(sched, 20)
    assert sched.last_epoch == 20 and sched() < BASE
    sched.restart()
    fresh = make("cosine", epochs=5, spe=4, warmup=0.2, start=0.1, eta_min=0.0)  # the same plan over 20 ticks
    got = values(sched, 20)
    assert got == pytest.approx(values(fresh, 20))
    assert got[0] == pytest.approx(BASE * 0.1) and max(got) == pytest.approx(BASE, rel=1e-6)
    state = sched.state_dict()
    assert state["restart_tick"] == 20
    again = make("cosine", epochs=10, spe=4, warmup=0.2, start=0.1, eta_min=0.0)
    again.set_state_dict(state)
    assert again() == pytest.approx(sched()) and again.lr_at(30) == pytest.approx(sched.lr_at(30))
    old = make("cosine", epochs=10, spe=4)
    old.set_state_dict({"last_epoch": 3, "last_lr": 0.05})  # a checkpoint from before restarts existed
    assert old.restart_tick == 0 and old.last_epoch == 3
