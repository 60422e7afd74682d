"""``check-data`` throughput: images read per second per core on a generated folder of small images.

Target (issue 14): >= 500 small images / s / core on a 20,000-image folder. The folder holds 32x32 RGB PNGs
(two thirds) and 28x28 greyscale PNGs, 10 class folders, written once to ``--dir`` (reused when present).
Measured side by side in one run, alternating the passes:

- ``check-data scan``: what ``robust-paddle check-data`` does per file (read, BLAKE2b hash, full Pillow
  decode) with 1 thread (= per core) and with all cores' threads;
- ``check_data() end to end``: the whole command without the CLI (folder listing, splits, scan, duplicates,
  report file) on all cores' threads;
- ``header probe``: what every ``train`` does (``imagecheck.probe_all``) with 1 thread;
- ``decoder``: the training decoder (``decode.decode_image`` to 3 channels, float32) with 1 thread.

Each row is the median of ``--repeats`` passes over the whole folder (the OS file cache is warm after the
first write). Prints a table and writes ``benchmarks/results/check_data.json`` with ``uptime``.

    python benchmarks/check_data.py --n 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import robust_paddle  # noqa: E402,F401  (zlib shim before paddle)
import robust_paddle.data  # noqa: E402,F401  (registers the DATASETS sources)
from robust_paddle.config import from_dict  # noqa: E402
from robust_paddle.data.check_data import check_data, scan_files  # noqa: E402
from robust_paddle.data.decode import decode_image  # noqa: E402
from robust_paddle.data.imagecheck import probe_all  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def make_folder(root: str, n: int, seed: int = 0) -> list[str]:
    """``n`` small PNGs in 10 class folders (reused when the folder already holds them)."""
    from PIL import Image

    paths = [os.path.join(root, f"c{i % 10}", f"{i:06d}.png") for i in range(n)]
    if all(os.path.isfile(p) for p in paths[:: max(1, n // 100)]) and os.path.isfile(paths[-1]):
        return paths
    g = np.random.default_rng(seed)
    for c in range(10):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
    for i, p in enumerate(paths):
        if i % 3 == 2:
            Image.fromarray(g.integers(0, 256, (28, 28), dtype=np.uint8)).save(p)
        else:
            Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(p)
    return paths


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000, help="images in the generated folder")
    p.add_argument("--dir", default="/tmp/robust_paddle_check_data_bench", help="folder for the images")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(RESULTS, "check_data.json"))
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    paths = make_folder(os.path.join(args.dir, str(args.n)), args.n)
    gen_s = time.perf_counter() - t0
    cfg = from_dict({"data": {"name": "image_folder", "path": os.path.join(args.dir, str(args.n)), "val_split": 0.1,
                              "test_split": 0.1}, "output_dir": os.path.join(args.dir, "report")})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    passes = {
        "check-data scan, 1 thread": lambda: scan_files(paths, progress=False, threads=1),
        f"check-data scan, {cores} threads": lambda: scan_files(paths, progress=False, threads=cores),
        f"check_data() end to end, {cores} threads": lambda: check_data(cfg, progress=False),
        "header probe (train), 1 thread": lambda: probe_all(paths, threads=1),
        "decoder to float32 [H,W,3], 1 thread": lambda: [decode_image(q, channels=3) for q in paths],
    }
    times: dict[str, list[float]] = {k: [] for k in passes}
    for _ in range(args.repeats):  # alternate the passes so machine load hits them alike
        for name, fn in passes.items():
            times[name].append(timed(fn))
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        threads = cores if f"{cores} threads" in name else 1
        rows.append({"pass": name, "threads": threads, "seconds": med, "images_per_s": len(paths) / med,
                     "images_per_s_per_core": len(paths) / med / threads})
    print(f"check-data throughput, {len(paths)} PNGs (2/3 32x32 RGB, 1/3 28x28 grey), median of {args.repeats}")
    print(f"{'pass':<40} {'s':>7} {'img/s':>9} {'img/s/core':>11}")
    for r in rows:
        print(f"{r['pass']:<40} {r['seconds']:>7.2f} {r['images_per_s']:>9.0f} {r['images_per_s_per_core']:>11.0f}")
    print(f"target: >= 500 img/s/core for the check-data scan; uptime: {uptime}")
    result = {"n_images": len(paths), "repeats": args.repeats, "cores": cores, "generate_s": gen_s, "rows": rows,
              "target_images_per_s_per_core": 500, "uptime": uptime, "python": platform.python_version(),
              "machine": platform.machine()}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
