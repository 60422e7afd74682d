"""ArrayDataset, the epoch-seeded loader and the augmentation pipeline."""

import numpy as np
import paddle
import pytest

from robust_paddle.config import from_dict
from robust_paddle.data import ArrayDataset, Pipeline, build_data, build_loader
from robust_paddle.data.transforms import convert_images


@pytest.fixture(scope="module")
def bundle():
    return build_data(from_dict({"seed": 3, "data": {"augment": "flip_crop"}}))


def epoch_batches(loader, epoch):
    loader.batch_sampler.set_epoch(epoch)
    return [(x.numpy(), y.numpy(), i.numpy()) for x, y, i in loader]


def test_batches_are_tensors_with_matching_labels(bundle):
    loader = build_loader(bundle.train, batch_size=100, shuffle=True, seed=0)
    x, y, idx = next(iter(loader))
    assert isinstance(x, paddle.Tensor) and x.shape == [100, 1, 8, 8] and x.dtype == paddle.float32
    assert y.shape == [100] and y.dtype == paddle.int64 and idx.shape == [100] and idx.dtype == paddle.int64
    np.testing.assert_array_equal(y.numpy(), bundle.train.labels[idx.numpy()])


def test_order_is_a_function_of_seed_and_epoch(bundle):
    a = build_loader(bundle.train, batch_size=64, shuffle=True, seed=7)
    b = build_loader(bundle.train, batch_size=64, shuffle=True, seed=7)
    ep2_a = epoch_batches(a, 2)
    epoch_batches(b, 0)  # b has already run an epoch: order must not depend on history
    ep2_b = epoch_batches(b, 2)
    for (xa, _, ia), (xb, _, ib) in zip(ep2_a, ep2_b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)  # augmentation follows the epoch too
    ep3 = epoch_batches(a, 3)
    assert not np.array_equal(ep2_a[0][2], ep3[0][2])
    order = np.concatenate([i for _, _, i in ep3])
    np.testing.assert_array_equal(np.sort(order), np.arange(len(bundle.train)))
    other_seed = build_loader(bundle.train, batch_size=64, shuffle=True, seed=8)
    assert not np.array_equal(epoch_batches(other_seed, 3)[0][2], ep3[0][2])


def test_no_shuffle_and_drop_last(bundle):
    n = len(bundle.train_eval)
    loader = build_loader(bundle.train_eval, batch_size=500, shuffle=False, seed=0)
    idx = np.concatenate([i for _, _, i in epoch_batches(loader, 4)])
    np.testing.assert_array_equal(idx, np.arange(n))
    assert len(loader.batch_sampler) == -(-n // 500)
    dropped = build_loader(bundle.train_eval, batch_size=500, shuffle=True, seed=0, drop_last=True)
    sizes = [len(i) for _, _, i in epoch_batches(dropped, 0)]
    assert sizes == [500] * (n // 500) and len(dropped.batch_sampler) == n // 500
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        build_loader(bundle.train, batch_size=0, shuffle=False, seed=0)


def test_worker_processes_follow_the_epoch(bundle):
    single = build_loader(bundle.train, batch_size=256, shuffle=True, seed=1)
    multi = build_loader(bundle.train, batch_size=256, shuffle=True, seed=1, num_workers=1)
    for (xa, _, ia), (xb, _, ib) in zip(epoch_batches(single, 5), epoch_batches(multi, 5)):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(xa, xb)


def test_train_eval_shares_samples_and_labels(bundle):
    assert len(bundle.train_eval) == len(bundle.train) and bundle.train_eval.pipeline.augment == "none"
    assert bundle.train_eval.labels is bundle.train.labels
    x_eval = bundle.train_eval[5][0]
    np.testing.assert_array_equal(x_eval, bundle.train_eval.get_x(5, epoch=9))  # no randomness
    views = {bundle.train.get_x(5, epoch=e).tobytes() for e in range(12)}
    assert len(views) > 1
    assert any(not np.array_equal(bundle.train.get_x(i, epoch=1, view=0), bundle.train.get_x(i, epoch=1, view=1))
               for i in range(10))


def test_cifar_preset_is_a_window_of_the_zero_padded_image_maybe_mirrored():
    img = np.arange(8 * 8, dtype=np.float32).reshape(8, 8, 1) + 1
    pipe = Pipeline("image", (0.0,), (1.0,), augment="cifar", seed=1)
    padded = np.pad(img[:, :, 0], 4)
    windows = {(t, le, f) for t in range(9) for le in range(9) for f in (0, 1)}
    seen = set()
    for i in range(300):
        out = pipe(img, index=i)[0]
        hits = [(t, le, f) for t, le, f in windows
                if np.array_equal(out, (padded[t:t + 8, le:le + 8])[:, ::-1] if f else padded[t:t + 8, le:le + 8])]
        assert hits, f"sample {i} is not a padded crop"
        seen.update(hits)
    assert {f for _, _, f in seen} == {0, 1} and len({(t, le) for t, le, _ in seen}) > 40


def test_augmentation_draws_cover_all_offsets(bundle):
    pipe = bundle.train.pipeline
    img = np.ones((8, 8, 1), np.float32)
    outs = [pipe(img, index=i, epoch=0) for i in range(400)]
    zero_rows = {int(np.argmax(o[0, :, 0] != o[0, 4, 0])) for o in outs}  # varied vertical offsets
    assert len({o.tobytes() for o in outs}) > 40 and len(zero_rows) > 1
    np.testing.assert_array_equal(pipe(img, index=3, epoch=1), pipe(img, index=3, epoch=1))


def test_pipeline_normalises_to_chw():
    pipe = Pipeline("image", (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), scale=1 / 255)
    pixels = np.full((2, 3, 3), 255, dtype=np.uint8)
    raw = pipe.raw(pixels)
    assert raw.dtype == np.float32 and np.all(raw == 1.0)
    out = pipe(raw, index=0)
    np.testing.assert_array_equal(out, pipe(pixels, index=0))  # 8-bit pixels are scaled by 1/255
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 2.0)
    with pytest.raises(ValueError, match="data.augment: 'rotate' is not a preset; choose one of: none, flip"):
        Pipeline("image", (0.0,), (1.0,), augment="rotate")


def test_convert_images_channels_and_size():
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    rgb[..., 0] = 100
    grey = convert_images(rgb, channels=1, size=2)
    assert grey.shape == (2, 2, 2, 1) and grey.dtype == np.uint8 and int(grey[0, 0, 0, 0]) == 30
    back = convert_images(grey, channels=3)
    assert back.shape == (2, 2, 2, 3)
    floats = convert_images(rgb.astype(np.float32) / 255, size=6)
    assert floats.shape == (2, 6, 6, 3) and floats.dtype == np.float32


def test_array_dataset_checks():
    pipe = Pipeline("tabular", (0.0, 0.0), (1.0, 1.0))
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="3 samples but 2 labels"):
        ArrayDataset(x, np.array([0, 1]), num_classes=2, pipeline=pipe)
    with pytest.raises(ValueError, match="label 4 is out of range"):
        ArrayDataset(x, np.array([0, 1, 4]), num_classes=2, pipeline=pipe)
    ds = ArrayDataset(x, np.array([0, 1, 1]), num_classes=2, pipeline=pipe, clean_labels=np.array([0, 1, 0]))
    sub = ds.select(np.array([2, 0]))
    np.testing.assert_array_equal(sub.labels, [1, 0])
    np.testing.assert_array_equal(sub.clean_labels, [0, 0])
    assert ds.features().shape == (3, 2)


def _per_sample_batches(loader):
    """What paddle.io.DataLoader collates from ``dataset[i]`` (the path of augmented or file-backed data)."""
    return [[t.numpy() for t in b] for b in paddle.io.DataLoader.__iter__(loader)]


@pytest.mark.parametrize("source", ["uint8_images", "float_tabular", "float_images_two_views"])
def test_gathered_batches_equal_the_per_sample_path(source):
    rng = np.random.default_rng(0)
    if source == "float_tabular":
        data, pipe = rng.normal(size=(70, 5)), Pipeline(kind="tabular", mean=(0.1,) * 5, std=(2.0,) * 5)
    elif source == "uint8_images":
        data = rng.integers(0, 256, size=(70, 6, 5, 3), dtype=np.uint8)
        pipe = Pipeline(kind="image", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), scale=1 / 255)
    else:
        data = rng.random((70, 4, 4, 1)).astype(np.float32)
        pipe = Pipeline(kind="image", mean=(0.5,), std=(0.2,))
    ds = ArrayDataset(data, rng.integers(0, 3, size=70), num_classes=3, pipeline=pipe)
    if source == "float_images_two_views":
        ds.extra_views = ((1, False),)
    loader = build_loader(ds, batch_size=32, shuffle=True, seed=4)
    assert ds.batchable
    loader.batch_sampler.set_epoch(2)
    fast = [[t.numpy() for t in b] for b in loader]
    slow = _per_sample_batches(loader)
    assert [len(b) for b in fast] == [len(b) for b in slow] == [3 + (source == "float_images_two_views")] * 3
    for fb, sb in zip(fast, slow):
        for f, s in zip(fb, sb):
            assert f.dtype == s.dtype and f.shape == s.shape
            np.testing.assert_array_equal(f, s)


def test_augmented_or_file_data_is_not_gathered(bundle):
    assert not bundle.train.batchable  # flip_crop augments
    assert bundle.train_eval.batchable
    with pytest.raises(ValueError, match="reads files or augments; load samples one by one"):
        bundle.train.get_batch([0, 1])
    files = ArrayDataset(["a.png", "b.png"], np.array([0, 1]), num_classes=2,
                         pipeline=Pipeline(kind="image", mean=(0.5,), std=(0.2,), channels=1))
    assert not files.batchable
