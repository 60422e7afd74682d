"""Per-epoch files written on the trainer's writer thread (engine/file_writer.py): order, errors, and what is on
disk when hooks and the caller look."""

import json
import os
import threading

import pytest

from robust_paddle import config as C
from robust_paddle.engine import hooks as hooks_mod
from robust_paddle.engine.checkpoint import load_checkpoint, save_checkpoint
from robust_paddle.engine.file_writer import FileWriter
from robust_paddle.engine.hooks import Hook, json_text, write_json
from robust_paddle.pipeline import run as run_mod
from robust_paddle.pipeline.build import build_run
from robust_paddle.pipeline.hooks import build_hooks

FAST = ["data.subset=300", "train.progress=false", "train.visualdl=false", "train.report=false",
        "model.name=mlp", "data.batch_size=50", "train.diagnostics=false"]


def cfg_for(tmp_path, *extra):
    return C.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml"),
                  FAST + [f"output_dir={tmp_path / 'run'}", *extra])


def test_writes_run_in_order_on_one_other_thread():
    done, threads = [], set()
    gate = threading.Event()

    def job(i):
        if i == 0:
            gate.wait(5)
        threads.add(threading.get_ident())
        done.append(i)

    w = FileWriter(max_pending=10)
    for i in range(5):
        w.submit(job, i)
    assert done == []  # the first job waits on the gate: nothing ran ahead of it
    gate.set()
    w.flush()
    assert done == [0, 1, 2, 3, 4]
    assert threads and threading.get_ident() not in threads and len(threads) == 1
    w.close()


def test_at_most_max_pending_writes_are_queued():
    gate, started = threading.Event(), []
    w = FileWriter(max_pending=2)
    w.submit(lambda: (started.append(0), gate.wait(5)))
    w.submit(lambda: started.append(1))
    t = threading.Thread(target=w.submit, args=(lambda: started.append(2),))
    t.start()
    t.join(0.2)
    assert t.is_alive()  # the third hand-over waits for the oldest write
    gate.set()
    t.join(5)
    w.close()
    assert started == [0, 1, 2]


def test_a_write_error_is_raised_by_the_next_hand_over_or_the_flush(tmp_path):
    def boom():
        raise OSError(28, "No space left on device", str(tmp_path / "x.json"))

    w = FileWriter()
    w.submit(boom)
    with pytest.raises(OSError, match="No space left on device"):
        w.flush()
    w.flush()  # raised once
    w.submit(boom)
    w._pending[0].exception(timeout=5)  # wait until it failed
    with pytest.raises(OSError, match="x.json"):
        w.submit(lambda: None)
    w.close()


def test_write_json_text_is_what_json_dump_wrote(tmp_path):
    data = {"a": [1.0, float("nan"), 2], "b": {"c": "ü"}}
    write_json(str(tmp_path / "m.json"), data)
    text = (tmp_path / "m.json").read_text(encoding="utf-8")
    assert text == json_text(data) == json.dumps({"a": [1.0, None, 2], "b": {"c": "ü"}}, indent=2)


class SeesFiles(Hook):
    """Records, in after_train, which epoch latest.pdckpt holds and how many rows metrics.json has."""

    priority = 1  # before every other hook's after_train
    name = "sees_files"

    def after_train(self, trainer):
        ck = os.path.join(trainer.checkpoint_dir, "latest.pdckpt")
        self.latest_epoch = load_checkpoint(ck)["epoch"]
        with open(os.path.join(trainer.output_dir, "metrics.json"), encoding="utf-8") as fh:
            self.rows = len(json.load(fh)["history"])


def test_after_train_hooks_and_the_caller_find_every_epochs_files(tmp_path):
    cfg = cfg_for(tmp_path, "train.epochs=3", "train.checkpoint_every=2")
    seen = SeesFiles()
    run = build_run(cfg, output_dir=cfg.output_dir, hooks=build_hooks(cfg.train) + [seen])
    summary = run.trainer.fit()
    assert (seen.latest_epoch, seen.rows) == (3, 3)
    ckdir = os.path.join(cfg.output_dir, "checkpoints")
    assert load_checkpoint(os.path.join(ckdir, "latest.pdckpt"))["epoch"] == 3
    assert load_checkpoint(os.path.join(ckdir, "epoch_002.pdckpt"))["epoch"] == 2
    best = load_checkpoint(os.path.join(ckdir, "best.pdckpt"))
    assert best["epoch"] - 1 == best["hooks"]["checkpoint"]["best_epoch"]
    with open(os.path.join(cfg.output_dir, "metrics.json"), encoding="utf-8") as fh:
        assert json.load(fh) == json.loads(json_text(summary))
    assert not [n for n in os.listdir(ckdir) if n.endswith(".tmp")]
    assert not [t for t in threading.enumerate() if t.name.startswith("robust_paddle-files")]  # stopped


def test_the_files_are_those_of_their_epoch_while_the_next_one_trains(tmp_path):
    # the checkpoint is encoded at the end of its epoch: its bytes equal a synchronous save of that state
    cfg = cfg_for(tmp_path, "train.epochs=2")
    states = []

    class Snapshot(Hook):
        priority = 49  # just before the checkpoint hook: the state it encodes (less this hook's own)

        def after_epoch(self, trainer):
            path = str(tmp_path / f"sync{trainer.epoch}.pdckpt")
            save_checkpoint(trainer.state_dict(), path)
            states.append(path)

    run = build_run(cfg, output_dir=cfg.output_dir, hooks=build_hooks(cfg.train) + [Snapshot()])
    run.trainer.fit()
    latest = load_checkpoint(os.path.join(cfg.output_dir, "checkpoints", "latest.pdckpt"))
    sync = load_checkpoint(states[-1])
    for name, tensor in sync["networks"]["net"].items():
        assert (latest["networks"]["net"][name] == tensor).all(), name
    assert latest["epoch"] == sync["epoch"] == 2


def test_a_failed_checkpoint_write_stops_training_naming_the_file(tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path, "train.epochs=4")
    real, calls = hooks_mod.write_checkpoint, []

    def second_fails(payload, path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", path)
        return real(payload, path)

    monkeypatch.setattr(hooks_mod, "write_checkpoint", second_fails)
    with pytest.raises(OSError, match=r"No space left on device.*latest\.pdckpt"):
        run_mod.train(cfg)
    assert len(calls) in (2, 3)  # raised by the next epoch's hand-over at the latest
    assert load_checkpoint(str(tmp_path / "run" / "checkpoints" / "latest.pdckpt"))["epoch"] == 1
