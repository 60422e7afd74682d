"""The HTTP server under the issue-15 image load: peak memory and /health latency.

A small digits CNN is trained (1 epoch, 300 samples) and exported, then ``robust-paddle serve`` runs in a
subprocess with each setting below. After one warm-up request, ``--clients`` threads each send one request of
``--images`` blank ``--side`` x ``--side`` PNGs (8-bit grey, ~0.3 MB each on the wire) at once, while another
thread polls ``GET /health`` every 50 ms. Reported per setting: the status codes, the server's peak RSS
growth over the warm state (``VmHWM`` from /proc), and /health's worst and median latency during the load.

Settings: ``default`` (16-megapixel budget, 2 decoding workers: every request is refused on its headers),
``no budget 1 decoder`` (``--max-megapixels 100000 --decode-workers 1``: every image is decoded, one at a
time) and ``no budget 4 decoders`` (what the server did before the bound: all requests decode at once).

    python benchmarks/server_limits.py            # prints a table, writes results/server_limits.json
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS, environment, save_json  # noqa: E402

SETTINGS = {
    "default": [],
    "no budget 1 decoder": ["--max-megapixels", "100000", "--decode-workers", "1", "--max-body-mb", "64"],
    "no budget 4 decoders": ["--max-megapixels", "100000", "--decode-workers", "4", "--max-requests", "4",
                              "--threads", "6", "--max-body-mb", "64"],
}


def blank_png(side: int) -> bytes:
    """A black grey PNG written row by row (never held decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp, row = zlib.compressobj(9), b"\0" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def export_model(workdir: str) -> str:
    from robust_paddle import config
    from robust_paddle.pipeline.commands import export_command
    from robust_paddle.pipeline.run import train

    cfg = config.load(os.path.join(ROOT, "configs", "quickstart.yaml"), [
        "data.subset=300", "data.noise.kind=none", "train.epochs=1", "model.name=small_cnn",
        "model.params={channels: [8, 16]}", "train.progress=false", "train.visualdl=false", "train.report=false",
        "train.calibration=false", f"output_dir={os.path.join(workdir, 'run')}"])
    train(cfg)
    out = os.path.join(workdir, "export")
    export_command(cfg, os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt"), out_dir=out,
                   formats=["paddle"])
    return out


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def run_setting(model: str, flags: list[str], body: str, clients: int) -> dict[str, Any]:
    import requests

    proc = subprocess.Popen([sys.executable, "-m", "robust_paddle.cli", "-q", "serve", "--model", model, "--port",
                             "0", *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip().rsplit(" at ", 1)[1]
        tiny = base64.b64encode(blank_png(8)).decode()
        requests.post(url + "/predict", json={"images": [tiny]}, timeout=60).raise_for_status()
        warm = peak_rss_mb(proc.pid)
        codes: list[int] = []
        latencies: list[float] = []
        done = threading.Event()

        def client() -> None:
            codes.append(requests.post(url + "/predict", data=body, timeout=600,
                                       headers={"Content-Type": "application/json"}).status_code)

        def poll() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                requests.get(url + "/health", timeout=600).raise_for_status()
                latencies.append(time.perf_counter() - t0)
                time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        poller = threading.Thread(target=poll)
        t0 = time.perf_counter()
        poller.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        done.set()
        poller.join()
        latencies.sort()
        return {"codes": sorted(codes), "rss_warm_mb": warm, "rss_growth_mb": peak_rss_mb(proc.pid) - warm,
                "health_max_s": latencies[-1], "health_p50_s": latencies[len(latencies) // 2],
                "health_polls": len(latencies), "load_wall_s": wall}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--side", type=int, default=9000)
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of the settings")
    p.add_argument("--out", default=os.path.join(RESULTS, "server_limits.json"))
    args = p.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        model = export_model(work)
        body = json.dumps({"images": [base64.b64encode(blank_png(args.side)).decode()] * args.images})
        rows = {name: run_setting(model, SETTINGS[name], body, args.clients) for name in args.settings.split(",")}
    print(f"\n{args.clients} clients x {args.images} blank {args.side}x{args.side} PNGs "
          f"({len(body) / 1e6:.1f} MB per request); load before: {load[0]:.2f}")
    print(f"{'setting':<24}{'codes':<24}{'peak RSS +MB':>13}{'/health max s':>15}{'p50 s':>8}{'load s':>8}")
    for name, r in rows.items():
        print(f"{name:<24}{str(r['codes']):<24}{r['rss_growth_mb']:>13.0f}{r['health_max_s']:>15.3f}"
              f"{r['health_p50_s']:>8.3f}{r['load_wall_s']:>8.1f}")
    save_json(args.out, {"environment": environment(), "loadavg_before": load, "clients": args.clients,
                         "images": args.images, "side": args.side, "body_mb": len(body) / 1e6, "rows": rows})


if __name__ == "__main__":
    main()
