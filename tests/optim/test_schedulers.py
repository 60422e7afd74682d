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
    sched = make("constant", epochs=3, spe=4, warmup=0.5, start=0.0)
    assert sched.warmup == 2
    assert values(sched, 3) == pytest.approx([0.0, BASE / 2, BASE])


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
    ("multistep", {"milestones": [5, 3]}, "scheduler.params.milestones: must be strictly increasing"),
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
    with pytest.raises(ValueError, match="scheduler.warmup_epochs: 0.5 must be a whole number .*scheduler.by is 'epoch'"):
        make("cosine", by="epoch", warmup=0.5)
    with pytest.raises(ValueError, match="scheduler.warmup_epochs: 10.0 must be shorter than the run"):
        make("cosine", epochs=10, warmup=10.0)
