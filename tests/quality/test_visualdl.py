"""VisualDL hook: what a run logs, how a resumed run appends, and the real dashboard serving a finished run.

One tiny run (300 digits, 2 epochs, the sample_stats hook for selection / noise scalars and histograms) is
shared by the tests of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (preloads zlib before paddle)
from robust_paddle import config
from robust_paddle.pipeline.build import build_run
from robust_paddle.pipeline.run import train
from robust_paddle.quality.visualdl import VisualDLHook, latest_log_file, run_hparams

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
OVERRIDES = ["train.epochs=2", "data.subset=300", "data.batch_size=32", "train.log_every=2",
             "train.progress=false", "train.hooks=[{name: sample_stats}]"]


def read_log(run_dir: str | Path) -> dict[str, dict]:
    """``{component: {tag: [record, ...]}}`` of the log file VisualDL shows for ``run_dir``."""
    from visualdl import LogReader

    vdl = os.path.join(run_dir, "vdl")
    reader = LogReader(file_path=os.path.join(vdl, latest_log_file(vdl)))
    return {comp: {tag: reader.get_data(comp, tag) for tag in tags} for comp, tags in reader.get_tags().items()}


def history(run_dir: str | Path, key: str) -> list[tuple[int, float]]:
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as fh:
        rows = json.load(fh)["history"]
    return [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    train(config.load(QUICKSTART, OVERRIDES + [f"output_dir={root / 'run1'}"]))
    return root


def test_run_logs_every_family_of_scalars(runs_root: Path) -> None:
    log = read_log(runs_root / "run1")
    scalars = log["scalar"]
    for tag in ("train/loss", "train/lr", "train_step/loss", "train_step/lr", "train/acc", "train/acc_clean",
                "val/acc", "val/acc_clean", "test/acc", "best/val/acc", "select/precision", "select/recall",
                "noise/rate_gmm"):
        assert tag in scalars, f"{tag} missing; logged: {sorted(scalars)}"
    assert sorted(log["histogram"]) == ["samples/clean_prob", "samples/loss"]
    assert "hparam" in log["hyper_parameters"]
    # epoch scalars carry the epoch as step and the same values as metrics.json (float32 in the log)
    for tag in ("val/acc", "test/acc", "train/loss", "train/lr", "select/precision", "noise/rate_gmm"):
        got = [(r.id, r.value) for r in scalars[tag]]
        want = history(runs_root / "run1", tag)
        assert [s for s, _ in got] == [e for e, _ in want] == [1, 2]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6, atol=1e-7)
    # step scalars every train.log_every optimizer steps
    steps = [r.id for r in scalars["train_step/loss"]]
    assert steps and all(s % 2 == 0 for s in steps) and steps == sorted(steps)
    for tag in ("train/acc", "train/acc_clean", "select/recall"):
        assert all(0.0 <= r.value <= 1.0 for r in scalars[tag])


def test_hparams_record_names_the_final_metrics(runs_root: Path) -> None:
    log = read_log(runs_root / "run1")
    record = log["hyper_parameters"]["hparam"][0].hparam
    hparams = {h.name: h for h in record.hparamInfos}
    assert hparams["method"].string_value == "standard" and hparams["loss"].string_value == "gce"
    assert hparams["noise"].string_value == "symmetric-0.4" and hparams["epochs"].int_value == 2
    metrics = {m.name for m in record.metricInfos}
    assert metrics >= {"val/acc", "test/acc", "best/val/acc"}
    # the hparams view reads every metric from the scalar of the same tag, at the last epoch
    for name in metrics:
        assert log["scalar"][name][-1].id == 2, name
    # including what hooks add to the last row in after_train (the calibration hook's <split>/ece)
    final = json.loads((runs_root / "run1" / "metrics.json").read_text())["final"]
    for key in ("test/ece", "val/ece"):
        if final.get(key) is not None:
            assert key in metrics and log["scalar"][key][-1].value == pytest.approx(final[key], rel=1e-6)


def test_run_hparams_types() -> None:
    cfg = config.load(QUICKSTART, ["data.noise.kind=none", "data.noise.rate=0.0"])
    hp = run_hparams(cfg)
    assert hp["noise"] == "none" and hp["dataset"] == "digits"
    assert all(isinstance(v, (str, int, float)) for v in hp.values())


def test_resume_appends_to_the_same_log_file(runs_root: Path) -> None:
    src, dst = runs_root / "run1", runs_root / "run1_resumed"
    shutil.copytree(src, dst)
    cfg = config.load(str(dst / "config.yaml"), ["train.epochs=3", f"output_dir={dst}"])
    train(cfg, resume=str(dst / "checkpoints" / "latest.pdckpt"))
    assert len(os.listdir(dst / "vdl")) == 1  # VisualDL would only show the newest file of the folder
    scalars = read_log(dst)["scalar"]
    assert [r.id for r in scalars["val/acc"]] == [1, 2, 3]
    np.testing.assert_allclose([r.value for r in scalars["val/acc"]], [v for _, v in history(dst, "val/acc")],
                               rtol=1e-6)


def test_train_accuracy_on_a_fixed_subset(tmp_path: Path) -> None:
    cfg = config.load(QUICKSTART, OVERRIDES + [f"output_dir={tmp_path}"])
    trainer = build_run(cfg, output_dir=str(tmp_path), hooks=[]).trainer
    hook = VisualDLHook(train_acc_samples=50)
    hook._train_loader = hook._train_subset_loader(trainer)
    assert len(hook._train_loader.dataset) == 50
    _, idx_a = trainer.predict_logits(hook._train_loader)
    _, idx_b = trainer.predict_logits(hook._train_subset_loader(trainer))
    assert len(set(idx_a.tolist())) == 50 and np.array_equal(idx_a, idx_b)  # same samples every epoch
    logits, idx = trainer.predict_logits(trainer.loaders["train_eval"])
    preds = dict(zip(idx.tolist(), logits.argmax(1).tolist()))
    ds = trainer.loaders["train_eval"].dataset
    want = np.mean([preds[i] == ds.labels[i] for i in idx_a])
    want_clean = np.mean([preds[i] == ds.clean_labels[i] for i in idx_a])
    got = hook.train_accuracy(trainer)
    assert got["train/acc"] == pytest.approx(want) and got["train/acc_clean"] == pytest.approx(want_clean)
    assert VisualDLHook(train_acc_samples=0)._train_subset_loader(trainer) is None


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_train_acc_samples_is_checked(bad: object) -> None:
    with pytest.raises(ValueError, match=r"visualdl.train_acc_samples must be an int >= 0, got"):
        VisualDLHook(train_acc_samples=bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ the real dashboard
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visualdl_command() -> list[str]:
    exe = Path(sys.executable).with_name("visualdl")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from visualdl.server.app import main; main()"]


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - a loopback URL built here
        return resp.status, resp.read()


def api(base: str, path: str, **params: str) -> object:
    status, body = get(f"{base}/app/api/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else ""))
    payload = json.loads(body)
    assert status == 200 and payload["status"] == 0, payload
    return payload["data"]


def test_dashboard_serves_the_run_and_its_scalars(runs_root: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # --logdir is the folder that holds the runs, as in `visualdl --logdir output/`
    proc = subprocess.Popen(visualdl_command() + ["--logdir", str(runs_root), "--host", "127.0.0.1", "--port",
                                                  str(port), "--disable-telemetry", "--language", "en"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"visualdl exited early:\n{proc.stdout.read().decode(errors='replace')}"
            try:
                if get(f"{base}/alive")[0] == 204:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "visualdl did not answer /alive within 90 s"
            time.sleep(0.5)
        run = str(runs_root / "run1" / "vdl")
        assert run in api(base, "runs")
        tags = api(base, "scalar/tags")
        served = dict(zip(tags["runs"], tags["tags"]))[run]
        for tag in ("train/loss", "train/lr", "train/acc", "val/acc", "test/acc", "select/precision",
                    "noise/rate_gmm", "train_step/loss"):
            assert tag in served
        for tag in ("val/acc", "train/lr"):
            points = api(base, "scalar/list", run=run, tag=tag)  # [[wall time ms, step, value], ...]
            want = history(runs_root / "run1", tag)
            assert [p[1] for p in points] == [e for e, _ in want]
            np.testing.assert_allclose([p[2] for p in points], [v for _, v in want], rtol=1e-6, atol=1e-7)
        trials = {t["name"]: t for t in api(base, "hparams/list")}
        assert trials[run]["hparams"]["loss"] == "gce"
        want_acc = history(runs_root / "run1", "test/acc")[-1][1]
        assert trials[run]["metrics"]["test/acc"] == pytest.approx(want_acc, rel=1e-6)
        assert all(v is not None for v in trials[run]["metrics"].values()), trials[run]["metrics"]
        hist = api(base, "histogram/tags")
        assert "samples/loss" in dict(zip(hist["runs"], hist["tags"]))[run]
        status, page = get(f"{base}/app/scalar")
        assert status == 200 and b"<html" in page.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
