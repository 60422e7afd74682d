"""Every DATASETS source on tiny files written in tmp_path: shapes, dtypes, labels, class names, errors."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from robust_paddle.config import from_dict
from robust_paddle.data import build_data
from robust_paddle.registry import DATASETS


def cfg(seed=0, **data):
    return from_dict({"seed": seed, "data": data})


def check_dataset(ds, shape, num_classes):
    x, y, i = ds[len(ds) - 1]
    assert x.shape == shape and x.dtype == np.float32
    assert isinstance(y, np.int64) and isinstance(i, np.int64) and int(i) == len(ds) - 1
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (len(ds),)
    assert ds.num_classes == num_classes and np.all(ds.labels < num_classes)


def write_images(root, n_per_class, classes, size=(6, 5), mode="RGB"):
    """PNG files root/<class>/img_k.png with a class-dependent colour; returns [(relative path, label)]."""
    rng = np.random.default_rng(0)
    items = []
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(n_per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            arr = np.clip(rng.normal(40 + 80 * label, 10, size=shape), 0, 255).astype(np.uint8)
            Image.fromarray(arr, mode=mode).save(root / name / f"img_{k}.png")
            items.append((f"{name}/img_{k}.png", label))
    return items


@pytest.mark.parametrize("name", ["digits", "npz", "file_list", "image_folder", "mnist", "fashion_mnist",
                                  "cifar10", "cifar100"])
def test_sources_are_registered(name):
    assert name in DATASETS


def test_digits_default():
    b = build_data(cfg())
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10 and b.class_names == [str(i) for i in range(10)]
    assert len(b.train) + len(b.val) + len(b.test) == 1797
    check_dataset(b.train, (1, 8, 8), 10)
    np.testing.assert_array_equal(b.train.labels, b.train.clean_labels)
    assert b.train.paths is None and b.noise is None
    raw = b.train_eval.pipeline.raw(b.train_eval.data[0])
    assert raw.min() >= 0 and raw.max() <= 1  # scaled to [0, 1] before normalisation
    x = np.stack([b.train_eval[i][0] for i in range(len(b.train_eval))])
    assert abs(x.mean()) < 1e-3 and x.std() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npz_images(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 7, 7, 3), dtype=np.uint8)
    if layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    elif layout == "nhw":
        x = x[..., 0]
    y = np.repeat(np.arange(4), 10)
    y_clean = y.copy()
    y[:4] = (y[:4] + 1) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y, y_clean=y_clean, x_test=x[:8], y_test=y_clean[:8],
             class_names=np.array(["a", "b", "c", "d"]))
    b = build_data(cfg(name="npz", path=str(tmp_path / "d.npz"), val_split=0.25))
    c = 1 if layout == "nhw" else 3
    assert b.input_shape == (c, 7, 7) and b.class_names == ["a", "b", "c", "d"] and b.scale == pytest.approx(1 / 255)
    check_dataset(b.train, (c, 7, 7), 4)
    assert len(b.test) == 8 and len(b.val) == 10 and len(b.train) == 30
    assert b.train.clean_labels is not None and np.sum(b.train.labels != b.train.clean_labels) + np.sum(
        b.val.labels != b.val.clean_labels) == 4


def test_npz_tabular_and_separate_splits(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, size=(30, 6)).astype(np.float32)
    y = np.arange(30) % 3
    np.savez(tmp_path / "t.npz", x=x, y=y)
    np.savez(tmp_path / "v.npz", x=x[:6], y=y[:6])
    np.savez(tmp_path / "bad.npz", x=x[:6, :4], y=y[:6])
    b = build_data(cfg(name="npz", path=str(tmp_path / "t.npz"), val_path=str(tmp_path / "v.npz"), test_split=0.2))
    assert b.input_shape == (6,) and len(b.val) == 6 and len(b.test) == 6 and len(b.train) == 24
    check_dataset(b.train, (6,), 3)
    assert len(b.mean) == 6 and b.train.clean_labels is None
    feats = np.stack([b.train[i][0] for i in range(len(b.train))])
    np.testing.assert_allclose(feats.mean(0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="needs image data; this source is tabular"):
        build_data(cfg(name="npz", path=str(tmp_path / "t.npz"), augment="flip"))
    with pytest.raises(ValueError, match="do not match the training data"):
        build_data(cfg(name="npz", path=str(tmp_path / "t.npz"), val_path=str(tmp_path / "bad.npz")))
    np.savez(tmp_path / "nolabels.npz", x=x)
    with pytest.raises(ValueError, match="needs arrays 'x' and 'y'; found x"):
        build_data(cfg(name="npz", path=str(tmp_path / "nolabels.npz")))
    with pytest.raises(ValueError, match="data.path is empty"):
        build_data(cfg(name="npz"))


def test_file_list_with_pngs(tmp_path):
    items = write_images(tmp_path / "img", 4, ["cat", "dog", "eel"])
    lines = [f"{p} {label}" for p, label in items]
    (tmp_path / "train.txt").write_text("\n".join(lines[:-3]) + "\n\n")
    (tmp_path / "test.txt").write_text("\n".join(lines[-3:]) + "\n")
    b = build_data(cfg(name="file_list", path=str(tmp_path / "train.txt"), test_path=str(tmp_path / "test.txt"),
                       root=str(tmp_path / "img"), val_split=0.0, augment="flip_crop",
                       class_names=["cat", "dog", "eel"]))
    assert b.input_shape == (3, 5, 6) and len(b.train) == 9 and len(b.test) == 3 and b.val is None
    check_dataset(b.train, (3, 5, 6), 3)
    assert b.train.paths[0].endswith("cat/img_0.png") and b.class_names == ["cat", "dog", "eel"]
    assert len(b.mean) == 3 and all(s > 0 for s in b.std)
    g = build_data(cfg(name="file_list", path=str(tmp_path / "train.txt"), root=str(tmp_path / "img"),
                       val_split=0.0, test_split=0.0, channels=1, image_size=4))
    check_dataset(g.train, (1, 4, 4), 3)
    (tmp_path / "bad.txt").write_text("cat/img_0.png zero\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: label 'zero' is not an integer"):
        build_data(cfg(name="file_list", path=str(tmp_path / "bad.txt"), root=str(tmp_path / "img")))
    (tmp_path / "missing.txt").write_text("cat/nope.png 0\ncat/img_0.png 1\n")
    with pytest.raises(ValueError, match="1 image\\(s\\) not found"):
        build_data(cfg(name="file_list", path=str(tmp_path / "missing.txt"), root=str(tmp_path / "img")))


def test_image_folder(tmp_path):
    write_images(tmp_path / "train", 5, ["b_dog", "a_cat"], mode="L")
    write_images(tmp_path / "val", 2, ["b_dog"], mode="L")
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "train"), val_path=str(tmp_path / "val"),
                       test_split=0.2, image_size=8))
    assert b.class_names == ["a_cat", "b_dog"] and b.input_shape == (1, 8, 8)
    assert len(b.val) == 2 and np.all(b.val.labels == 1) and len(b.test) == 2 and len(b.train) == 8
    check_dataset(b.train, (1, 8, 8), 2)
    rgb = build_data(cfg(name="image_folder", root=str(tmp_path / "train"), channels=3, test_split=0.0,
                         val_split=0.0))
    check_dataset(rgb.train, (3, 5, 6), 2)
    write_images(tmp_path / "other", 1, ["zebra"])
    with pytest.raises(ValueError, match="class folder\\(s\\) zebra are not among the training classes"):
        build_data(cfg(name="image_folder", path=str(tmp_path / "train"), val_path=str(tmp_path / "other")))


def write_idx(root, prefix, images, labels):
    with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_like_from_idx_files(tmp_path, name):
    rng = np.random.default_rng(0)
    # paddle.vision's reader parses in blocks of 100 samples (true of the real files)
    tr = rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
    write_idx(tmp_path, "train", tr, np.arange(200) % 10)
    write_idx(tmp_path, "t10k", te, np.arange(100) % 10)
    b = build_data(cfg(name=name, root=str(tmp_path), val_split=0.1))
    assert b.input_shape == (1, 28, 28) and len(b.test) == 100 and len(b.val) == 20 and len(b.train) == 180
    check_dataset(b.train, (1, 28, 28), 10)
    assert b.mean == [0.1307] if name == "mnist" else b.class_names[0] == "T-shirt/top"
    x0 = b.train_eval.pipeline.raw(b.train_eval.data[0])
    assert x0.shape == (28, 28, 1)
    np.testing.assert_allclose(b.test.data[5, :, :, 0], te[5])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz.*data.download=true"):
        build_data(cfg(name=name, root=str(tmp_path / "empty")))


def write_cifar(path, folder, batches):
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in batches.items():
            raw = pickle.dumps(payload)
            info = tarfile.TarInfo(f"{folder}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_from_python_tar(tmp_path, name):
    rng = np.random.default_rng(0)
    key = b"labels" if name == "cifar10" else b"fine_labels"
    c = 10 if name == "cifar10" else 100
    data = rng.integers(0, 256, size=(30, 3072), dtype=np.uint8)
    members = ({"data_batch_1": {b"data": data[:20], key: list(range(10)) * 2},
                "test_batch": {b"data": data[20:], key: list(range(10))}} if name == "cifar10" else
               {"train": {b"data": data[:20], key: list(range(10)) * 2}, "test": {b"data": data[20:], key: list(range(10))}})
    archive = "cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz"
    write_cifar(tmp_path / archive, "cifar-x", members)
    b = build_data(cfg(name=name, root=str(tmp_path), val_split=0.5, augment="flip_crop"))
    assert b.num_classes == c and len(b.class_names) == c and b.input_shape == (3, 32, 32)
    assert len(b.test) == 10 and len(b.train) == 10 and len(b.val) == 10
    check_dataset(b.train, (3, 32, 32), c)
    np.testing.assert_array_equal(b.test.data[0], data[20].reshape(3, 32, 32).transpose(1, 2, 0))
    assert b.class_names[1] == ("automobile" if name == "cifar10" else "aquarium_fish")
    with pytest.raises(ValueError, match=f"{archive}.*data.download=true"):
        build_data(cfg(name=name, root=str(tmp_path / "none")))


class _WritesMarker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def test_crafted_cifar_archive_never_runs_code(tmp_path):
    marker = tmp_path / "marker"
    write_cifar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                {"data_batch_1": {b"data": _WritesMarker(marker), b"labels": [0]}})
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_1: refused to "
                                         r"load: the file references builtins.exec"):
        build_data(cfg(name="cifar10", root=str(tmp_path)))
    assert not marker.exists()


def test_cifar_archive_that_is_not_cifar(tmp_path):
    write_cifar(tmp_path / "cifar-10-python.tar.gz", "x", {"data_batch_1": {b"data": np.zeros((2, 5), np.uint8),
                                                                            b"labels": [0, 1]}})
    with pytest.raises(ValueError, match=r"data_batch_1: not a CIFAR batch \(b'data' must be an \(N, 3072\)"):
        build_data(cfg(name="cifar10", root=str(tmp_path)))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cifar-10-python.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(ValueError, match="cannot be read as a tar archive"):
        build_data(cfg(name="cifar10", root=str(tmp_path / "bad")))
