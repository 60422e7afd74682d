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
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("robust-paddle: error: "), err
    assert match in err, err
    return err


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
