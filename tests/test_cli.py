"""CLI: one-line errors with exit 2 (no traceback), --debug shows it, commands print JSON."""

import json
import os
import subprocess
import sys

import pytest

from robust_paddle import cli

QUICK = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "robust_paddle.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_bad_override_is_one_line_exit_2():
    res = run_cli("train", "-c", QUICK, "-o", "train.epochs=abc")
    assert res.returncode == 2
    assert res.stderr.strip() == "robust-paddle: error: train.epochs: expected int, got 'abc' (str)"
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback():
    res = run_cli("--debug", "train", "-c", QUICK, "-o", "train.epochs=abc")
    assert res.returncode != 0 and "Traceback" in res.stderr and "ConfigError" in res.stderr


@pytest.mark.parametrize("argv, message", [
    (["train", "-c", "nope.yaml"], "config file not found"),
    (["train"], "train needs -c CONFIG (or --resume RUN_DIR)"),
    (["train", "--resume", "/nonexistent/run"], "--resume /nonexistent/run: no config.yaml there"),
    (["train", "-c", QUICK, "-o", "model.name=resnet9000"], "unknown model 'resnet9000'"),
    (["train", "-c", QUICK, "-o", "loss.params.qq=1"], "loss.params: unknown key(s) qq for loss 'gce'"),
    (["eval", "-c", QUICK, "--checkpoint", "/nonexistent.pdckpt"], "checkpoint not found"),
    (["demo", "--methods", "nosuch"], "--methods: unknown demo row(s) nosuch"),
    (["train", "-c", os.path.join(os.path.dirname(QUICK), "forward_correction", "mnist.yaml"), "-o", "data.root=/nonexistent/mnist"],
     "dataset 'mnist': file(s) not found: /nonexistent/mnist/train-images-idx3-ubyte.gz"),
    (["train", "-c", os.path.join(os.path.dirname(QUICK), "forward_correction", "cifar10.yaml"), "-o", "data.root=/nonexistent/c10"],
     "dataset 'cifar10': file(s) not found: /nonexistent/c10/"),
])
def test_user_errors(argv, message, capsys, tmp_path):
    argv = [a if a != QUICK else QUICK for a in argv]
    code = cli.main(["-q", *argv] + (["-o", f"output_dir={tmp_path}/r"] if argv[0] == "train" and "-c" in argv else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("robust-paddle: error: ") and message in err and len(err.strip().splitlines()) == 1


def test_argparse_usage_errors_exit_2():
    res = run_cli("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_train_then_eval_prints_json(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["-q", "train", "-c", QUICK, "-o", "train.epochs=1", "-o", "data.subset=200", "-o",
                     "train.progress=false", "-o", "train.report=false", "-o", f"output_dir={out}"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["epochs_run"] == 1 and 0 <= printed["test/acc"] <= 1
    code = cli.main(["-q", "eval", "-c", str(out / "config.yaml"), "--checkpoint", str(out)])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test"]["acc"] == pytest.approx(printed["test/acc"])


def test_demo_runs_rows_in_parallel_and_prints_the_table(tmp_path, capsys):
    # Two rows, two worker processes, a tiny budget: the table lists both rows with accuracies in [0, 1].
    code = cli.main(["-q", "demo", "--out", str(tmp_path), "--methods", "ce,gce", "--jobs", "2",
                     "-o", "train.epochs=1", "-o", "data.subset=200", "-o", "train.report=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "digits, label noise symmetric 40% (test labels are clean)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == {"ce", "gce"}
    assert all(0.0 <= float(rows[r][1]) <= 1.0 for r in rows)
    assert (tmp_path / "gce" / "metrics.json").exists() and (tmp_path / "ce" / "config.yaml").exists()
    with pytest.raises(SystemExit):
        cli.main(["demo", "--jobs", "x"])
    assert cli.main(["-q", "demo", "--jobs", "0"]) == 2


def test_internal_bug_keeps_its_traceback_and_exits_1(tmp_path):
    # a KeyError raised inside a method is a bug, not bad input: full traceback, exit 1
    code = ("import sys\n"
            "from robust_paddle.methods.standard import StandardMethod\n"
            "def broken(self, batch, *, epoch, step):\n"
            "    return {}['no_such_term']\n"
            "StandardMethod.train_step = broken\n"
            "from robust_paddle.cli import main\n"
            f"sys.exit(main(['-q', 'train', '-c', {QUICK!r}, '-o', 'train.epochs=1', '-o', 'data.subset=100',\n"
            f"               '-o', 'train.progress=false', '-o', 'output_dir={tmp_path}/r']))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 1
    assert "Traceback (most recent call last)" in res.stderr and "KeyError: 'no_such_term'" in res.stderr
    assert "robust-paddle: error" not in res.stderr


@pytest.mark.parametrize("exc, line", [
    (FileNotFoundError(2, "No such file or directory", "/data/x.csv"), "/data/x.csv: No such file or directory"),
    (PermissionError(13, "Permission denied", "/out/run"), "/out/run: Permission denied"),
    (FileNotFoundError("checkpoint not found: /a.pdckpt"), "checkpoint not found: /a.pdckpt"),
])
def test_os_errors_name_the_path(exc, line):
    assert cli.error_line(exc) == line


@pytest.mark.parametrize("exc", [KeyError("k"), TypeError("t"), ValueError("v")])
def test_plain_builtin_errors_are_not_user_errors(monkeypatch, exc):
    def boom(args):
        raise exc

    monkeypatch.setitem(cli.COMMANDS, "demo", boom)
    with pytest.raises(type(exc)):
        cli.main(["-q", "demo"])


def test_robust_paddle_errors_are_one_line_exit_2(monkeypatch, capsys):
    from robust_paddle.errors import CheckpointError, TrainingError

    for exc, prefix in [(CheckpointError("ckpt.pdckpt: not a checkpoint\ndetail"), "robust-paddle: error: "),
                        (TrainingError("loss became nan"), "robust-paddle: training failed: ")]:
        monkeypatch.setitem(cli.COMMANDS, "demo", lambda args, exc=exc: (_ for _ in ()).throw(exc))
        assert cli.main(["-q", "demo"]) == 2
        err = capsys.readouterr().err
        assert err == prefix + str(exc).splitlines()[0] + "\n"
