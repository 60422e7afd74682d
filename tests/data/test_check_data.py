"""``robust-paddle check-data``: counts, sizes, modes, unreadable files, duplicates and leakage, label problems,
realised noise; the report file and the exit status."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
from data_quirks import colour_folder, save, write_bad_files, write_lines
from PIL import Image

from robust_paddle import cli
from robust_paddle.config import from_dict
from robust_paddle.data.check_data import check_data, format_summary


def cfg(tmp_path, **data):
    data.setdefault("val_split", 0.0)
    data.setdefault("test_split", 0.0)
    return from_dict({"data": data, "seed": 0, "output_dir": str(tmp_path / "out")})


def test_image_folder_report(tmp_path):
    files = colour_folder(str(tmp_path / "c"), n=6)  # blue/0000.png is grey, the rest colour 8x8
    bad = write_bad_files(str(tmp_path / "bad"))
    os.replace(bad["zero"], str(tmp_path / "c" / "red" / "zz.png"))
    shutil.copy(files["red"][0], str(tmp_path / "c" / "red" / "copy.png"))  # exact duplicate, same label
    shutil.copy(files["red"][1], str(tmp_path / "c" / "blue" / "copy.png"))  # duplicate with another label
    save(Image.fromarray(np.zeros((10, 8, 3), np.uint8)), str(tmp_path / "c" / "blue" / "tall.png"))
    rep = check_data(cfg(tmp_path, name="image_folder", path=str(tmp_path / "c")), progress=False)
    assert rep["splits"]["train"]["samples"] == 17 and rep["splits"]["train"]["per_class"] == {"blue": 9, "red": 8}
    assert rep["imbalance_ratio"] == 9 / 8
    assert rep["unreadable_count"] == 1 and rep["unreadable"][0]["path"].endswith("red/zz.png")
    assert rep["image_sizes"] == {"8x8": 15, "8x10": 1} and rep["modes"] == {"RGB": 15, "L": 1}
    assert rep["channels"] == 3 and rep["channels_seen"] == {"1": 1, "3": 15}
    dup = rep["duplicates"]
    assert dup["exact_duplicate_groups"] == 2 and dup["duplicate_samples"] == 2 and dup["label_conflict_groups"] == 1
    problems = " | ".join(rep["problems"])
    assert "1 unreadable file(s)" in problems and "2 different sizes" in problems
    on_disk = json.loads((tmp_path / "out" / "data_report.json").read_text(encoding="utf-8"))
    assert on_disk["duplicates"] == dup and on_disk["unreadable_count"] == 1
    assert "problems that stop training: 2" in format_summary(rep)


def test_leakage_between_train_and_test_and_realised_noise(tmp_path):
    g = np.random.default_rng(0)
    x = g.random((40, 5)).astype(np.float32)
    y = np.arange(40) % 2
    x_test = np.concatenate([x[:3], g.random((7, 5)).astype(np.float32)])
    y_clean = y.copy()
    y[:4] = 1 - y[:4]
    np.savez(tmp_path / "d.npz", x=x, y=y, y_clean=y_clean, x_test=x_test, y_test=np.arange(10) % 2)
    rep = check_data(cfg(tmp_path, name="npz", path=str(tmp_path / "d.npz"), val_split=0.25), progress=False)
    assert set(rep["splits"]) == {"train", "val", "test"}
    assert rep["duplicates"]["cross_split_groups"] == 3
    noisy_train = rep["splits"]["train"]["realised_noise_rate"] * rep["splits"]["train"]["samples"]
    noisy_val = rep["splits"]["val"]["realised_noise_rate"] * rep["splits"]["val"]["samples"]
    assert round(noisy_train + noisy_val) == 4 and rep["problems"] == []
    inj = check_data(cfg(tmp_path, name="npz", path=str(tmp_path / "d.npz"),
                         noise={"kind": "symmetric", "rate": 0.5}), progress=False)
    assert inj["injected_noise"]["realised_rate_train"] == 0.5  # exact sampling: round(0.5 * n) per class


def test_label_problems_are_all_reported_and_cli_exits_2(tmp_path, capsys):
    for i in range(6):
        save(Image.fromarray(np.full((4, 4), i, np.uint8)), str(tmp_path / "img" / f"{i}.png"))
    lst = write_lines(str(tmp_path / "train.txt"), [f"img/{i}.png {y}" for i, y in enumerate([0, 1, 0, 1, 0, 12])])
    conf = tmp_path / "c.yaml"
    conf.write_text(f"data: {{name: file_list, path: {lst}, val_split: 0, test_split: 0}}\noutput_dir: {tmp_path}/o\n")
    code = cli.main(["-q", "check-data", "-c", str(conf), "--out", str(tmp_path / "rep")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip().splitlines() == [
        f"robust-paddle: error: check-data found 1 problem(s) that stop training, the first: {lst}:6: label 12 "
        "leaves a gap: no sample has label 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 (classes inferred from the labels "
        "must be 0..C-1); fix the label, or name the classes with data.class_names"]
    rep = json.loads((tmp_path / "rep" / "data_report.json").read_text(encoding="utf-8"))
    assert rep["num_classes"] == 13 and rep["splits"]["train"]["per_class"]["12"] == 1
    assert "problems that stop training: 1" in captured.out
    ok = tmp_path / "ok.yaml"
    ok.write_text(f"data: {{name: file_list, path: {lst}, val_split: 0, test_split: 0, "
                  f"class_names: [{', '.join(f'c{i}' for i in range(13))}]}}\noutput_dir: {tmp_path}/o\n")
    assert cli.main(["-q", "check-data", "-c", str(ok)]) == 0
    assert (tmp_path / "o" / "data_report.json").is_file()
