"""End to end: train 2 epochs -> checkpoint -> resume -> eval; kill -9 mid-run -> resume == uninterrupted."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from robust_paddle import config as C
from robust_paddle.engine.checkpoint import load_checkpoint
from robust_paddle.pipeline import run as run_mod

QUICK = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml")
COMMON = ["data.subset=400", "train.progress=false", "train.report=false", "model.name=small_cnn",
          "data.batch_size=32"]


def history(path):
    return json.loads((path / "metrics.json").read_text())["history"]


def test_train_checkpoint_resume_eval(tmp_path):
    full = C.load(QUICK, COMMON + ["train.epochs=4", "train.checkpoint_every=2", f"output_dir={tmp_path / 'full'}"])
    run_mod.train(full)
    # a run folder holding the same run as it stood after epoch 2: resume it to the end
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full" / "config.yaml", part / "config.yaml")
    shutil.copy(tmp_path / "full" / "checkpoints" / "epoch_002.pdckpt", part / "checkpoints" / "latest.pdckpt")
    run_mod.train(C.with_values(full, {"output_dir": str(part)}), resume=str(part))
    assert history(part) == history(tmp_path / "full")
    res = run_mod.evaluate(full, str(tmp_path / "full" / "checkpoints" / "latest.pdckpt"))
    assert res["test"]["acc"] == pytest.approx(history(tmp_path / "full")[-1]["test/acc"])


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(tmp_path):
    args = [f"-o={o}" for o in COMMON + ["train.epochs=5"]]
    ref = subprocess.run([sys.executable, "-m", "robust_paddle.cli", "-q", "train", "-c", QUICK, *args,
                          f"-o=output_dir={tmp_path / 'ref'}"], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "robust_paddle.cli", "-q", "train", "-c", QUICK, *args,
                             f"-o=output_dir={run_dir}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run_dir / "checkpoints" / "latest.pdckpt"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # wait for a checkpoint after epoch >= 2, then kill mid-run
            if latest.exists():
                try:
                    if load_checkpoint(str(latest))["epoch"] >= 2:
                        break
                except ValueError:
                    pass
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = load_checkpoint(str(latest))["epoch"]
    if done >= 5:
        pytest.skip("the run finished before it could be killed")
    res = subprocess.run([sys.executable, "-m", "robust_paddle.cli", "-q", "train", "--resume", str(run_dir)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert history(run_dir) == history(tmp_path / "ref")
