"""Streaming image data at scale: loader throughput, peak memory and epoch time against N.

A folder of synthetic JPEGs (``--image`` px squares, 10 classes of smooth coloured noise) is generated once
under ``--root``; runs use its first N files through a PaddleClas file list. Three measurements:

1. **Loader throughput** (images/s over one pass of ``--loader-n`` files, batch 128, ``--workers`` workers):
   the product's training loader (``data.augment: [random_resized_crop, hflip]`` to ``--crop`` px, the one
   decoder, per-sample seeded ops, normalisation) against a plain ``paddle.io.DataLoader`` +
   ``paddle.vision.transforms`` + PIL pipeline with the same ops (PIL decode -> RandomResizedCrop ->
   RandomHorizontalFlip -> float CHW -> Normalize) and the same worker count, and that pipeline with its
   ToTensor/Normalize tail done in numpy (``plain_numpy``, the faster plain variant). They alternate,
   ``--rounds`` times; medians. Target: product >= 0.9x plain.
2. **Peak RSS** of a training process (a fresh subprocess per N: build the run -- data, method, loaders --,
   then ``--rss-steps`` training steps of standard CE with 2 loader workers): ``ru_maxrss`` of the process and
   of its largest worker. Target: <= 1.5 GB at 50,000 images and within 10% of the 10,000-image figure.
3. **Epoch time against N** per method (small CNN, ``--epoch-sizes``, the second of two epochs -- after a
   one-epoch warm-up for the methods that divide --, no evaluation): seconds per epoch including the
   method's per-epoch division, each N measured ``--epoch-rounds`` times with the order of the sizes rotated
   every round, median per N, wall-clock and CPU seconds (this process and its joined loader workers: the
   work, which a loaded shared machine inflates less than wall time). Linear growth: seconds per 1,000
   samples within 15% across N (also printed: t(2N)/t(N) and the least-squares line t = a + b N, whose a is
   the fixed per-epoch cost). The share of the
   per-sample passes (``time/divide_s``: the eval-mode loss pass over the training set and the GMM fits) in
   the epoch. Target: <= 25%.

Prints tables and writes ``benchmarks/results/data_throughput.json`` with the machine load (``uptime``).

    .venv/bin/python benchmarks/data_throughput.py                        # N up to 50,000 for RSS
    .venv/bin/python benchmarks/data_throughput.py --rss-sizes 10000,50000 --epoch-sizes 1000,2000,4000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


# ------------------------------------------------------------------------------------------------ data
def make_images(root: str, n: int, *, size: int) -> str:
    """JPEGs ``root/img/<k>.jpg`` for k < n (kept between runs) and ``root/list_<n>.txt``; returns the list."""
    from PIL import Image

    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.random((10, 3)) * 200 + 20
    lines = []
    for k in range(n):
        rel = f"img/{k}.jpg"
        path = os.path.join(root, rel)
        label = k % 10
        if not os.path.exists(path):
            r = np.random.default_rng(k)
            small = r.normal(base[label], 40, size=(size // 8, size // 8, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(small).resize((size, size), Image.BILINEAR).save(path, quality=90)
        lines.append(f"{rel} {label}\n")
    out = os.path.join(root, f"list_{n}.txt")
    with open(out, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return out


def cfg_for(list_path: str, *, crop: int, workers: int, extra: dict[str, Any] | None = None, out: str = ""):
    from robust_paddle import config as config_mod

    values = {"data": {"name": "file_list", "path": list_path, "image_size": crop, "channels": 3,
                       "augment": [{"name": "random_resized_crop"}, {"name": "hflip"}], "val_split": 0.0,
                       "test_split": 0.0, "mean": MEAN, "std": STD, "batch_size": 128, "num_workers": workers},
              "model": {"name": "small_cnn", "params": {"channels": [16, 32, 64]}},
              "train": {"epochs": 2, "progress": False, "visualdl": False, "report": False, "calibration": False,
                        "checkpoint_every": 0, "eval_every": 1000, "monitor": "train/loss", "monitor_mode": "min"},
              "output_dir": out or os.path.join(os.path.dirname(list_path), "run")}
    cfg = config_mod.from_dict(values)
    return config_mod.with_values(cfg, extra or {})


# ----------------------------------------------------------------------------------------- throughput
def product_loader(list_path: str, *, crop: int, workers: int):
    from robust_paddle.data import build_data, build_loader

    data = build_data(cfg_for(list_path, crop=crop, workers=workers))
    return build_loader(data.train, batch_size=128, shuffle=True, seed=0, num_workers=workers)


def plain_loader(list_path: str, *, crop: int, workers: int, numpy_tail: bool = False):
    import paddle
    import paddle.vision.transforms as T
    from PIL import Image

    root = os.path.dirname(list_path)
    with open(list_path, encoding="utf-8") as fh:
        items = [(os.path.join(root, p), int(y)) for p, y in (line.rsplit(maxsplit=1) for line in fh)]
    if numpy_tail:  # the same geometry, then normalisation in numpy instead of paddle tensors per sample
        geo = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip()])
        mean, inv_std = np.float32(MEAN), np.float32(1.0) / np.float32(STD)

        def tf(im):
            x = (np.asarray(geo(im), dtype=np.float32) * np.float32(1 / 255) - mean) * inv_std
            return np.ascontiguousarray(x.transpose(2, 0, 1))
    else:
        tf = T.Compose([T.RandomResizedCrop(crop), T.RandomHorizontalFlip(), T.ToTensor(data_format="CHW"),
                        T.Normalize(MEAN, STD, data_format="CHW")])

    class Folder(paddle.io.Dataset):
        def __len__(self):
            return len(items)

        def __getitem__(self, i):
            path, y = items[i]
            with Image.open(path) as im:
                x = tf(im.convert("RGB"))
            return x, np.int64(y), np.int64(i)

    return paddle.io.DataLoader(Folder(), batch_size=128, shuffle=True, num_workers=workers, return_list=True)


def images_per_s(loader) -> float:
    t0, n = time.perf_counter(), 0
    if hasattr(loader.batch_sampler, "set_epoch"):
        loader.batch_sampler.set_epoch(0)
    for x, _, _ in loader:
        n += int(x.shape[0])
    return n / (time.perf_counter() - t0)


def throughput(list_path: str, *, crop: int, workers: int, rounds: int) -> dict[str, Any]:
    loaders = {"product": product_loader(list_path, crop=crop, workers=workers),
               "plain": plain_loader(list_path, crop=crop, workers=workers),
               "plain_numpy": plain_loader(list_path, crop=crop, workers=workers, numpy_tail=True)}
    rates: dict[str, list[float]] = {k: [] for k in loaders}
    names = list(loaders)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            rates[name].append(images_per_s(loaders[name]))
            print(f"  round {r + 1} {name:<12} {rates[name][-1]:8.0f} img/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    best_plain = max(med["plain"], med["plain_numpy"])
    return {"rates": rates, "median": med, "ratio": med["product"] / med["plain"],
            "ratio_vs_best_plain": med["product"] / best_plain, "uptime": os.popen("uptime").read().strip()}


# ------------------------------------------------------------------------------------------------ RSS
def rss_child(list_path: str, crop: int, steps: int, out: str) -> None:
    """In a fresh process: build the run and take ``steps`` training steps; print peak RSS as JSON."""
    from robust_paddle.pipeline.build import build_run

    cfg = cfg_for(list_path, crop=crop, workers=2, out=out)
    run = build_run(cfg, output_dir=out, hooks=[])
    loader, tr = run.loaders["train"], run.trainer
    loader.batch_sampler.set_epoch(0)
    done = 0
    for batch in loader:
        loss, _ = run.method.train_step(batch, epoch=0, step=done)
        loss.backward()
        tr.optimizer.step()
        tr.optimizer.clear_grad()
        done += 1
        if done >= steps:
            break
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": len(run.data.train), "steps": done, "peak_rss_mb": me, "worker_peak_rss_mb": kids}))


def peak_rss(list_path: str, *, crop: int, steps: int, out: str) -> dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--rss-child", list_path, "--crop", str(crop),
           "--rss-steps", str(steps), "--workdir", out]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ})
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- epoch time
def epoch_time(list_path: str, method: str, *, crop: int, workers: int, out: str) -> dict[str, Any]:
    from robust_paddle.pipeline.build import build_run

    name, _, loss = method.partition("+")
    extra = {"method.name": name, **({"loss.name": loss} if loss else {})}
    preset = C.method_preset(name, "digits")
    extra.update({k: v for k, v in preset.items() if k.startswith("method.")})
    if name in ("dividemix", "gmm_correction"):  # divide from the second epoch on
        extra["method.params"] = {**extra.get("method.params", {}), "warmup_epochs": 1}
        if name == "dividemix":
            extra["method.params"]["warmup"] = "ce"
    cfg = cfg_for(list_path, crop=crop, workers=workers, extra=extra, out=out)
    timer = C.epoch_timer()
    run = build_run(cfg, output_dir=out, hooks=[timer])
    run.trainer.fit()
    row = timer.rows[-1]
    hist = run.trainer.history[-1]
    divide = float(hist.get("time/divide_s", 0.0))
    n = len(run.data.train)
    epoch_s = row["epoch_s"]  # to the end of method.after_epoch, where the next epoch's division runs
    return {"method": method, "n": n, "epoch_s": epoch_s, "train_s": row["train_s"], "divide_s": divide,
            "s_per_1k": 1000 * epoch_s / n, "cpu_s": row["cpu_s"], "cpu_s_per_1k": 1000 * row["cpu_s"] / n,
            "pass_share": divide / epoch_s if divide else None}


def epoch_sweep(lists: dict[int, str], sizes: list[int], method: str, *, rounds: int, crop: int, workers: int,
                root: str, partial: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``epoch_time`` at every N, ``rounds`` times, the order of the sizes rotated each round (so a drift in the
    machine load hits every N alike); one row per N with the median epoch and every round's seconds."""
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for r in range(rounds):
        for n in sizes[r % len(sizes):] + sizes[:r % len(sizes)]:
            row = epoch_time(lists[n], method, crop=crop, workers=workers, out=os.path.join(root, f"ep_{method}_{n}"))
            runs[n].append(row)
            partial[1].setdefault("epoch_runs", []).append({**row, "round": r, "uptime": C.uptime()})
            C.save_json(partial[0], partial[1])  # a long run keeps what it measured so far
            share = f", per-sample passes {100 * row['pass_share']:.1f}%" if row["pass_share"] is not None else ""
            print(f"round {r + 1} {method:<14} N={n:<6} epoch {row['epoch_s']:7.1f} s  {row['s_per_1k']:.2f} s/1k  "
                  f"CPU {row['cpu_s_per_1k']:.2f} s/1k{share}", flush=True)
    out = []
    for n in sizes:
        mid = sorted(runs[n], key=lambda x: x["epoch_s"])[(len(runs[n]) - 1) // 2]  # the median round
        cpu = sorted(x["cpu_s"] for x in runs[n])[(len(runs[n]) - 1) // 2]
        out.append({**mid, "cpu_s": cpu, "cpu_s_per_1k": 1000 * cpu / n, "rounds": len(runs[n]),
                    "epoch_s_rounds": [x["epoch_s"] for x in runs[n]], "cpu_s_rounds": [x["cpu_s"] for x in runs[n]]})
    return out


def linearity(rows: list[dict[str, Any]], key: str = "epoch_s") -> dict[str, Any]:
    """How far epoch time (``key``: wall ``epoch_s`` or ``cpu_s``) is from proportional to N: ``spread`` =
    max/min of seconds per sample - 1 (target <= 0.15), ``growth`` = t(N_i+1)/t(N_i) next to N_i+1/N_i, and the
    least-squares line t = a + b N (a: the fixed per-epoch cost)."""
    n = np.array([r["n"] for r in rows], dtype=np.float64)
    t = np.array([r[key] for r in rows], dtype=np.float64)
    per = t / n
    slope, intercept = np.polyfit(n, t, 1)
    return {"method": rows[0]["method"], "measure": key, "n": n.astype(int).tolist(),
            "spread": float(per.max() / per.min() - 1), "growth": [float(b / a) for a, b in zip(t, t[1:])],
            "n_ratio": [float(b / a) for a, b in zip(n, n[1:])], "slope_s": float(slope), "intercept_s": float(intercept)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="/tmp/rp_data_throughput", help="where the JPEGs are generated (kept)")
    p.add_argument("--image", type=int, default=96)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader-n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rss-sizes", default="10000,50000")
    p.add_argument("--rss-steps", type=int, default=30)
    p.add_argument("--epoch-sizes", default="5000,20000,50000")
    p.add_argument("--methods", default="standard+ce,co_teaching,dividemix")
    p.add_argument("--epoch-rounds", type=int, default=3, help="measurements per N, alternating the sizes")
    p.add_argument("--skip", default="", help="comma list of parts to skip: throughput,rss,epoch")
    p.add_argument("--out", default=os.path.join(C.RESULTS, "data_throughput.json"))
    p.add_argument("--rss-child", default="")
    p.add_argument("--workdir", default="")
    args = p.parse_args(argv)
    try:  # before any data is written or trained
        for m in C.split_list(args.methods):
            C.parse_plain_method(m)
    except ValueError as e:
        p.error(f"--methods: {e}")
    if args.rss_child:
        rss_child(args.rss_child, args.crop, args.rss_steps, args.workdir)
        return {}
    skip = set(C.split_list(args.skip))
    rss_sizes = [int(v) for v in C.split_list(args.rss_sizes)]
    epoch_sizes = [int(v) for v in C.split_list(args.epoch_sizes)]
    biggest = max([args.loader_n, *rss_sizes, *epoch_sizes])
    t0 = time.perf_counter()
    lists = {n: make_images(args.root, n, size=args.image) for n in sorted({args.loader_n, *rss_sizes, *epoch_sizes})}
    print(f"{biggest} JPEGs of {args.image}x{args.image} ready under {args.root} ({time.perf_counter() - t0:.0f} s)")
    result: dict[str, Any] = {"benchmark": "data_throughput", "image": args.image, "crop": args.crop,
                              "workers": args.workers, "uptime_start": C.uptime()}
    if "throughput" not in skip:
        print(f"\nloader throughput, {args.loader_n} images, {args.workers} workers:")
        result["throughput"] = tp = throughput(lists[args.loader_n], crop=args.crop, workers=args.workers,
                                               rounds=args.rounds)
        print(f"product {tp['median']['product']:.0f} img/s, plain {tp['median']['plain']:.0f} img/s (numpy tail "
              f"{tp['median']['plain_numpy']:.0f}), ratio {tp['ratio']:.2f}, vs the faster plain "
              f"{tp['ratio_vs_best_plain']:.2f} (target >= 0.9)")
    if "rss" not in skip:
        result["rss"] = []
        for n in rss_sizes:
            r = peak_rss(lists[n], crop=args.crop, steps=args.rss_steps, out=os.path.join(args.root, f"rss_{n}"))
            result["rss"].append(r)
            print(f"peak RSS at N={n}: {r['peak_rss_mb']:.0f} MB (largest worker {r['worker_peak_rss_mb']:.0f} MB)")
    if "epoch" not in skip:
        result["epochs"], result["linearity"] = [], []
        for method in C.split_list(args.methods):
            rows = epoch_sweep(lists, epoch_sizes, method, rounds=args.epoch_rounds, crop=args.crop,
                               workers=args.workers, root=args.root, partial=(args.out + ".partial", result))
            result["epochs"] += rows
            for key in ("epoch_s", "cpu_s"):
                result["linearity"].append(lin := linearity(rows, key))
                print(f"{method} {key}: per-1k spread {100 * lin['spread']:.1f}% (target <= 15%), growth "
                      f"{', '.join(f'{g:.2f}' for g in lin['growth'])} for N x{lin['n_ratio'][0]:.0f}, fixed "
                      f"per-epoch cost {lin['intercept_s']:.2f} s, {1000 * lin['slope_s']:.2f} s per 1k samples", flush=True)
    result["uptime_end"] = C.uptime()
    result["environment"] = C.environment()
    if skip and os.path.isfile(args.out):  # a partial re-run updates the parts it measured
        with open(args.out, encoding="utf-8") as fh:
            result = {**json.load(fh), **result}
    C.save_json(args.out, result)
    print(f"\n{result['uptime_start']}\n{result['uptime_end']}\nwritten {args.out}")
    return result


if __name__ == "__main__":
    main()
