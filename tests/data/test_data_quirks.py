"""Data as users have it: each quirk the fixture generator writes gives the right values or one clear line
(DataError in-process; exit 2 without a traceback from the CLI)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from data_quirks import (
    brightness_pair_16bit,
    colour_folder,
    encode,
    mode_cases,
    save,
    write_bad_files,
    write_lines,
)
from PIL import Image

from robust_paddle.config import from_dict
from robust_paddle.data import build_data, build_loader
from robust_paddle.errors import DataError


def cfg(**data):
    data.setdefault("val_split", 0.0)
    data.setdefault("test_split", 0.0)
    return from_dict({"data": data, "seed": 0})


def run_cli(*args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "robust_paddle.cli", "-q", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_line_exit_2(res, *needles):
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robust-paddle: error: "), res.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# -------------------------------------------------------------------------------------- decoding values
def test_16bit_classes_keep_their_brightness(tmp_path):
    files = brightness_pair_16bit(str(tmp_path / "xray"), n=4)
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "xray"), mean=[0.0], std=[1.0]))
    assert b.input_shape == (1, 8, 8) and b.class_names == ["bright", "dark"]
    x = {int(lbl): b.train_eval[i][0] for i, lbl in enumerate(b.train_eval.labels)}
    truth = np.asarray(Image.open(files["dark"][0]), dtype=np.float64) / 65535
    np.testing.assert_allclose(b.train_eval.get_x(b.train_eval.paths.index(files["dark"][0]))[0], truth, rtol=1e-6)
    assert x[0].mean() > 0.7 and x[1].mean() < 0.04  # ~50000/65535 vs ~2000/65535: nothing clipped to 1


def test_every_mode_in_one_folder_decodes_to_configured_channels(tmp_path):
    for name, (src, _) in mode_cases(8, 8).items():
        if isinstance(src, bytes):
            (tmp_path / "f" / ("a" if len(name) % 2 else "b")).mkdir(parents=True, exist_ok=True)
            (tmp_path / "f" / ("a" if len(name) % 2 else "b") / f"{name.replace(';', '_')}.tif").write_bytes(src)
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "f"), channels=3, mean=[0.0] * 3, std=[1.0] * 3))
    xs = np.stack([b.train_eval[i][0] for i in range(len(b.train_eval))])
    assert xs.shape[1:] == (3, 8, 8) and np.isfinite(xs).all()


# ------------------------------------------------------------------------------ channels and size rules
def test_colour_folder_with_grey_first_file_stays_colour(tmp_path, caplog):
    files = colour_folder(str(tmp_path / "c"))
    with caplog.at_level(logging.WARNING):
        b = build_data(cfg(name="image_folder", path=str(tmp_path / "c")))
    assert b.input_shape == (3, 8, 8)
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "12 of 13 training images are colour" in warning and files["blue"][0] in warning


def test_file_list_with_rgb_first_line_in_grey_set_stays_grey(tmp_path, caplog):
    g = np.random.default_rng(0)
    lines = [f"{save(Image.fromarray(g.integers(0, 255, (6, 6, 3), dtype=np.uint8)), str(tmp_path / 'rgb.png'))} 0"]
    for i in range(6):
        lines.append(f"{save(Image.fromarray(g.integers(0, 255, (6, 6), dtype=np.uint8)), str(tmp_path / f'{i}.png'))}"
                     f" {i % 2}")
    lst = write_lines(str(tmp_path / "list.txt"), lines)
    with caplog.at_level(logging.WARNING):
        b = build_data(cfg(name="file_list", path=lst, root="/"))
    assert b.input_shape == (1, 6, 6)
    assert "rgb.png" in " ".join(r.getMessage() for r in caplog.records)


def test_mixed_sizes_without_image_size_is_one_error(tmp_path):
    for i, side in enumerate([8, 8, 8, 10]):
        save(Image.fromarray(np.zeros((side, side), np.uint8)), str(tmp_path / "m" / "ab"[i % 2] / f"{i}.png"))
    with pytest.raises(DataError, match=r"images have 2 different sizes \(width x height\): 8x8 \(3 file\(s\), "
                                        r"e\.g\. .*\); 10x10 \(1 file\(s\), e\.g\. .*3\.png\); set data\.image_size"):
        build_data(cfg(name="image_folder", path=str(tmp_path / "m")))
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "m"), image_size=5))
    assert b.input_shape == (1, 5, 5) and b.train[3][0].shape == (1, 5, 5)


def test_size_outside_the_probed_sample_is_caught_when_decoded(tmp_path, monkeypatch):
    import robust_paddle.data.imagecheck as ic

    monkeypatch.setattr(ic, "PROBE_MAX_FILES", 2)
    for i, side in enumerate([8, 9, 8, 8]):  # the 9x9 file (index 1) is not among the 2 probed ones (0 and 3)
        save(Image.fromarray(np.zeros((side, side), np.uint8)), str(tmp_path / "s" / "ab"[i // 2] / f"{i}.png"))
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "s"), mean=[0.0], std=[1.0]))
    loader = build_loader(b.train_eval, batch_size=2, shuffle=False, seed=0)
    with pytest.raises(DataError, match=r"1\.png: image is 9x9 \(width x height\), the other images are 8x8"):
        list(loader)


# ----------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("kind", ["zero", "random", "text"])
def test_unreadable_first_file_names_it(tmp_path, kind):
    colour_folder(str(tmp_path / "c"), grey_first=False)
    bad = write_bad_files(str(tmp_path / "bad"))[kind]
    os.replace(bad, str(tmp_path / "c" / "blue" / "0000.png"))
    with pytest.raises(DataError, match=r"c/blue/0000\.png: cannot read image: .*data\.on_bad_sample: skip"):
        build_data(cfg(name="image_folder", path=str(tmp_path / "c")))


def test_file_list_naming_a_non_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    save(Image.fromarray(np.zeros((4, 4), np.uint8)), str(tmp_path / "a.png"))
    lst = write_lines(str(tmp_path / "l.txt"), ["notes.txt 0", "a.png 1"])
    with pytest.raises(DataError, match=r"notes\.txt: cannot read image: not an image Pillow can read"):
        build_data(cfg(name="file_list", path=lst))


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_failure_in_thread_or_worker_is_one_error(tmp_path, workers):
    colour_folder(str(tmp_path / "c"), grey_first=False)
    truncated = write_bad_files(str(tmp_path / "bad"))["truncated"]
    target = str(tmp_path / "c" / "red" / "0003.png")
    with open(truncated, "rb") as src, open(target, "r+b") as dst:  # the header of a good 8x8 file, then garbage
        head = dst.read(60)
        dst.seek(0)
        dst.write(head + src.read()[60:200])
        dst.truncate()
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "c"), mean=[0.0] * 3, std=[1.0] * 3))
    loader = build_loader(b.train, batch_size=4, shuffle=True, seed=0, num_workers=workers)
    with pytest.raises(DataError, match=r"red/0003\.png: cannot read image: "):
        for _ in loader:
            pass
    with pytest.raises(DataError, match=r"red/0003\.png: cannot read image: "):  # direct indexing raises too
        b.train[b.train.paths.index(target)]


def test_skip_leaves_bad_files_out_of_every_split(tmp_path):
    colour_folder(str(tmp_path / "c"), n=10, grey_first=False)
    bad = write_bad_files(str(tmp_path / "bad"))
    moved = []
    for i, (kind, p) in enumerate(sorted(bad.items())):
        moved.append(str(tmp_path / "c" / ("red" if i % 2 else "blue") / f"bad_{kind}.png"))
        os.replace(p, moved[-1])
    b = build_data(cfg(name="image_folder", path=str(tmp_path / "c"), on_bad_sample="skip", val_split=0.2,
                       test_split=0.2))
    assert sorted(p for p, _ in b.skipped) == sorted(moved)
    used = set(b.train.paths) | set(b.val.paths) | set(b.test.paths)
    assert len(used) == 20 and not used & set(moved)
    # the kept files keep their row in the source (the sorted folder listing, bad files included)
    listing = sorted(str(p) for p in (tmp_path / "c" / "blue").iterdir()) + \
        sorted(str(p) for p in (tmp_path / "c" / "red").iterdir())
    for ds in (b.train, b.val, b.test):
        assert [listing[r] for r in ds.source_rows] == ds.paths


# ------------------------------------------------------------------------------------------- labels
def _png_list(tmp_path, labels, names=None):
    for i in range(len(labels)):
        save(Image.fromarray(np.full((4, 4), i, np.uint8)), str(tmp_path / "img" / f"{i:04d}.png"))
    return write_lines(str(tmp_path / "train.txt"), [f"img/{i:04d}.png {y}" for i, y in enumerate(labels)])


def test_label_outside_named_classes_names_file_and_line(tmp_path):
    lst = _png_list(tmp_path, [i % 10 for i in range(20)] + [12])
    with pytest.raises(DataError, match=r"train\.txt:21: label 12 is outside 0\.\.9 \(10 classes from data\.class_names\)"):
        build_data(cfg(name="file_list", path=lst, class_names=[str(i) for i in range(10)]))
    with pytest.raises(DataError, match=r"train\.txt:21: label 12 leaves a gap: no sample has label 10, 11"):
        build_data(cfg(name="file_list", path=lst))


def test_npz_labels_too_many_classes_nan_empty_one_class(tmp_path):
    x = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    np.savez(tmp_path / "big.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1_000_000]))
    with pytest.raises(DataError, match=r"sample 5: label 1000000 would make 1000001 classes, more than "
                                        r"data\.max_classes=1000"):
        build_data(cfg(name="npz", path=str(tmp_path / "big.npz")))
    xn = x.copy()
    xn[4, 1] = np.nan
    np.savez(tmp_path / "nan.npz", x=xn, y=np.array([0, 1, 0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"nan\.npz 'x' sample 4: the sample holds NaN \(1 sample\(s\) hold NaN or Inf\)"):
        build_data(cfg(name="npz", path=str(tmp_path / "nan.npz")))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 3), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match=r"empty\.npz 'x': the training data has no samples$"):
        build_data(cfg(name="npz", path=str(tmp_path / "empty.npz")))
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(6, np.int64))
    with pytest.raises(DataError, match=r"the training labels hold only one class \('0', 6 samples\); a classifier "
                                        r"needs at least 2"):
        build_data(cfg(name="npz", path=str(tmp_path / "one.npz")))


def test_windows_saved_file_list_and_noisy_labels(tmp_path):
    lst = _png_list(tmp_path, [0, 1, 0, 1])
    noisy = write_lines(str(tmp_path / "noisy.txt"), ["1", "1", "0", "1"])
    b = build_data(cfg(name="file_list", path=lst, noise={"kind": "file", "file": noisy}))
    assert b.train.paths[0].endswith("img/0000.png")
    np.testing.assert_array_equal(b.train.labels, [1, 1, 0, 1])


# ------------------------------------------------------------------------------------ CLI, end to end
def _train_args(tmp_path, **data):
    args = ["train", "-c", os.path.join(os.path.dirname(__file__), "..", "..", "configs", "_base_", "digits.yaml"),
            "-o", f"output_dir={tmp_path / 'run'}", "-o", "train.epochs=1", "-o", "train.progress=false",
            "-o", "train.report=false", "-o", "data.val_split=0.2", "-o", "data.test_split=0.2",
            "-o", "data.batch_size=8"]
    for k, v in data.items():
        args += ["-o", f"data.{k}={v}"]
    return args


def test_cli_mixed_sizes_and_non_utf8_config_exit_2(tmp_path):
    for i, side in enumerate([8, 8, 8, 8, 10, 8, 8, 8]):
        save(Image.fromarray(np.zeros((side, side), np.uint8)), str(tmp_path / "m" / "ab"[i % 2] / f"{i}.png"))
    one_line_exit_2(run_cli(*_train_args(tmp_path, name="image_folder", path=tmp_path / "m")),
                    "images have 2 different sizes", "data.image_size")
    nonutf8 = tmp_path / "bad.yaml"
    nonutf8.write_bytes(b"seed: 1\n# r\xe9sum\xe9\n")
    one_line_exit_2(run_cli("train", "-c", str(nonutf8)), "bad.yaml:2: byte 0xe9 at column 4 is not UTF-8")


def test_cli_loader_failure_in_a_worker_exit_2(tmp_path):
    colour_folder(str(tmp_path / "c"), grey_first=False)
    target = str(tmp_path / "c" / "red" / "0003.png")
    with open(target, "r+b") as fh:  # keep the header, break the pixel data
        fh.seek(60)
        fh.write(b"\0" * 40)
    # the bound is for a loaded machine (the run's output pipes close once the worker and its fork server exit)
    res = run_cli(*_train_args(tmp_path, name="image_folder", path=tmp_path / "c", num_workers=1, mean="[0,0,0]",
                               std="[1,1,1]"), timeout=240)
    one_line_exit_2(res, "red/0003.png: cannot read image")


def test_cli_every_quirk_with_skip_trains_to_the_end(tmp_path):
    root = tmp_path / "mix"
    cases = mode_cases(8, 8)
    g = np.random.default_rng(1)
    for k, (name, (src, _)) in enumerate(sorted(cases.items())):
        if isinstance(src, bytes):
            for cls in "ab":
                (root / cls).mkdir(parents=True, exist_ok=True)
                (root / cls / f"{k:02d}_{name.replace(';', '_')}.tif").write_bytes(src)
    for cls in "ab":
        for i in range(4):  # other sizes too (data.image_size resizes them)
            save(Image.fromarray(g.integers(0, 255, (12, 9, 3), dtype=np.uint8)), str(root / cls / f"big{i}.png"))
    bad = write_bad_files(str(tmp_path / "bad"))
    moved = sorted(str(root / "ab"[i % 2] / f"zz_{k}.png") for i, k in enumerate(bad))
    for i, (k, p) in enumerate(bad.items()):
        os.replace(p, str(root / "ab"[i % 2] / f"zz_{k}.png"))
    res = run_cli(*_train_args(tmp_path, name="image_folder", path=root, image_size=8, on_bad_sample="skip"),
                  timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    listed = (tmp_path / "run" / "skipped_files.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(listed) == moved


def test_class_names_file_from_a_windows_editor(tmp_path):
    lst = _png_list(tmp_path, [0, 1, 2, 0, 1, 2])
    names = write_lines(str(tmp_path / "names.txt"), ["cat", "dog ", "", "eel"])
    b = build_data(cfg(name="file_list", path=lst, class_names=names))
    assert b.class_names == ["cat", "dog", "eel"] and b.num_classes == 3
    two = write_lines(str(tmp_path / "two.txt"), ["cat", "dog"])
    with pytest.raises(DataError, match=r"train\.txt:3: label 2 is outside 0\.\.1 \(2 classes from data\.class_names\)"):
        build_data(cfg(name="file_list", path=lst, class_names=two))
    dup = write_lines(str(tmp_path / "dup.txt"), ["cat", "dog", "cat"])
    with pytest.raises(DataError, match=r"dup\.txt:3: 'cat' repeats line 1; class names must be unique"):
        build_data(cfg(name="file_list", path=lst, class_names=dup))


def test_uint16_npz_images_scale_like_16bit_files(tmp_path):
    x = np.stack([np.full((4, 4), 2000, np.uint16), np.full((4, 4), 50000, np.uint16)] * 3)
    np.savez(tmp_path / "u16.npz", x=x, y=np.array([0, 1] * 3))
    b = build_data(cfg(name="npz", path=str(tmp_path / "u16.npz"), mean=[0.0], std=[1.0]))
    png = encode(Image.fromarray(x[1]))
    from robust_paddle.data.decode import decode_image

    np.testing.assert_allclose(b.train_eval[1][0][0], decode_image(png, channels=1)[..., 0], rtol=1e-6)
    np.testing.assert_allclose(b.train_eval[0][0], 2000 / 65535, rtol=1e-6)
