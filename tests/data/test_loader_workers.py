"""DataLoader worker processes: started from a fork server (``_compat.loader_workers``), never forked from the
training process, whose other threads may hold locks at that moment (on Paddle 3.3 a forked worker hung on
Paddle's host-memory statistics lock within the first epoch)."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from multiprocessing.reduction import ForkingPickler

import numpy as np

from robust_paddle.config import from_dict
from robust_paddle.data import build_data
from robust_paddle.data.datasets import RowView

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Each epoch runs a loader without workers (its reader thread allocates Paddle tensors, then ends) and then
# one with workers; before the fix this hung on Paddle 3.3 within 6 epochs in 4 runs out of 4.
SCRIPT = textwrap.dedent("""
    import multiprocessing, sys
    import numpy as np
    from robust_paddle.config import from_dict
    from robust_paddle.data import build_data, build_loader

    def epoch(loader, e):
        loader.batch_sampler.set_epoch(e)
        return [(x.numpy(), y.numpy(), i.numpy()) for x, y, i in loader]

    def main():
        before = multiprocessing.get_start_method(allow_none=True)
        b = build_data(from_dict({"seed": 3, "data": {"augment": "flip_crop"}}))
        single = build_loader(b.train, batch_size=256, shuffle=True, seed=1)
        multi = build_loader(b.train, batch_size=256, shuffle=True, seed=1, num_workers=int(sys.argv[1]))
        for e in range(6):
            ref, got = epoch(single, e), epoch(multi, e)
            assert len(ref) == len(got) == 5, (len(ref), len(got))
            for a, c in zip(ref, got):
                for u, v in zip(a, c):
                    np.testing.assert_array_equal(u, v)
            print("epoch", e, "equal", flush=True)
        print("start method", before, multiprocessing.get_start_method(allow_none=True), flush=True)

    if __name__ == "__main__":
        main()
""")


def _run_bounded(args, timeout):
    """Run ``args`` in its own process group; on timeout kill the whole group (hung workers included)."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the loader with workers did not finish in {timeout} s (hung):\n{out[-3000:]}") from None
    return proc.returncode, out


def test_workers_give_the_main_process_batches_every_epoch_without_hanging(tmp_path):
    script = tmp_path / "loader_epochs.py"
    script.write_text(SCRIPT)
    rc, out = _run_bounded([sys.executable, str(script), "1"], timeout=400)
    assert rc == 0, out[-3000:]
    assert [ln for ln in out.splitlines() if ln.startswith("epoch")] == [f"epoch {e} equal" for e in range(6)]
    assert "start method None None" in out  # the process-wide default is left as it was


def test_a_whole_file_memory_map_travels_as_its_file_name(tmp_path):
    x = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    blob = bytes(ForkingPickler.dumps(RowView(mm, np.array([5, 1, 60]))))
    assert len(blob) < 1024 < x.nbytes
    view = pickle.loads(blob)
    assert isinstance(view.base, np.memmap) and view.base.filename == mm.filename
    np.testing.assert_array_equal(view[0], x[5])
    np.testing.assert_array_equal(view[2], x[60])
    part = pickle.loads(bytes(ForkingPickler.dumps(mm[10:12])))  # not a whole file: the values themselves
    assert not isinstance(part, np.memmap)
    np.testing.assert_array_equal(part, x[10:12])


def test_datasets_pickled_for_the_workers_give_the_same_samples(tmp_path):
    b = build_data(from_dict({"seed": 3, "data": {"augment": "flip_crop"}}))
    b.train.set_epoch(2)
    before = [b.train[i][0] for i in range(4)]  # builds (and caches) the augmentation ops
    copy = pickle.loads(bytes(ForkingPickler.dumps(b.train)))
    for i in range(4):
        np.testing.assert_array_equal(copy[i][0], before[i])
    np.testing.assert_array_equal(copy.labels, b.train.labels)

    rows = ["text,label"] + [f"sample number {k} is {'good' if k % 2 else 'bad'},{k % 2}" for k in range(30)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    t = build_data(from_dict({"data": {"name": "text", "path": str(tmp_path / "t.csv"), "text": {"max_length": 8}}}))
    copy = pickle.loads(bytes(ForkingPickler.dumps(t.train)))
    for i in range(3):
        np.testing.assert_array_equal(copy[i][0], t.train[i][0])
