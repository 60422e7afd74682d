"""build_data: stratified splits, subset, noise on train/val, clean/test labels, normalisation options."""

import numpy as np
import pytest

from robust_paddle.config import from_dict
from robust_paddle.data import build_data
from robust_paddle.data.noise import symmetric_matrix


def cfg(seed=0, noise=None, **data):
    if noise is not None:
        data["noise"] = noise
    return from_dict({"seed": seed, "data": data})


@pytest.fixture
def tagged_npz(tmp_path):
    """600 tabular samples whose first feature is the sample id; 6 classes of 100."""
    x = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    x[:, 0] = np.arange(600)
    y = np.arange(600) % 6
    np.savez(tmp_path / "tagged.npz", x=x, y=y)
    return str(tmp_path / "tagged.npz")


def ids(ds):
    return np.rint(ds.data[:, 0]).astype(int)


def test_stratified_split_sizes_and_proportions():
    b = build_data(cfg(seed=1))
    n = 1797
    assert (len(b.test), len(b.val), len(b.train)) == (round(0.2 * n), round(0.1 * n), n - 359 - 180)
    full = np.bincount(np.concatenate([b.train.labels, b.val.labels, b.test.labels]), minlength=10) / n
    for ds in (b.train, b.val, b.test):
        np.testing.assert_allclose(np.bincount(ds.labels, minlength=10) / len(ds), full, atol=0.012)


def test_splits_are_disjoint_reproducible_and_independent_of_noise(tagged_npz):
    a = build_data(cfg(seed=4, name="npz", path=tagged_npz))
    parts = [ids(a.train), ids(a.val), ids(a.test)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(600))
    assert all(np.all(np.diff(p) > 0) for p in parts)  # source order kept
    b = build_data(cfg(seed=4, name="npz", path=tagged_npz, noise={"kind": "symmetric", "rate": 0.4}))
    for x, y in zip(parts, [ids(b.train), ids(b.val), ids(b.test)]):
        np.testing.assert_array_equal(x, y)
    c = build_data(cfg(seed=5, name="npz", path=tagged_npz))
    assert not np.array_equal(ids(c.test), parts[2])


def test_noise_on_train_val_but_never_test(tagged_npz):
    noise = {"kind": "symmetric", "rate": 0.4}
    b = build_data(cfg(seed=2, name="npz", path=tagged_npz, noise=noise))
    y = np.arange(600) % 6
    for ds in (b.train, b.val, b.test):
        np.testing.assert_array_equal(ds.clean_labels, y[ids(ds)])
    assert np.mean(b.train.labels != b.train.clean_labels) == pytest.approx(0.4, abs=0.07)
    assert np.mean(b.val.labels != b.val.clean_labels) > 0.15
    np.testing.assert_array_equal(b.test.labels, b.test.clean_labels)
    assert b.noise.kind == "symmetric" and b.noise.seed == 2 and b.noise.num_samples == len(b.train)
    assert b.noise.realised_rate == pytest.approx(np.mean(b.train.labels != b.train.clean_labels))
    np.testing.assert_allclose(b.noise.transition_matrix, symmetric_matrix(6, 0.4))
    same = build_data(cfg(seed=2, name="npz", path=tagged_npz, noise=noise))
    np.testing.assert_array_equal(same.train.labels, b.train.labels)
    kept = build_data(cfg(seed=2, name="npz", path=tagged_npz, noise={**noise, "apply_to_val": False}))
    np.testing.assert_array_equal(kept.val.labels, kept.val.clean_labels)
    np.testing.assert_array_equal(kept.train.labels, b.train.labels)


def test_subset_is_stratified_and_keeps_the_same_noisy_labels(tagged_npz):
    noise = {"kind": "pair", "rate": 0.3}
    full = build_data(cfg(seed=3, name="npz", path=tagged_npz, noise=noise))
    sub = build_data(cfg(seed=3, name="npz", path=tagged_npz, noise=noise, subset=120))
    assert len(sub.train) == 120 and np.all(np.bincount(sub.train.clean_labels) == 20)
    pos = np.searchsorted(ids(full.train), ids(sub.train))
    np.testing.assert_array_equal(full.train.labels[pos], sub.train.labels)
    np.testing.assert_array_equal(ids(full.val), ids(sub.val))


def test_file_noise_lines_up_with_the_source_order(tagged_npz, tmp_path):
    file_labels = (np.arange(600) * 7 + 1) % 6
    np.save(tmp_path / "noisy.npy", file_labels)
    b = build_data(cfg(name="npz", path=tagged_npz, noise={"kind": "file", "file": str(tmp_path / "noisy.npy")}))
    np.testing.assert_array_equal(b.train.labels, file_labels[ids(b.train)])
    np.testing.assert_array_equal(b.test.labels, (np.arange(600) % 6)[ids(b.test)])
    assert b.noise.transition is None and b.noise.realised_matrix is not None
    np.save(tmp_path / "short.npy", file_labels[:10])
    with pytest.raises(ValueError, match="has 10 labels but the training source has 600"):
        build_data(cfg(name="npz", path=tagged_npz, noise={"kind": "file", "file": str(tmp_path / "short.npy")}))


@pytest.mark.parametrize("kind", ["asymmetric", "instance"])
def test_digits_with_structured_noise(kind):
    b = build_data(cfg(seed=0, noise={"kind": kind, "rate": 0.3}, test_split=0.0))
    assert b.test is None
    flipped = b.train.labels != b.train.clean_labels
    assert 0.05 < flipped.mean() < 0.45
    if kind == "asymmetric":  # class_map auto -> the MNIST map for digits
        assert set(np.unique(b.train.clean_labels[flipped])) <= {2, 3, 5, 6, 7}


def test_separate_and_trusted_validation_sets(tagged_npz, tmp_path):
    x = np.random.default_rng(1).normal(size=(300, 4)).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x, y=np.arange(300) % 6)
    noise = {"kind": "symmetric", "rate": 0.5}
    b = build_data(cfg(name="npz", path=tagged_npz, val_path=str(tmp_path / "val.npz"), noise=noise))
    assert len(b.val) == 300 and np.mean(b.val.labels != b.val.clean_labels) > 0.3
    assert len(b.train) + len(b.test) == 600
    t = build_data(cfg(name="npz", path=tagged_npz, clean_val_path=str(tmp_path / "val.npz"), noise=noise))
    np.testing.assert_array_equal(t.val.labels, np.arange(300) % 6)
    np.testing.assert_array_equal(t.val.clean_labels, t.val.labels)
    with pytest.raises(ValueError, match="set only one of data.val_path and data.clean_val_path"):
        build_data(cfg(name="npz", path=tagged_npz, val_path=str(tmp_path / "val.npz"),
                       clean_val_path=str(tmp_path / "val.npz")))


def test_normalisation_options(tagged_npz):
    b = build_data(cfg(mean=[0.5], std=[0.25], augment="none"))
    assert b.mean == [0.5] and b.std == [0.25]
    raw = b.train.pipeline.raw(b.train.data[0])
    np.testing.assert_allclose(b.train[0][0][0], (raw[..., 0] - 0.5) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="data.mean/data.std need 1 values"):
        build_data(cfg(mean=[0.5, 0.5], std=[0.2, 0.2]))
    with pytest.raises(ValueError, match="set both data.mean and data.std"):
        build_data(cfg(mean=[0.5]))
    rgb = build_data(cfg(channels=3, image_size=12))
    assert rgb.input_shape == (3, 12, 12) and len(rgb.mean) == 3


def test_input_checks(tagged_npz):
    with pytest.raises(ValueError, match="data.name: unknown dataset 'imagenet'; choose one of: cifar10"):
        build_data(cfg(name="imagenet"))
    with pytest.raises(ValueError, match="data.val_split=0.9 leaves"):
        build_data(cfg(val_split=0.9, test_split=0.5))
    with pytest.raises(ValueError, match="data.path='x.npz' is not used by dataset 'digits'"):
        build_data(cfg(path="x.npz"))
    with pytest.raises(ValueError, match="data.image_size/data.channels apply to images"):
        build_data(cfg(name="npz", path=tagged_npz, image_size=8))
    with pytest.raises(ValueError, match="class_names has 3 names; this dataset has 10 classes"):
        build_data(cfg(class_names=["a", "b", "c"]))
