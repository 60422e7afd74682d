"""Trust boundaries through the CLI: a crafted pickle given to any command never runs its payload; the
command prints one line and exits 2."""

import os
import pickle

import pytest

from robust_paddle import cli
from robust_paddle import config as C

QUICK = os.path.join(os.path.dirname(__file__), "..", "configs", "quickstart.yaml")


class WritesMarker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def crafted_checkpoint(path, marker):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:  # looks like a format-1 checkpoint; the payload sits in its weights
        pickle.dump({"format": 1, "epoch": 1, "networks": {"net": {"fc.weight": WritesMarker(marker)}},
                     "config": {}, "meta": {}}, fh)
    return str(path)


def one_line_exit_2(capsys, argv, *, match):
    code = cli.main(["-q", *argv])
    out = capsys.readouterr().err.strip()
    assert code == 2, out
    lines = [ln for ln in out.splitlines() if ln.startswith("robust-paddle")]  # log warnings may precede it
    assert len(lines) == 1 and lines[0].startswith("robust-paddle: error: ") and "Traceback" not in out, out
    assert match in lines[0], out
    return lines[0]


@pytest.mark.parametrize("command", [
    ["eval"], ["report"], ["export", "--out", "{tmp}/exported"], ["compress", "--out", "{tmp}/compressed"]])
def test_crafted_checkpoint_never_runs(tmp_path, capsys, command):
    marker = tmp_path / "marker"
    ckpt = crafted_checkpoint(str(tmp_path / "evil.pdckpt"), marker)
    argv = [command[0], "-c", QUICK, "--checkpoint", ckpt, *[a.format(tmp=tmp_path) for a in command[1:]]]
    if command[0] == "compress":
        argv += ["-o", "slim.stages=[{name: ptq}]"]
    one_line_exit_2(capsys, argv, match="evil.pdckpt: refused to load: the file references builtins.exec")
    assert not marker.exists()
    assert not (tmp_path / "exported").exists() and not (tmp_path / "compressed").exists()


def test_crafted_cifar_archive_never_runs(tmp_path, capsys):
    import io
    import tarfile

    marker = tmp_path / "marker"
    raw = pickle.dumps({b"data": WritesMarker(marker), b"labels": [0]})
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    one_line_exit_2(capsys, ["train", "-c", QUICK, "-o", "data.name=cifar10", "-o", f"data.root={tmp_path}",
                             "-o", f"output_dir={tmp_path}/run"],
                    match="data_batch_1: refused to load: the file references builtins.exec")
    assert not marker.exists()


def test_crafted_checkpoint_at_resume_never_runs_and_changes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    C.save(C.load(QUICK, [f"output_dir={run}", "train.progress=false"]), str(run / "config.yaml"))
    before = (run / "config.yaml").read_bytes()
    marker = tmp_path / "marker"
    crafted_checkpoint(str(run / "checkpoints" / "latest.pdckpt"), marker)
    one_line_exit_2(capsys, ["train", "--resume", str(run)], match="latest.pdckpt: refused to load")
    assert not marker.exists()
    assert (run / "config.yaml").read_bytes() == before
    assert sorted(os.listdir(run)) == ["checkpoints", "config.yaml"]


# ------------------------------------------------------------------------------------ signature, resume
FAST = ["model.name=mlp", "model.params={hidden: [32]}", "data.subset=300", "data.batch_size=50", "train.epochs=2",
        "train.checkpoint_every=1", "train.progress=false", "train.visualdl=false", "train.calibration=false",
        "train.report=true", "scheduler.by=epoch"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch mlp run (checkpoints every epoch, report written at the end)."""
    out = tmp_path_factory.mktemp("trust") / "run"
    assert cli.main(["-q", "train", "-c", QUICK, *sum((["-o", o] for o in FAST), []), "-o", f"output_dir={out}"]) == 0
    return out


def copy_run(trained, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    cfg = C.load(str(dst / "config.yaml"), [f"output_dir={dst}"])
    C.save(cfg, str(dst / "config.yaml"))
    return dst


def snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_config_that_does_not_match_the_checkpoint_is_named_field_by_field(trained, tmp_path, capsys):
    cfg = str(trained / "config.yaml")
    err = one_line_exit_2(capsys, ["eval", "-c", cfg, "--checkpoint", str(trained), "-o", "model.name=small_cnn",
                                   "-o", "model.params={channels: [8]}", "-o", "method.name=co_teaching",
                                   "-o", "method.params={estimate_epoch: 0.5}",
                                   "-o", "data.image_size=12"], match="does not match the config")
    for part in ('model: checkpoint "mlp", config "small_cnn"', 'model_params: checkpoint {"hidden": [32]}',
                 'method: checkpoint "standard", config "co_teaching"', 'networks: checkpoint ["net"], config '
                 '["net1", "net2"]', "input_shape: checkpoint [1, 8, 8], config [1, 12, 12]"):
        assert part in err
    one_line_exit_2(capsys, ["export", "-c", cfg, "--checkpoint", str(trained), "--out", str(tmp_path / "x"),
                             "-o", "model.params={hidden: [16]}"], match="model_params: checkpoint")
    assert not (tmp_path / "x").exists()
    one_line_exit_2(capsys, ["report", "-c", cfg, "--checkpoint", str(trained), "--out", str(tmp_path / "r"),
                             "-o", "data.mean=[0.5]", "-o", "data.std=[0.5]"], match="mean: checkpoint [")


def test_missing_or_unexpected_weights_are_an_error(trained, tmp_path, capsys):
    from robust_paddle.engine.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(str(trained))
    net = state["networks"]["net"]
    key = sorted(net)[0]
    net["extra.weight"] = net.pop(key)
    path = save_checkpoint(state, str(tmp_path / "edited.pdckpt"))
    one_line_exit_2(capsys, ["eval", "-c", str(trained / "config.yaml"), "--checkpoint", path],
                    match=f"network 'net' does not fit the model -- missing (1): {key}; unexpected (1): extra.weight")


def test_resume_refuses_a_changed_model_and_writes_nothing(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    one_line_exit_2(capsys, ["train", "--resume", str(run), "-o", "model.name=small_cnn", "-o", "loss.name=ce"],
                    match='--resume: model.name ("mlp" -> "small_cnn"), loss.name ("gce" -> "ce") cannot change')
    (run / "checkpoints" / "latest.pdckpt").write_bytes(b"\x80\x04garbage")
    before = snapshot(run)
    one_line_exit_2(capsys, ["train", "--resume", str(run), "-o", "train.epochs=3"], match="cannot be read")
    assert snapshot(run) == before


def test_resuming_a_finished_run_changes_no_file(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    assert cli.main(["-q", "train", "--resume", str(run)]) == 0
    assert snapshot(run) == before
    assert '"epochs_run": 2' in capsys.readouterr().out


def test_resume_applies_new_epochs_and_lr_with_the_schedule_replanned(trained, tmp_path, capsys):
    import json

    from robust_paddle.engine.checkpoint import load_checkpoint
    from robust_paddle.optim import build_scheduler
    from robust_paddle.pipeline import resume as R
    from robust_paddle.pipeline.build import build_run

    run = copy_run(trained, tmp_path)
    old_lr = C.load(str(run / "config.yaml")).optimizer.lr
    # the first resumed epoch already runs at the re-planned rate (not the saved plan's last value)
    cfg = C.load(str(run / "config.yaml"), ["train.epochs=4", "optimizer.lr=0.2"])
    state = load_checkpoint(str(run))
    changes = R.resume_changes(state["config"], cfg, source="run")
    assert changes == {"train.epochs": (2, 4), "optimizer.lr": (old_lr, 0.2)}
    sched = build_scheduler(cfg.scheduler, base_lr=0.2, epochs=4, steps_per_epoch=1)
    built = build_run(cfg, output_dir=str(tmp_path / "scratch"), hooks=[])
    R.apply_resume(built, state, changes, source="run")
    assert built.trainer.start_epoch == 2 and built.trainer.optimizer.get_lr() == pytest.approx(sched.lr_at(2))
    assert sched.lr_at(2) > 0
    # through the CLI: two more epochs, config.yaml records what applied
    assert cli.main(["-q", "train", "--resume", str(run), "-o", "train.epochs=4", "-o", "optimizer.lr=0.2"]) == 0
    cfg = C.load(str(run / "config.yaml"))
    assert cfg.train.epochs == 4 and cfg.optimizer.lr == 0.2
    history = json.loads((run / "metrics.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[2]["train/lr"] == pytest.approx(sched.lr_at(3))  # recorded after the epoch's scheduler step


def test_a_run_that_died_before_its_first_checkpoint_restarts_in_place(tmp_path, capsys):
    run = tmp_path / "run"
    overrides = sum((["-o", o] for o in FAST + ["train.epochs=1", "train.report=false", f"output_dir={run}"]), [])
    C.save(C.load(QUICK, [o for o in overrides if o != "-o"]), str(run / "config.yaml"))
    (run / "checkpoints").mkdir()
    assert cli.main(["-q", "train", "--resume", str(run)]) == 0
    assert (run / "checkpoints" / "latest.pdckpt").is_file()
    empty = tmp_path / "again"
    C.save(C.load(QUICK, [f"output_dir={empty}"]), str(empty / "config.yaml"))
    assert cli.main(["-q", "train", "-c", QUICK, *overrides[:-1], f"output_dir={empty}"]) == 0
    one_line_exit_2(capsys, ["train", "-c", QUICK, *overrides[:-1], f"output_dir={empty}"],
                    match="already holds a run")


def test_report_keeps_the_runs_own_report_unless_out_names_it(trained, tmp_path, capsys):
    run = copy_run(trained, tmp_path)
    csv = (run / "label_issues.csv").read_bytes()
    ckpt = str(run / "checkpoints" / "epoch_001.pdckpt")
    argv = ["-q", "report", "-c", str(run / "config.yaml"), "--checkpoint", ckpt]
    assert cli.main(argv) == 0  # the run has its report: this one goes to reports/epoch_001/
    assert (run / "label_issues.csv").read_bytes() == csv
    other = run / "reports" / "epoch_001" / "label_issues.csv"
    assert other.is_file()
    capsys.readouterr()
    one_line_exit_2(capsys, argv[1:], match=f"report: {run}/reports/epoch_001 already holds a report (and so does "
                                            f"the run folder); pass --out {run}/reports/epoch_001 to replace it")
    assert cli.main([*argv, "--out", str(run)]) == 0  # named: replaced
    assert (run / "label_issues.csv").read_bytes() == other.read_bytes() != csv


# ------------------------------------------------------------------------------------ OSError
def test_train_into_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    overrides = sum((["-o", o] for o in FAST), [])
    one_line_exit_2(capsys, ["train", "-c", QUICK, *overrides, "-o", f"output_dir={tmp_path}/file/run"],
                    match=f"{tmp_path}/file")  # the wording is the CLI's; the line names the path

    def denied(path, *a, **k):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", denied)
    one_line_exit_2(capsys, ["train", "-c", QUICK, *overrides, "-o", f"output_dir={tmp_path}/ro/run"],
                    match=f"{tmp_path}/ro/run: Permission denied")


def test_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    import robust_paddle.engine.checkpoint as ck

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # every durable write of the run fails as on a full disk
    overrides = sum((["-o", o] for o in FAST), [])
    line = one_line_exit_2(capsys, ["train", "-c", QUICK, *overrides, "-o", f"output_dir={tmp_path}/run"],
                           match=f"{tmp_path}/run/config.yaml")
    assert line.endswith(": No space left on device"), line
    with pytest.raises(OSError) as info:  # the checkpoint writer names its file too
        ck.save_checkpoint({"epoch": 1, "networks": {}, "config": {}, "meta": {}}, str(tmp_path / "c.pdckpt"))
    assert info.value.filename == str(tmp_path / "c.pdckpt") and info.value.errno == 28
    assert not list(tmp_path.glob("c.pdckpt*"))


def test_serve_on_a_busy_port_is_one_line(tmp_path_factory, capsys):
    import socket

    from tests._export_runs import exported

    _, model_dir, _ = exported(tmp_path_factory, "mlp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        one_line_exit_2(capsys, ["serve", "--model", model_dir, "--port", str(port)],
                        match=f"cannot listen on 127.0.0.1:{port}: ")
