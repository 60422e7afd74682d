"""A small synthetic review corpus (two classes told apart by their words) written as CSV / TSV / JSONL."""

from __future__ import annotations

import csv
import json
import os

import numpy as np

POS = ["很好", "不错", "喜欢", "满意", "推荐", "快", "漂亮", "舒服"]
NEG = ["很差", "失望", "糟糕", "难看", "退货", "慢", "脏", "后悔"]
FILL = ["这个", "东西", "质量", "价格", "快递", "服务", "我们", "觉得", "还是", "一个"]


def make_texts(n: int, *, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` texts with labels ``pos`` / ``neg``; each text mixes filler words with two or three class words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        pos = i % 2 == 0
        words = list(rng.choice(FILL, size=int(rng.integers(4, 12))))
        for _ in range(int(rng.integers(2, 4))):
            words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POS if pos else NEG)))
        texts.append("".join(words))
        labels.append("pos" if pos else "neg")
    return texts, labels


def write_corpus(folder: str, n: int = 240, *, fmt: str = "csv", seed: int = 0, name: str = "train") -> str:
    """Write ``n`` samples (columns ``text``, ``label``, ``clean``) as ``<folder>/<name>.<fmt>``; returns the path."""
    texts, labels = make_texts(n, seed=seed)
    path = os.path.join(folder, f"{name}.{fmt}")
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for t, y in zip(texts, labels):
                fh.write(json.dumps({"text": t, "label": y, "clean": y}, ensure_ascii=False) + "\n")
        return path
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="," if fmt == "csv" else "\t")
        w.writerow(["text", "label", "clean"])
        for t, y in zip(texts, labels):
            w.writerow([t, y, y])
    return path


def text_config(path: str, out: str, **over) -> dict:
    """A quick text run config (TextCNN, 24 tokens, 2 epochs) as a plain dict."""
    cfg = {"seed": 0, "output_dir": out,
           "data": {"name": "text", "path": path, "val_split": 0.2, "test_split": 0.2, "batch_size": 32,
                    "eval_batch_size": 128, "text": {"max_length": 24, "vocab_size": 200}},
           "model": {"name": "textcnn", "params": {"embed_dim": 16, "num_filters": 8, "kernel_sizes": [2, 3]}},
           "optimizer": {"name": "adam", "lr": 0.01, "weight_decay": 0.0}, "scheduler": {"name": "constant"},
           "train": {"epochs": 2, "visualdl": False, "progress": False, "checkpoint_every": 0, "calibration": False}}
    for k, v in over.items():
        node = cfg
        *head, last = k.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = v
    return cfg
