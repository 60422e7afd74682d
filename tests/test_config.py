import os

import pytest
import yaml

from robust_paddle import config as C
from robust_paddle.config import ConfigError

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")


def test_defaults_and_overrides():
    cfg = C.load(None, ["train.epochs=5", "loss.name=gce", "loss.params.q=0.7", "data.noise.rate=0.4",
                        "data.mean=[0.5]", "optimizer.lr=1e-3"])
    assert cfg.train.epochs == 5
    assert cfg.loss.name == "gce" and cfg.loss.params == {"q": 0.7}
    assert cfg.data.noise.rate == 0.4 and cfg.data.mean == [0.5]
    assert cfg.optimizer.lr == pytest.approx(1e-3)
    assert isinstance(cfg.optimizer.lr, float)


def test_ints_are_accepted_for_floats_but_not_the_reverse():
    assert C.load(None, ["optimizer.lr=1"]).optimizer.lr == 1.0
    with pytest.raises(ConfigError, match=r"train.epochs: expected int, got 2.5 \(float\)"):
        C.load(None, ["train.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    ("train.epochs=abc", r"^train.epochs: expected int, got 'abc' \(str\)$"),
    ("train.epochz=1", r"unknown key 'train.epochz'; allowed in train: epochs, device"),
    ("bogus=1", r"unknown key 'bogus'; allowed in the top level: seed, output_dir"),
    ("train.amp=O3", r"train.amp: 'O3' is not allowed; choose one of: none, O1, O2"),
    ("optimizer.lr=0", r"optimizer.lr: 0.0 is out of range; must be > 0.0"),
    ("data.noise.rate=1.5", r"data.noise.rate: 1.5 is out of range; must be <= 1.0"),
    ("data.batch_size=0", r"data.batch_size: 0 is out of range; must be >= 1"),
    ("train.progress=yes please", r"train.progress: expected bool \(true/false\)"),
    ("data.mean=[a]", r"data.mean\[0\]: expected float"),
    ("data.noise=3", r"data.noise: expected a mapping of NoiseConfig fields"),
    ("train.epochs", r"must look like key.path=value"),
    ("train.epochs.x=1", r"train.epochs: expected int, got \{'x': 1\} \(dict\)"),
    ("train=3", r"train: expected a mapping of TrainConfig fields, got 3"),
])
def test_errors_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        C.load(None, [override])


def test_override_into_a_scalar_is_rejected():
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        C.apply_overrides({"seed": 1}, ["seed.x=2"])


def test_yaml12_floats():
    assert C.load(None, ["optimizer.lr=1e-3"]).optimizer.lr == pytest.approx(1e-3)
    assert C.load(None, ["optimizer.weight_decay=5E-4"]).optimizer.weight_decay == pytest.approx(5e-4)
    assert C.load(None, ["output_dir=1e3run"]).output_dir == "1e3run"


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match=r"train.epochs: expected int, got True \(bool\)"):
        C.load(None, ["train.epochs=true"])


def test_base_inheritance_and_merge(tmp_path):
    (tmp_path / "_base_").mkdir()
    (tmp_path / "_base_" / "a.yaml").write_text("seed: 1\ndata: {batch_size: 32, noise: {kind: symmetric, rate: 0.2}}\n")
    (tmp_path / "_base_" / "b.yaml").write_text("seed: 2\ntrain: {epochs: 7}\n")
    (tmp_path / "exp.yaml").write_text("_base_: [_base_/a.yaml, _base_/b.yaml]\ndata: {noise: {rate: 0.4}}\n")
    cfg = C.load(str(tmp_path / "exp.yaml"), ["train.epochs=9"])
    assert cfg.seed == 2  # later base wins
    assert cfg.data.batch_size == 32 and cfg.data.noise.kind == "symmetric" and cfg.data.noise.rate == 0.4
    assert cfg.train.epochs == 9  # override wins over the file


def test_base_cycle_and_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="_base_ cycle"):
        C.load(str(tmp_path / "a.yaml"))
    with pytest.raises(ConfigError, match="config file not found"):
        C.load(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        C.load(str(tmp_path / "bad.yaml"))


def test_save_round_trip(tmp_path):
    cfg = C.load(os.path.join(CONFIGS, "quickstart.yaml"), ["train.epochs=3"])
    path = tmp_path / "run" / "config.yaml"
    C.save(cfg, str(path))
    assert C.load(str(path)) == cfg
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 3


def test_with_values_validates():
    cfg = C.load(None)
    assert C.with_values(cfg, {"train.epochs": 4}).train.epochs == 4
    with pytest.raises(ConfigError, match="train.epochs"):
        C.with_values(cfg, {"train.epochs": -1})


def test_config_is_frozen():
    cfg = C.load(None)
    with pytest.raises(Exception, match="cannot assign"):
        cfg.seed = 3  # type: ignore[misc]


def test_every_shipped_config_loads():
    paths = []
    for root, _, files in os.walk(CONFIGS):
        paths += [os.path.join(root, f) for f in files if f.endswith(".yaml") and "_base_" not in root]
    assert paths
    for p in paths:
        C.load(p)
