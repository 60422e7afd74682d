"""What starting DataLoader workers from a fork server costs against forking them, side by side.

``CheckedDataLoader`` starts Paddle's worker processes with ``forkserver`` (``_compat.loader_workers``):
forked from the training process they hung on Paddle 3.3. The price: each worker gets the dataset pickled
when an epoch starts. This times whole epochs (worker start included) of the product's loader with
``--workers`` workers, batch 128, started both ways, alternating, ``--rounds`` times (medians), for

* ``folder``: an image folder of ``--images`` generated 32x32 JPEGs (paths; decoded in the workers), with
  ``data.augment: flip_crop``;
* ``in-memory``: ``--rows`` float32 28x28 images held in memory (pickled to every worker every epoch);
* ``memmap``: the same rows as a memory-mapped ``.npy`` (travels as its file name).

Run it on Paddle 2.6 (there the fork start does not hang). Prints a table and writes
``benchmarks/results/loader_start.json`` with the machine load (``uptime``).

    .venv/bin/python benchmarks/loader_start.py --images 512 --rows 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common as C  # noqa: E402  (first: the zlib shim before paddle)

from robust_paddle import _compat  # noqa: E402
from robust_paddle.config import from_dict  # noqa: E402
from robust_paddle.data import ArrayDataset, Pipeline, build_data, build_loader  # noqa: E402
from robust_paddle.data.datasets import RowView  # noqa: E402


def _folder(root: str, n: int) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(n):
        cls = f"c{k % 4}"
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(os.path.join(root, cls, f"{k}.jpg"))
    return root


def _epoch_seconds(dataset, method: str, workers: int, epoch: int) -> float:
    _compat.LOADER_START_METHOD = method
    dataset.__dict__.pop("_failures", None)  # its shared memory is made for one start method (CheckedDataLoader)
    loader = build_loader(dataset, batch_size=128, shuffle=True, seed=0, num_workers=workers)
    loader.batch_sampler.set_epoch(epoch)
    t = time.perf_counter()
    n = sum(int(x.shape[0]) for x, _, _ in loader)
    assert n == len(dataset)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(C.RESULTS, "loader_start.json"))
    args = p.parse_args()
    import paddle

    result = {"paddle": paddle.__version__, "workers": args.workers, "uptime_start": C.uptime(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_data(from_dict({"data": {"name": "image_folder", "path": _folder(os.path.join(tmp, "f"),
                                                args.images), "augment": "flip_crop", "val_split": 0.0,
                                                "test_split": 0.0}})).train
        x = np.random.default_rng(0).random((args.rows, 28, 28, 1), dtype=np.float32)
        y = np.arange(args.rows) % 10
        pipe = Pipeline("image", (0.5,), (0.25,), augment="flip_crop")
        np.save(os.path.join(tmp, "x.npy"), x)
        mm = np.load(os.path.join(tmp, "x.npy"), mmap_mode="r")
        sets = {f"folder ({args.images} JPEG paths)": folder,
                f"in-memory ({args.rows} x 28x28 float32, {x.nbytes >> 20} MB)": ArrayDataset(x, y, num_classes=10,
                                                                                           pipeline=pipe),
                f"memmap ({args.rows} rows of a .npy)": ArrayDataset(RowView(mm, np.arange(args.rows)), y,
                                                                     num_classes=10, pipeline=pipe)}
        for name, ds in sets.items():
            times: dict[str, list[float]] = {"fork": [], "forkserver": []}
            for r in range(args.rounds):
                for method in (("fork", "forkserver") if r % 2 == 0 else ("forkserver", "fork")):
                    times[method].append(_epoch_seconds(ds, method, args.workers, r))
            med = {m: statistics.median(v) for m, v in times.items()}
            row = {"dataset": name, "fork_s": med["fork"], "forkserver_s": med["forkserver"],
                   "ratio": med["forkserver"] / med["fork"], "runs": times}
            result["rows"].append(row)
            print(f"{name:45s} fork {med['fork']:6.2f} s  forkserver {med['forkserver']:6.2f} s  "
                  f"ratio {row['ratio']:.2f}", flush=True)
    _compat.LOADER_START_METHOD = "forkserver"
    result["uptime_end"] = C.uptime()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"{result['uptime_start']}\n{result['uptime_end']}\nwritten {args.out}")


if __name__ == "__main__":
    main()
