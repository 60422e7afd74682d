"""Noise generators against their transition matrices, NoiseSpec round-trips and label-file checks."""

import json
import logging

import numpy as np
import pytest

from robust_paddle.config import NoiseConfig
from robust_paddle.data.noise import (
    CLASS_MAPS,
    NoiseSpec,
    apply_transition,
    asymmetric_matrix,
    inject_noise,
    instance_dependent_noise,
    load_noisy_label_file,
    pair_matrix,
    realised_matrix,
    save_noise,
    symmetric_matrix,
)
from robust_paddle.errors import DataError
from robust_paddle.registry import NOISES

C = 10
N = 20_000


@pytest.fixture(scope="module")
def clean():
    return np.random.default_rng(0).integers(0, C, size=N)


def test_symmetric_matrix_values():
    t = symmetric_matrix(4, 0.3)
    np.testing.assert_allclose(np.diag(t), 0.7)
    np.testing.assert_allclose(t[0, 1:], 0.1)
    np.testing.assert_allclose(t.sum(1), 1.0)


def test_pair_matrix_values():
    t = pair_matrix(4, 0.2)
    expected = np.array([[0.8, 0.2, 0, 0], [0, 0.8, 0.2, 0], [0, 0, 0.8, 0.2], [0.2, 0, 0, 0.8]])
    np.testing.assert_allclose(t, expected)


@pytest.mark.parametrize("name", sorted(CLASS_MAPS))
def test_asymmetric_matrix_follows_map(name):
    t = asymmetric_matrix(10, 0.4, name)
    for c in range(10):
        if c in CLASS_MAPS[name]:
            assert t[c, c] == pytest.approx(0.6) and t[c, CLASS_MAPS[name][c]] == pytest.approx(0.4)
        else:
            assert t[c, c] == 1.0


def test_standard_maps_match_literature():
    assert CLASS_MAPS["cifar10"] == {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}
    assert CLASS_MAPS["mnist"] == {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}


@pytest.mark.parametrize("kind,rate", [("symmetric", 0.4), ("pair", 0.3), ("asymmetric", 0.4)])
def test_empirical_flip_matrix_matches_transition(clean, kind, rate):
    cfg = NoiseConfig(kind=kind, rate=rate, seed=3, class_map="cifar10")
    noisy, spec = inject_noise(clean, cfg, num_classes=C)
    emp = realised_matrix(clean, noisy, C)
    # per-row standard error at ~2,000 samples per class is <= 0.011; 0.035 is > 3 sigma
    np.testing.assert_allclose(emp, spec.transition_matrix, atol=0.035)
    assert spec.realised_rate == pytest.approx(np.mean(noisy != clean))
    np.testing.assert_allclose(np.asarray(spec.realised_matrix), emp)


def test_symmetric_never_keeps_the_class_by_choice(clean):
    noisy = apply_transition(clean, symmetric_matrix(C, 0.5), seed=1)
    # flips go only to other classes: the realised flip rate is the nominal rate, not rate * (C-1)/C
    assert np.mean(noisy != clean) == pytest.approx(0.5, abs=0.015)
    flipped = noisy[noisy != clean]
    assert len(np.unique(flipped)) == C


def test_asymmetric_maps_exactly(clean):
    noisy, _ = inject_noise(clean, NoiseConfig(kind="asymmetric", rate=0.45, class_map="mnist"), num_classes=C,
                            seed=0)
    changed = noisy != clean
    for src, dst in CLASS_MAPS["mnist"].items():
        assert np.all(noisy[changed & (clean == src)] == dst)
    unmapped = ~np.isin(clean, list(CLASS_MAPS["mnist"]))
    assert not changed[unmapped].any()


def test_custom_and_auto_class_maps(clean):
    noisy, spec = inject_noise(clean, NoiseConfig(kind="asymmetric", rate=1.0, class_map={"0": 1}), num_classes=C,
                               seed=0)
    assert np.all(noisy[clean == 0] == 1) and np.all(noisy[clean != 0] == clean[clean != 0])
    assert spec.class_map == ((0, 1),) and spec.class_map_name == "custom"
    _, spec = inject_noise(clean, NoiseConfig(kind="asymmetric", rate=0.2), num_classes=C, seed=0, dataset="digits")
    assert spec.class_map_name == "mnist"
    with pytest.raises(ValueError, match="no standard map for dataset 'foo'.*cifar10, mnist"):
        inject_noise(clean, NoiseConfig(kind="asymmetric", rate=0.2), num_classes=C, seed=0, dataset="foo")
    with pytest.raises(ValueError, match="unknown map 'cifar100'"):
        asymmetric_matrix(C, 0.2, "cifar100")
    with pytest.raises(ValueError, match="3 -> 3 is invalid"):
        asymmetric_matrix(C, 0.2, {3: 3})


@pytest.mark.parametrize("kind", ["symmetric", "pair", "asymmetric", "instance"])
def test_same_seed_same_labels(clean, kind):
    feats = np.random.default_rng(1).normal(size=(N, 8))
    cfg = NoiseConfig(kind=kind, rate=0.3, class_map="cifar10")
    a, _ = inject_noise(clean, cfg, num_classes=C, seed=5, features=feats)
    b, _ = inject_noise(clean, cfg, num_classes=C, seed=5, features=feats)
    c, _ = inject_noise(clean, cfg, num_classes=C, seed=6, features=feats)
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_explicit_noise_seed_overrides_run_seed(clean):
    a, spec = inject_noise(clean, NoiseConfig(kind="symmetric", rate=0.3, seed=11), num_classes=C, seed=1)
    b, _ = inject_noise(clean, NoiseConfig(kind="symmetric", rate=0.3, seed=11), num_classes=C, seed=2)
    assert spec.seed == 11 and np.array_equal(a, b)


def test_instance_dependent_noise_rate_and_shape(clean):
    feats = np.random.default_rng(2).normal(size=(N, 16))
    noisy = instance_dependent_noise(feats, clean, rate=0.3, num_classes=C, seed=0)
    assert noisy.dtype == np.int64 and noisy.shape == clean.shape
    assert np.mean(noisy != clean) == pytest.approx(0.3, abs=0.02)
    # flips depend on the instance: the flip targets of one class are not uniform
    counts = np.bincount(noisy[(clean == 0) & (noisy != clean)], minlength=C)[1:]
    assert counts.std() > 0.1 * counts.mean()
    np.testing.assert_array_equal(instance_dependent_noise(feats, clean, rate=0.0, num_classes=C, seed=0), clean)
    with pytest.raises(ValueError, match="features has 3 rows"):
        instance_dependent_noise(feats[:3], clean, rate=0.3, num_classes=C, seed=0)
    with pytest.raises(ValueError, match="needs the sample features"):
        inject_noise(clean, NoiseConfig(kind="instance", rate=0.2), num_classes=C, seed=0)


def test_none_kind_is_identity(clean):
    noisy, spec = inject_noise(clean, NoiseConfig(), num_classes=C, seed=0)
    np.testing.assert_array_equal(noisy, clean)
    assert spec.realised_rate == 0.0


@pytest.mark.parametrize("name", ["none", "symmetric", "pair", "asymmetric", "instance", "file"])
def test_every_config_kind_is_registered(name):
    assert name in NOISES


def test_spec_json_round_trip_rebuilds_labels(clean, tmp_path):
    noisy, spec = inject_noise(clean, NoiseConfig(kind="asymmetric", rate=0.3, class_map="cifar10"), num_classes=C,
                               seed=9)
    back = NoiseSpec.from_json(spec.to_json())
    assert back == spec
    again, spec2 = inject_noise(clean, back, num_classes=C)
    np.testing.assert_array_equal(again, noisy)
    assert spec2 == spec
    save_noise(spec, str(tmp_path))
    saved = json.loads((tmp_path / "noise.json").read_text())
    assert saved["kind"] == "asymmetric" and saved["seed"] == 9 and len(saved["transition"]) == C
    assert saved["realised_rate"] == pytest.approx(np.mean(noisy != clean))
    with pytest.raises(ValueError, match="unknown key"):
        NoiseSpec.from_json(json.dumps({**saved, "extra": 1}))


@pytest.mark.parametrize("kind,rate", [("symmetric", 0.4), ("pair", 0.45), ("asymmetric", 0.4)])
def test_exact_sampling_gives_every_class_and_group_the_nominal_counts(kind, rate):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, C, 3000)
    groups = rng.integers(0, 3, 3000)
    noisy, spec = inject_noise(labels, NoiseConfig(kind=kind, rate=rate, class_map="mnist"), num_classes=C, seed=2,
                               groups=groups)
    t = spec.transition_matrix
    assert spec.sampling == "exact"
    for g in range(3):
        for c in range(C):
            m = (groups == g) & (labels == c)
            counts = np.bincount(noisy[m], minlength=C)
            # largest-remainder rounding: every cell within one sample of n * T[c, j], the row total exact
            assert counts.sum() == m.sum() and np.all(np.abs(counts - m.sum() * t[c]) < 1.0), (g, c)
    again, _ = inject_noise(labels, NoiseConfig(kind=kind, rate=rate, class_map="mnist"), num_classes=C, seed=2,
                            groups=groups)
    np.testing.assert_array_equal(again, noisy)


def test_random_sampling_draws_per_sample_and_old_specs_rebuild_with_it(clean):
    cfg = NoiseConfig(kind="pair", rate=0.45, sampling="random")
    noisy, spec = inject_noise(clean[:250], cfg, num_classes=C, seed=0)
    assert spec.sampling == "random"
    np.testing.assert_array_equal(noisy, apply_transition(clean[:250], pair_matrix(C, 0.45), seed=0, sampling="random"))
    rates = [np.mean(noisy[clean[:250] == c] != c) for c in range(C)]
    assert max(abs(r - 0.45) for r in rates) > 0.02  # independent draws: per-class rates spread around 0.45
    old = json.loads(spec.to_json())
    del old["sampling"]  # noise.json written before the field existed
    assert NoiseSpec.from_json(json.dumps(old)).sampling == "random"
    with pytest.raises(ValueError, match="noise.sampling must be one of exact, random, got 'stratified'"):
        apply_transition(clean[:10], np.eye(C), seed=0, sampling="stratified")
    with pytest.raises(ValueError, match=r"noise groups \(3,\) must match labels \(10,\)"):
        apply_transition(clean[:10], np.eye(C), seed=0, groups=np.zeros(3))


def test_file_kind_and_label_file_errors(tmp_path):
    labels = np.array([0, 1, 2, 1])
    txt = tmp_path / "noisy.txt"
    txt.write_text("1\n1\n2\n0\n")
    noisy, spec = inject_noise(labels, NoiseConfig(kind="file", file=str(txt)), num_classes=3, seed=0)
    np.testing.assert_array_equal(noisy, [1, 1, 2, 0])
    assert spec.realised_rate == 0.5 and spec.transition is None and spec.file == str(txt)
    np.save(tmp_path / "n.npy", np.array([2, 2, 2, 2]))
    np.testing.assert_array_equal(load_noisy_label_file(str(tmp_path / "n.npy"), 4, num_classes=3), [2, 2, 2, 2])
    with pytest.raises(ValueError, match="has 4 labels but the training source has 5"):
        load_noisy_label_file(str(txt), 5)
    bad = tmp_path / "bad.txt"
    bad.write_text("1\ncat\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: 'cat' is not an integer label"):
        load_noisy_label_file(str(bad), 2)
    out_of_range = tmp_path / "r.txt"
    out_of_range.write_text("0\n7\n")
    with pytest.raises(ValueError, match="label 7 is out of range.*\\[0, 2\\]"):
        load_noisy_label_file(str(out_of_range), 2, num_classes=3)
    np.save(tmp_path / "f.npy", np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="1-D integer array"):
        load_noisy_label_file(str(tmp_path / "f.npy"), 2)
    with pytest.raises(ValueError, match="does not exist"):
        load_noisy_label_file(str(tmp_path / "missing.txt"), 2)


def test_input_checks():
    with pytest.raises(ValueError, match="noise.rate must be a number in \\[0, 1\\], got 1.5"):
        symmetric_matrix(10, 1.5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        pair_matrix(1, 0.1)
    with pytest.raises(ValueError, match="rows must sum to 1|each row must sum to 1"):
        apply_transition(np.array([0, 1]), np.array([[0.5, 0.4], [0, 1]]), seed=0)
    with pytest.raises(ValueError, match="label 5 is out of range"):
        apply_transition(np.array([0, 5]), np.eye(2), seed=0)
    with pytest.raises(DataError, match="must hold integers"):
        apply_transition(np.array([0.0, 1.0]), np.eye(2), seed=0)
    with pytest.raises(ValueError, match="unknown noise 'gaussian'"):
        inject_noise(np.array([0, 1]), _Cfg("gaussian"), num_classes=2, seed=0)


class _Cfg:
    def __init__(self, kind):
        self.kind, self.rate, self.seed, self.class_map, self.file = kind, 0.1, None, "auto", ""


def test_unlearnable_rates_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="robust_paddle.data.noise_gen"):
        pair_matrix(5, 0.6)
        symmetric_matrix(2, 0.6)
    assert "pair noise rate 0.600 >= 0.5" in caplog.text and "(C-1)/C" in caplog.text
