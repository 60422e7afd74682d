"""CPU inference speed: dygraph vs Paddle Inference vs onnxruntime, and the HTTP server under a bounded load.

    .venv/bin/python benchmarks/inference.py                          # small_cnn (digits) and resnet18_cifar
    .venv/bin/python benchmarks/inference.py --models small_cnn --iters 200 --requests 400 --clients 4

For each model a 1-epoch digits run is trained (speed does not depend on the weights) and exported with
``robust-paddle export`` (paddle + onnx, parity checked). Then, with ``--threads`` CPU threads for every
backend (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for dygraph, ``set_cpu_math_library_num_threads`` for Paddle
Inference, ``intra_op_num_threads`` for onnxruntime):

* each backend runs batches of 1 and 64 real test samples ``--iters`` times after ``--warmup`` calls; every
  call is timed (host array in, host array out: ``to_tensor`` + forward + ``numpy()`` for dygraph), giving
  latency p50/p90/p99, throughput = batch / mean latency, the median-call throughput = batch / p50 and the
  process CPU time per call; the backends are timed in alternating blocks of 20 calls so they share the same
  background load while each runs in its steady state;
* the server (``robust_paddle.deploy.serve``: waitress + the micro-batching predictor thread) is started on
  127.0.0.1 with an ephemeral port and ``--clients`` threads send ``--requests`` POST /predict requests in
  total (one sample each, fixed count, so the load stops by itself): requests/s and latency percentiles.

Prints a table, checks the target (Paddle Inference >= 1.5x dygraph throughput at batch 1) and writes JSON to
``benchmarks/results/inference.json``. The target is judged on the median-call throughput (batch / p50), which
other processes preempting the benchmark disturb far less than the mean; both ratios are recorded. Timings
depend on the machine and its load (the JSON records the CPU count and load average); compare numbers only
within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="small_cnn,resnet18_cifar", help="comma-separated model.name values")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per backend (default 1)")
    p.add_argument("--batches", default="1,64", help="batch sizes (default 1,64)")
    p.add_argument("--iters", type=int, default=200, help="timed calls per backend and batch size")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    p.add_argument("--requests", type=int, default=400, help="server requests in total (0 skips the server)")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--workdir", default=None, help="folder for runs and exports (default: a temp folder)")
    p.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/inference.json)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # thread counts must be set before paddle / numpy load their math libraries
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first: zlib shim)

MODEL_PARAMS = {"small_cnn": {}, "resnet18_cifar": {"width": 16}, "preact_resnet18": {"width": 16},
                "mlp": {"hidden": [256, 128]}}
TARGET_SPEEDUP = 1.5


def percentiles(seconds: list[float], batch: int, cpu_seconds: list[float] | None = None) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    out = {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
           "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
           "throughput_per_s": float(batch / (ms.mean() / 1000.0)),
           "throughput_p50_per_s": float(batch / (np.percentile(ms, 50) / 1000.0)), "calls": len(ms)}
    if cpu_seconds is not None:
        cpu = np.asarray(cpu_seconds) * 1000.0
        out.update({"cpu_p50_ms": float(np.percentile(cpu, 50)),
                    "throughput_cpu_p50_per_s": float(batch / max(np.percentile(cpu, 50) / 1000.0, 1e-9))})
    return out


def time_interleaved(fns: dict[str, Any], x: np.ndarray, *, iters: int, warmup: int,
                     block: int = 20) -> dict[str, dict[str, float]]:
    """Time every backend on ``x`` in alternating blocks: per round each backend makes 2 untimed calls
    (caches warm again after the other backends ran) and then ``block`` timed ones, the order rotating every
    round; so all backends see the same background load while each is measured in its steady state.
    Records wall-clock and process CPU time per call."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name](x)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    block = max(1, min(block, iters))
    for r in range(-(-iters // block)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fns[name](x)
            fns[name](x)
            for _ in range(min(block, iters - len(wall[name]))):
                t, c = time.perf_counter(), time.process_time()
                fns[name](x)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
    return {n: percentiles(wall[n], int(x.shape[0]), cpu[n]) for n in names}


def prepare(model: str, workdir: str) -> tuple[Any, Any, str, np.ndarray]:
    """Train 1 epoch on digits, export paddle+onnx; returns (cfg, dygraph net, export dir, test samples)."""
    import paddle  # noqa: F401

    from robust_paddle.deploy.export import parity_batch
    from robust_paddle.pipeline.build import load_run
    from robust_paddle.pipeline.commands import export_command
    from robust_paddle.pipeline.run import train

    values = {**C.QUIET, "train.calibration": False, "train.epochs": 1, "data.noise.kind": "none",
              "model.name": model, "model.params": MODEL_PARAMS.get(model, {})}
    base = C.config_mod.load(os.path.join(C.ROOT, "configs", "quickstart.yaml"))
    cfg = C.build_cfg(base, values, os.path.join(workdir, f"run-{model}"))
    ckpt = os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt")
    if not os.path.exists(ckpt):
        train(cfg)
    out = os.path.join(workdir, f"export-{model}")
    if not os.path.exists(os.path.join(out, "inference.yml")):
        export_command(cfg, ckpt, out_dir=out, formats=["paddle", "onnx"])
    run = load_run(cfg, ckpt)
    net = run.method.export_network("auto")
    net.eval()
    return cfg, net, out, parity_batch(run.data, 1000)


def bench_backends(net: Any, export_dir: str, samples: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    import paddle

    from robust_paddle.deploy.predictor import OnnxPredictor, PaddlePredictor

    @paddle.no_grad()
    def dygraph(x: np.ndarray) -> np.ndarray:
        return net(paddle.to_tensor(x)).numpy()

    backends = {"dygraph": dygraph,
                "paddle_inference": PaddlePredictor(os.path.join(export_dir, "inference"), threads=args.threads),
                "onnxruntime": OnnxPredictor(os.path.join(export_dir, "inference.onnx"), threads=args.threads)}
    out: dict[str, Any] = {}
    for batch in [int(b) for b in C.split_list(args.batches)]:
        x = np.ascontiguousarray(np.resize(samples, (batch, *samples.shape[1:])), dtype=np.float32)
        timed = time_interleaved(backends, x, iters=args.iters, warmup=args.warmup)
        for name, stats in timed.items():
            out[f"{name}/b{batch}"] = {"backend": name, "batch": batch, **stats}
    return out


def bench_server(export_dir: str, samples: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """``--clients`` threads send ``--requests`` one-sample POST /predict requests in total."""
    import json

    import requests

    from robust_paddle.deploy.serve import ServerHandle, close_app, create_app

    app = create_app(export_dir, max_batch_size=64, max_body_mb=10.0, cpu_threads=args.threads)
    handle = ServerHandle(app, port=0, threads=max(4, args.clients)).start()
    bodies = [json.dumps({"inputs": samples[i % len(samples)].tolist(), "top_k": 1}) for i in range(args.requests)]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with requests.Session() as s:
            for i in range(k, args.requests, args.clients):
                t = time.perf_counter()
                try:
                    r = s.post(handle.url + "/predict", data=bodies[i], timeout=60,
                               headers={"Content-Type": "application/json"})
                    ok = r.status_code == 200
                except requests.RequestException as e:
                    ok, r = False, e
                dt = time.perf_counter() - t
                with lock:
                    (latencies.append(dt) if ok else failures.append(str(getattr(r, "text", r))[:200]))

    try:
        for _ in range(10):  # warm-up
            requests.post(handle.url + "/predict", data=bodies[0], timeout=60,
                          headers={"Content-Type": "application/json"})
        batches_before = app.extensions["robust_paddle"]["batcher"].batches_run
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        wall = time.perf_counter() - start
        batches = app.extensions["robust_paddle"]["batcher"].batches_run - batches_before
    finally:
        handle.close()
        close_app(app)
    stats = percentiles(latencies, 1) if latencies else {}
    stats.pop("throughput_per_s", None)
    return {"requests": args.requests, "clients": args.clients, "ok": len(latencies), "failed": len(failures),
            "failures": failures[:3], "wall_s": wall, "requests_per_s": len(latencies) / wall,
            "predictor_batches": batches, "mean_batch": len(latencies) / max(batches, 1), **stats}


def print_table(model: str, res: dict[str, Any], server: dict[str, Any] | None) -> None:
    print(f"\n{model}")
    print(f"{'backend':<18}{'batch':>6}{'samples/s':>11}{'p50 /s':>11}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'cpu p50 ms':>11}")
    for r in res.values():
        print(f"{r['backend']:<18}{r['batch']:>6}{r['throughput_per_s']:>11.1f}{r['throughput_p50_per_s']:>11.1f}"
              f"{r['p50_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['cpu_p50_ms']:>11.3f}")
    if server:
        print(f"{'server (HTTP)':<18}{1:>6}{server['requests_per_s']:>11.1f}{'':>11}"
              f"{server.get('p50_ms', float('nan')):>9.3f}"
              f"{server.get('p90_ms', float('nan')):>9.3f}{server.get('p99_ms', float('nan')):>9.3f}"
              f"   ({server['clients']} clients, {server['ok']}/{server['requests']} ok, "
              f"mean predictor batch {server['mean_batch']:.2f})")


def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    workdir = args.workdir or tempfile.mkdtemp(prefix="rp-inference-")
    results: dict[str, Any] = {"environment": {**C.environment(), "threads": args.threads,
                                               "loadavg_start": list(os.getloadavg())},
                               "settings": {k: v for k, v in vars(args).items()}, "models": {}}
    all_ok = True
    for model in C.split_list(args.models):
        cfg, net, export_dir, samples = prepare(model, workdir)
        res = bench_backends(net, export_dir, samples, args)
        server = bench_server(export_dir, samples, args) if args.requests > 0 else None
        b1 = {k.split("/")[0]: v for k, v in res.items() if v["batch"] == 1}
        speedup = b1["paddle_inference"]["throughput_p50_per_s"] / b1["dygraph"]["throughput_p50_per_s"]
        speedup_mean = b1["paddle_inference"]["throughput_per_s"] / b1["dygraph"]["throughput_per_s"]
        speedup_cpu = b1["paddle_inference"]["throughput_cpu_p50_per_s"] / b1["dygraph"]["throughput_cpu_p50_per_s"]
        ok = speedup >= TARGET_SPEEDUP
        all_ok &= ok
        results["models"][model] = {"model_params": MODEL_PARAMS.get(model, {}), "input_shape": list(samples.shape[1:]),
                                    "backends": res, "server": server,
                                    "speedup_b1_paddle_inference_vs_dygraph": speedup,
                                    "speedup_b1_mean_latency": speedup_mean, "speedup_b1_cpu_time": speedup_cpu,
                                    "target": f">= {TARGET_SPEEDUP}x", "target_met": ok}
        print_table(model, res, server)
        print(f"Paddle Inference / dygraph throughput at batch 1: {speedup:.2f}x median call ({speedup_mean:.2f}x "
              f"mean, {speedup_cpu:.2f}x CPU time); target >= {TARGET_SPEEDUP}x: {'met' if ok else 'NOT met'}")
    results["environment"]["loadavg_end"] = list(os.getloadavg())
    out = args.out or os.path.join(C.RESULTS, "inference.json")
    C.save_json(out, results)
    print(f"\nresults: {out}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(ARGS))
