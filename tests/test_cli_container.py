"""CLI behaviour that containers depend on: SIGTERM stops a command at once (a container's PID 1 gets no
default action for it), and an output folder the user cannot write fails in one line before any work."""

import os
import signal
import subprocess
import sys
import time

import pytest

from robust_paddle import cli
from robust_paddle.engine.checkpoint import load_checkpoint

QUICK = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")


def test_sigterm_stops_training_with_143_and_leaves_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.Popen([sys.executable, "-m", "robust_paddle.cli", "-q", "train", "-c", QUICK,
                             "-o", "train.epochs=500", "-o", "train.progress=false", "-o", "train.report=false",
                             "-o", f"output_dir={out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    ckpt = out / "checkpoints" / "latest.pdckpt"
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ckpt.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint within 120 s"
        proc.send_signal(signal.SIGTERM)
        # without the handler the process dies by the signal (returncode -15) or, as a container's PID 1,
        # ignores it; the 10 s `docker stop` grants are checked on the real image by scripts/docker_smoke.sh
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "robust-paddle: terminated (SIGTERM)"
    state = load_checkpoint(str(ckpt))
    assert state["epoch"] >= 1
    # ... and the run resumes from it
    code = cli.main(["-q", "train", "--resume", str(out), "-o", f"train.epochs={state['epoch'] + 1}",
                     "-o", "train.progress=false"])
    assert code == 0


def test_handler_is_installed_by_main_and_restored_after(monkeypatch):
    seen = []
    monkeypatch.setitem(cli.COMMANDS, "eval", lambda args: seen.append(signal.getsignal(signal.SIGTERM)) or 0)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["-q", "eval", "-c", QUICK, "--checkpoint", "x"]) == 0
        assert seen == [cli._raise_terminated]
        assert signal.getsignal(signal.SIGTERM) is previous  # in-process callers get their handler back
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("argv", [
    ["train", "-c", QUICK, "-o", "output_dir={ro}/run"],
    ["demo", "--methods", "ce", "--out", "{ro}/demo"],
    ["export", "-c", QUICK, "--checkpoint", "x.pdckpt", "--out", "{ro}/export"],
    ["compress", "-c", QUICK, "--checkpoint", "x.pdckpt", "--out", "{ro}/slim"],
])
def test_unwritable_output_is_one_line_exit_2_before_any_work(argv, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # the tests run as root, which may write anywhere: make this folder read-only the way another uid sees it
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if os.path.abspath(p) == str(ro) else real_access(p, mode))
    for name in ("train", "demo", "export", "compress"):  # nothing may start
        monkeypatch.setitem(cli.COMMANDS, name, cli.COMMANDS[name])
    started = []
    monkeypatch.setattr("robust_paddle.pipeline.run.train", lambda *a, **k: started.append(a))
    code = cli.main(["-q", *[a.format(ro=ro) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not started
    assert len(err.splitlines()) == 1
    assert f"{ro} is not writable by uid {os.getuid()}" in err and err.startswith("robust-paddle: error: ")
    assert os.listdir(ro) == []


def test_permission_error_anywhere_is_one_line_exit_2(monkeypatch, capsys):
    def denied(args):
        raise PermissionError(13, "Permission denied", "/output/run/metrics.json")

    monkeypatch.setitem(cli.COMMANDS, "eval", denied)
    code = cli.main(["-q", "eval", "-c", QUICK, "--checkpoint", "x"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == "robust-paddle: error: /output/run/metrics.json: Permission denied"
