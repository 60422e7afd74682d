"""GPU training throughput: ResNet-18 at 32x32 and ResNet-50 at 224x224, fp32 vs AMP O1 vs AMP O2.

For each network and precision, on synthetic data resident on the GPU: ``--warmup`` steps, then ``--steps``
timed training steps (forward, cross-entropy, backward, SGD momentum step; AMP through
``paddle.amp.auto_cast`` and a ``GradScaler``, O2 with ``paddle.amp.decorate``), synchronised before the clock
stops; samples/s. Then the DataLoader-fed rate: the same fp32 / O1 step fed by the product's training loader
(``data.augment: [random_resized_crop, hflip]`` from a folder of generated JPEGs, ``--workers`` workers), so the
input pipeline's share shows.

Target (issue 16): AMP O1 >= 1.5x fp32 samples/s on ResNet-50 224. Needs a CUDA device; exits 2 without one.
Writes ``benchmarks/results/gpu_throughput.json``.

    python benchmarks/gpu_throughput.py                           # ~5 min on one GPU
    python benchmarks/gpu_throughput.py --steps 20 --skip-loader  # the quick version
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common as C  # noqa: E402  (imports robust_paddle first)

CASES = {"resnet18_32": ("resnet18", 32, 256), "resnet50_224": ("resnet50", 224, 64)}


def step_fn(net, opt, scaler, level: str):
    import paddle
    import paddle.nn.functional as F

    def step(x, y):
        if level == "fp32":
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
        else:
            with paddle.amp.auto_cast(enable=True, level=level, dtype="float16"):
                loss = F.cross_entropy(net(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        opt.clear_grad()
        return loss
    return step


def build(name: str, level: str):
    import paddle

    from robust_paddle.models import build_model

    net = build_model(name, num_classes=1000 if name == "resnet50" else 10,
                      input_shape=(3, 224 if name == "resnet50" else 32, 224 if name == "resnet50" else 32))
    opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=net.parameters())
    scaler = None
    if level != "fp32":
        scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)
        if level == "O2":
            net, opt = paddle.amp.decorate(models=net, optimizers=opt, level="O2", dtype="float16")
    return net, step_fn(net, opt, scaler, level)


def timed(step, batches, *, warmup: int, steps: int) -> float:
    import paddle

    it = iter(batches)
    for _ in range(warmup):
        step(*next(it))
    paddle.device.cuda.synchronize()
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, y = next(it)
        step(x, y)
        n += int(x.shape[0])
    paddle.device.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def synthetic(batch: int, size: int, classes: int):
    import paddle

    x = paddle.randn([batch, 3, size, size])
    y = paddle.randint(0, classes, [batch])
    while True:
        yield x, y


def loader_batches(root: str, *, size: int, batch: int, workers: int, n: int):
    import paddle

    from benchmarks.data_throughput import cfg_for, make_images
    from robust_paddle.data import build_data, build_loader

    list_path = make_images(root, n, size=max(96, size + size // 7))
    data = build_data(cfg_for(list_path, crop=size, workers=workers))
    loader = build_loader(data.train, batch_size=batch, shuffle=True, seed=0, num_workers=workers, drop_last=True)
    epoch = 0
    while True:
        loader.batch_sampler.set_epoch(epoch)
        for x, y, _ in loader:
            yield paddle.to_tensor(x, place=paddle.CUDAPlace(0)), paddle.to_tensor(y, place=paddle.CUDAPlace(0))
        epoch += 1


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import paddle

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--loader-images", type=int, default=4000)
    p.add_argument("--root", default="/tmp/rp_gpu_throughput")
    p.add_argument("--skip-loader", action="store_true")
    p.add_argument("--out", default=os.path.join(C.RESULTS, "gpu_throughput.json"))
    args = p.parse_args(argv)
    if not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
        print("gpu_throughput: no CUDA device (this Paddle build or machine has none)", file=sys.stderr)
        sys.exit(2)
    paddle.set_device("gpu")
    rows = []
    for case, (name, size, batch) in CASES.items():
        classes = 1000 if name == "resnet50" else 10
        for level in ("fp32", "O1", "O2"):
            net, step = build(name, level)
            rate = timed(step, synthetic(batch, size, classes), warmup=args.warmup, steps=args.steps)
            rows.append({"case": case, "batch": batch, "precision": level, "feed": "synthetic", "samples_s": rate})
            print(f"{case:<14} {level:<5} synthetic  {rate:9.1f} samples/s", flush=True)
            del net, step
        if not args.skip_loader:
            for level in ("fp32", "O1"):
                net, step = build(name, level)
                batches = loader_batches(os.path.join(args.root, case), size=size, batch=batch, workers=args.workers,
                                         n=args.loader_images)
                rate = timed(step, batches, warmup=args.warmup, steps=args.steps)
                rows.append({"case": case, "batch": batch, "precision": level, "feed": "dataloader",
                             "workers": args.workers, "samples_s": rate})
                print(f"{case:<14} {level:<5} dataloader {rate:9.1f} samples/s", flush=True)
    r50 = {r["precision"]: r["samples_s"] for r in rows if r["case"] == "resnet50_224" and r["feed"] == "synthetic"}
    result = {"benchmark": "gpu_throughput", "device": paddle.device.cuda.get_device_name(), "rows": rows,
              "o1_over_fp32_resnet50": r50["O1"] / r50["fp32"], "uptime": os.popen("uptime").read().strip(),
              "environment": C.environment()}
    print(f"ResNet-50 224 AMP O1 / fp32 = {result['o1_over_fp32_resnet50']:.2f} (target >= 1.5)")
    C.save_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
