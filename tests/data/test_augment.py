"""Library augmentation (robust_paddle.data.augment), the evaluation geometry shared with the server, and
streaming (path / memory-mapped) datasets."""

import numpy as np
import pytest
from PIL import Image

from robust_paddle.config import ConfigError as ConfigKeyError
from robust_paddle.config import from_dict
from robust_paddle.data import build_data, build_loader
from robust_paddle.data import transforms as tr
from robust_paddle.data.augment import PRESETS, describe, parse_augment
from robust_paddle.data.datasets import RowView
from robust_paddle.data.transforms import Pipeline, fit_image
from robust_paddle.errors import ConfigError


def write_folder(root, n_per_class=6, classes=("a", "b", "c"), size=(30, 22)):
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            arr = np.clip(rng.normal(50 + 70 * label, 40, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"img_{k}.jpg", quality=95)
    return root


def folder_cfg(root, **data):
    base = {"name": "image_folder", "path": str(root), "image_size": 16, "val_split": 0.0, "test_split": 0.2,
            "augment": "imagenet", "eval_resize_short": 20}
    return from_dict({"seed": 5, "data": {**base, **data}})


def epoch_batches(loader, epoch):
    loader.batch_sampler.set_epoch(epoch)
    return [(x.numpy(), i.numpy()) for x, _, i in loader]


def test_presets_and_op_lists_parse_and_errors_name_the_field():
    assert [n for n, _ in parse_augment("imagenet")] == ["random_resized_crop", "hflip", "color_jitter"]
    assert [n for n, _ in parse_augment("strong")] == ["pad_crop", "hflip", "rand_augment", "random_erasing"]
    assert parse_augment("cifar") == parse_augment("flip_crop") and parse_augment("none") == ()
    ops = parse_augment([{"name": "rotation", "degrees": 10}, {"name": "hflip", "prob": 1.0}])
    assert describe(ops) == [{"name": "rotation", "degrees": 10}, {"name": "hflip", "prob": 1.0}]
    with pytest.raises(ConfigError, match=r"data.augment\[1\]: unknown op 'blur'; choose one of: pad_crop"):
        parse_augment([{"name": "hflip"}, {"name": "blur"}])
    with pytest.raises(ConfigError, match=r"data.augment\[0\].angle: not a parameter of 'rotation'; allowed: degrees"):
        parse_augment([{"name": "rotation", "angle": 3}])
    with pytest.raises(ConfigError, match="random_resized_crop must be the first op"):
        parse_augment([{"name": "hflip"}, {"name": "random_resized_crop"}])
    with pytest.raises(ConfigError, match="'fancy' is not a preset"):  # checked when the config is loaded
        from_dict({"data": {"augment": "fancy"}})
    with pytest.raises(ConfigKeyError, match="data.augment: expected str or list"):
        from_dict({"data": {"augment": 3}})
    assert set(PRESETS) >= {"none", "cifar", "imagenet", "strong"}


def test_each_sample_is_a_pure_function_of_seed_epoch_index_view():
    img = (np.random.default_rng(1).random((20, 24, 3)) * 255).astype(np.uint8)
    pipe = Pipeline("image", (0.5,) * 3, (0.25,) * 3, scale=1 / 255, augment="strong", size=16, seed=3)
    a = pipe(img, index=7, epoch=2, view=1)
    np.random.seed(0)  # global generators are neither used nor disturbed
    state = np.random.get_state()[1].copy()
    np.testing.assert_array_equal(a, pipe(img, index=7, epoch=2, view=1))
    np.testing.assert_array_equal(state, np.random.get_state()[1])
    others = [pipe(img, index=8, epoch=2, view=1), pipe(img, index=7, epoch=3, view=1),
              pipe(img, index=7, epoch=2, view=0), Pipeline("image", (0.5,) * 3, (0.25,) * 3, scale=1 / 255,
                                                           augment="strong", size=16, seed=4)(img, index=7, epoch=2, view=1)]
    assert all(not np.array_equal(a, o) for o in others)


def test_weak_and_strong_views(tmp_path):
    b = build_data(folder_cfg(write_folder(tmp_path / "f"), augment="cifar", strong_augment="strong"))
    weak, strong = b.train.get_x(3, epoch=1), b.train.get_x(3, epoch=1, strong=True)
    assert weak.shape == strong.shape == (3, 16, 16) and not np.array_equal(weak, strong)
    np.testing.assert_array_equal(strong, b.train.get_x(3, epoch=1, strong=True))


def test_float_pixels_reject_colour_ops_when_the_data_is_built():
    with pytest.raises(ConfigError, match="color_jitter needs 8-bit images, but this dataset stores float32"):
        build_data(from_dict({"data": {"augment": [{"name": "color_jitter"}]}}))
    b = build_data(from_dict({"data": {"augment": [{"name": "rotation", "degrees": 20}, {"name": "random_erasing"}]}}))
    assert b.train.get_x(0, epoch=1).shape == (1, 8, 8)


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_do_not_depend_on_the_number_of_workers(tmp_path, workers):
    b = build_data(folder_cfg(write_folder(tmp_path / "f")))
    ref = epoch_batches(build_loader(b.train, batch_size=5, shuffle=True, seed=1, num_workers=0), 3)
    got = epoch_batches(build_loader(b.train, batch_size=5, shuffle=True, seed=1, num_workers=workers), 3)
    assert len(ref) == len(got) == 3
    for (xa, ia), (xb, ib) in zip(ref, got):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)
    later = epoch_batches(build_loader(b.train, batch_size=5, shuffle=True, seed=1, num_workers=workers), 4)
    assert not np.array_equal(np.concatenate([x for x, _ in ref]), np.concatenate([x for x, _ in later]))


def test_eval_geometry_resizes_the_short_side_then_centre_crops():
    im = Image.fromarray(np.arange(40 * 60, dtype=np.uint8).reshape(40, 60) % 251)  # 60 wide, 40 high
    out = fit_image(im, size=(16, 16), resize_short=20)
    assert out.size == (16, 16)
    ref = im.resize((30, 20), Image.BILINEAR).crop((7, 2, 23, 18))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    assert fit_image(im, size=(16, 16)).size == (16, 16) and fit_image(im, size=(0, 0)) is im


def test_server_preprocessing_equals_evaluation_on_the_same_file(tmp_path):
    from robust_paddle.deploy.predictor import ModelInfo, preprocess_images

    b = build_data(folder_cfg(write_folder(tmp_path / "f")))
    info = ModelInfo(model_dir=str(tmp_path), input_name="x", input_shape=(3, 16, 16), kind="image",
                     output_name="y", softmax=False, mean=tuple(b.mean), std=tuple(b.std),
                     class_names=("a", "b", "c"), model_version="v", resize_short=20)
    assert info.to_yaml_dict()["preprocess"]["resize_short"] == 20
    for i in (0, 3):
        path = b.test.paths[i]
        with open(path, "rb") as fh:
            served = preprocess_images([fh.read()], info)[0]
        np.testing.assert_allclose(served, b.test.get_x(i), atol=1e-6)
    plain = ModelInfo(**{**info.__dict__, "resize_short": 0})
    with open(b.test.paths[0], "rb") as fh:
        assert not np.allclose(preprocess_images([fh.read()], plain)[0], b.test.get_x(0), atol=1e-3)


def test_eval_resize_short_checks():
    with pytest.raises(ConfigError, match="eval_resize_short=20 needs data.image_size"):
        build_data(from_dict({"data": {"eval_resize_short": 20}}))
    with pytest.raises(ConfigError, match="eval_resize_short=4 must be >= data.image_size=8"):
        build_data(from_dict({"data": {"eval_resize_short": 4, "image_size": 8}}))


def test_path_datasets_decode_per_sample_and_hold_no_image_array(tmp_path, monkeypatch):
    b = build_data(folder_cfg(write_folder(tmp_path / "f")))
    assert isinstance(b.train.data, list) and all(isinstance(p, str) for p in b.train.data)
    calls = []
    real = tr.load_image
    monkeypatch.setattr(tr, "load_image", lambda *a, **k: calls.append(k) or real(*a, **k))
    x, _, _ = next(iter(build_loader(b.train, batch_size=4, shuffle=False, seed=0)))
    assert x.shape == [4, 3, 16, 16] and len(calls) >= 4
    assert calls[0]["size"] == 0  # random_resized_crop sees the decoded image, not a resized copy
    calls.clear()
    b.test.get_x(0)
    assert calls == [{"channels": 3, "size": 16, "resize_short": 20}]


def test_npy_folder_is_memory_mapped_and_split_without_copies(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((60, 12, 12, 3)) * 255).astype(np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    b = build_data(from_dict({"seed": 1, "data": {"name": "npy", "path": str(tmp_path), "augment": "cifar"}}))
    for ds in (b.train, b.val, b.test):
        assert isinstance(ds.data, RowView) and isinstance(ds.data.base, np.memmap)
    assert len(b.train) + len(b.val) + len(b.test) == 60 and b.input_shape == (3, 12, 12)
    i = 5
    row = int(b.train.data.rows[i])
    ref = Pipeline("image", tuple(b.mean), tuple(b.std), scale=1 / 255)(x[row], index=i)
    np.testing.assert_allclose(b.train_eval.get_x(i), ref, atol=1e-6)
    assert int(b.train.labels[i]) == y[row]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no x.npy in the folder"):
        build_data(from_dict({"data": {"name": "npy", "path": str(tmp_path / "empty")}}))
