"""Weights-only loading: safetensors checkpoints round-trip every state type; pickles (.pdparams, format-1
checkpoints) are read through an allow-list, and a crafted pickle never runs its payload."""

import os
import pickle

import numpy as np
import paddle
import pytest
from safetensors.numpy import save_file

from robust_paddle.data import safe_pickle
from robust_paddle.engine.checkpoint import copy_checkpoint, load_checkpoint, load_weights, save_checkpoint
from robust_paddle.errors import CheckpointError


class MarkerPayload:
    """Unpickling this writes ``path`` through builtins.exec (what a hostile checkpoint would do)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


class SystemPayload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def crafted(path, marker, *, kind="exec", wrap=True):
    """A pickle that looks like a checkpoint (or a state dict) and writes ``marker`` when unpickled."""
    payload = MarkerPayload(marker) if kind == "exec" else SystemPayload(marker)
    obj = {"format": 1, "epoch": 1, "networks": {"net": {"w": payload}}, "config": {}, "meta": {}} if wrap \
        else {"fc.weight": payload}
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)
    return str(path)


def test_state_round_trips_every_type(tmp_path):
    lin = paddle.nn.Linear(3, 2)
    state = {"epoch": 3, "networks": {"net": lin.state_dict()}, "config": {"a": [1, 2.5, None, "x"]},
             "meta": {"mean": [0.5], "nan": float("nan")},
             "method": {"divisions": {0: np.arange(4), 7: np.array([True, False])}, "pair": (1, "b"),
                        "scalar": np.float32(1.5), "bytes": b"\x00\x01", "__weird": {1, 2}},
             "bf16": paddle.to_tensor([1.0, 2.0]).astype("bfloat16")}
    path = save_checkpoint(state, str(tmp_path / "c.pdckpt"))
    with open(path, "rb") as fh:
        assert not safe_pickle.is_pickle(fh.read(1))  # safetensors, not a pickle
    back = load_checkpoint(path)
    assert back["format"] == 2 and back["epoch"] == 3 and back["config"] == {"a": [1, 2.5, None, "x"]}
    for k, v in lin.state_dict().items():
        assert isinstance(back["networks"]["net"][k], paddle.Tensor)
        np.testing.assert_array_equal(back["networks"]["net"][k].numpy(), v.numpy())
    m = back["method"]
    assert set(m["divisions"]) == {0, 7} and m["divisions"][7].dtype == np.bool_
    np.testing.assert_array_equal(m["divisions"][0], np.arange(4))
    assert m["pair"] == (1, "b") and m["scalar"] == np.float32(1.5) and m["scalar"].dtype == np.float32
    assert m["bytes"] == b"\x00\x01" and m["__weird"] == {1, 2}
    assert np.isnan(back["meta"]["nan"])
    assert str(back["bf16"].dtype).endswith("bfloat16") and back["bf16"].astype("float32").numpy().tolist() == [1, 2]


def test_format1_pickle_checkpoint_still_loads(tmp_path):
    lin = paddle.nn.Linear(3, 2)
    path = str(tmp_path / "old.pdckpt")
    paddle.save({"format": 1, "epoch": 2, "networks": {"net": lin.state_dict()}, "config": {}, "meta": {},
                 "method": {"t": np.eye(2)}}, path)
    state = load_checkpoint(path)
    np.testing.assert_array_equal(state["networks"]["net"]["weight"].numpy(), lin.weight.numpy())
    np.testing.assert_array_equal(state["method"]["t"], np.eye(2))


@pytest.mark.parametrize("kind", ["exec", "system"])
def test_crafted_checkpoint_never_runs(tmp_path, kind):
    marker = tmp_path / "marker"
    path = crafted(tmp_path / "evil.pdckpt", marker, kind=kind)
    with pytest.raises(CheckpointError, match=r"evil.pdckpt: refused to load: the file references "
                                              r"\S*(exec|system)"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_weights(crafted(tmp_path / "evil.pdparams", marker, kind=kind, wrap=False))
    assert not marker.exists()


def test_paddle_eval_only_in_its_lodtensor_form(tmp_path):
    marker = tmp_path / "marker"

    class EvalPayload:
        def __reduce__(self):
            return (eval, (f"open({str(marker)!r}, 'w')",))

    with pytest.raises(CheckpointError, match="cannot be read as a pickle.*LoDTensor"):
        safe_pickle.safe_loads(pickle.dumps({"w": EvalPayload()}), source="x.pdparams")
    assert not marker.exists()
    arr = np.arange(3.0)

    class LoD:
        def __reduce__(self):
            return (eval, ("data", {"data": arr}))

    np.testing.assert_array_equal(safe_pickle.safe_loads(pickle.dumps(LoD()), source="x"), arr)


def test_load_weights_formats(tmp_path):
    lin = paddle.nn.Linear(4, 3)
    ref = {k: v.numpy() for k, v in lin.state_dict().items()}
    paddle.save(lin.state_dict(), str(tmp_path / "a.pdparams"))
    with open(tmp_path / "b.pdparams", "wb") as fh:
        pickle.dump({"state_dict": ref, "StructuredToParameterName@@": {"weight": "w"}}, fh)
    save_file(ref, str(tmp_path / "c.safetensors"))
    save_checkpoint({"epoch": 1, "networks": {"net": lin.state_dict()}, "config": {}, "meta": {}},
                    str(tmp_path / "d.pdckpt"))
    for name in ("a.pdparams", "b.pdparams", "c.safetensors", "d.pdckpt"):
        got = load_weights(str(tmp_path / name))
        assert set(got) == set(ref), name
        for k in ref:
            assert isinstance(got[k], np.ndarray)
            np.testing.assert_array_equal(got[k], ref[k])
    with pytest.raises(CheckpointError, match="has no network 'other'"):
        load_weights(str(tmp_path / "d.pdckpt"), network="other")
    with open(tmp_path / "e.pdparams", "wb") as fh:
        pickle.dump({"w": "text"}, fh)
    with pytest.raises(CheckpointError, match=r"e.pdparams: entry 'w' is a str, not an array"):
        load_weights(str(tmp_path / "e.pdparams"))
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "f.pdckpt"))
    with pytest.raises(CheckpointError, match="safetensors file but not a robust_paddle checkpoint"):
        load_checkpoint(str(tmp_path / "f.pdckpt"))
    (tmp_path / "g.pdparams").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="g.pdparams: cannot be read as a pickle"):
        load_weights(str(tmp_path / "g.pdparams"))


def test_check_signature_lists_every_mismatch_and_reads_old_checkpoints():
    from robust_paddle.engine.checkpoint import check_signature, check_state_keys

    sig = {"model": "mlp", "model_params": {"hidden": [32]}, "method": "standard", "networks": ["net"],
           "num_classes": 10, "input_shape": [1, 8, 8], "mean": [0.5], "std": [0.25], "tokenizer": {"vocab": 100}}
    state = {"meta": {"signature": sig}}
    check_signature(state, {**sig, "mean": [0.5 + 1e-9]}, source="c")  # float noise is not a mismatch
    with pytest.raises(CheckpointError, match=r'checkpoint c does not match the config -- num_classes: checkpoint '
                                              r'10, config 3; tokenizer: checkpoint \{"vocab": 100\}, config '
                                              r'\{"vocab": 200\}; use the config'):
        check_signature(state, {**sig, "num_classes": 3, "tokenizer": {"vocab": 200}}, source="c")
    old = {"config": {"model": {"name": "mlp", "params": {}}, "method": {"name": "standard"}},
           "networks": {"net": {}}, "meta": {"num_classes": 10, "input_shape": [1, 8, 8]}}
    check_signature(old, {**sig, "model_params": {}}, source="old")  # no recorded normalisation: not compared
    with pytest.raises(CheckpointError, match='model: checkpoint "mlp", config "small_cnn"'):
        check_signature(old, {**sig, "model": "small_cnn", "model_params": {}}, source="old")
    w = np.zeros((2, 3), np.float32)
    with pytest.raises(CheckpointError, match=r"c: network 'net' does not fit the model -- shape mismatch \(1\): "
                                              r"w \[2, 3\] vs \[3, 3\]"):
        check_state_keys({"w": np.zeros((3, 3))}, {"w": w}, what="network 'net'", source="c")


def _state(epoch, w):
    return {"epoch": epoch, "networks": {"net": {"w": w}}, "config": {}, "meta": {}}


@pytest.mark.parametrize("links", [True, False])
def test_copied_checkpoint_keeps_its_epoch_after_latest_is_rewritten(tmp_path, monkeypatch, links):
    if not links:  # a file system without hard links: an atomic byte copy instead
        def no_link(src, dst):
            raise OSError(1, "Operation not permitted", src)
        monkeypatch.setattr(os, "link", no_link)
    latest, best = str(tmp_path / "latest.pdckpt"), str(tmp_path / "best.pdckpt")
    save_checkpoint(_state(1, np.arange(4, dtype=np.float32)), latest)
    assert copy_checkpoint(latest, best) == best
    save_checkpoint(_state(2, np.zeros(4, dtype=np.float32)), latest)
    kept, now = load_checkpoint(best), load_checkpoint(latest)
    assert kept["epoch"] == 1 and now["epoch"] == 2
    np.testing.assert_array_equal(kept["networks"]["net"]["w"], np.arange(4, dtype=np.float32))
    assert os.stat(best).st_nlink == 1 and sorted(os.listdir(tmp_path)) == ["best.pdckpt", "latest.pdckpt"]


def test_copy_checkpoint_of_a_missing_file_leaves_the_old_one(tmp_path):
    best = str(tmp_path / "best.pdckpt")
    save_checkpoint(_state(3, np.ones(2, dtype=np.float32)), best)
    with pytest.raises(FileNotFoundError):
        copy_checkpoint(str(tmp_path / "nope.pdckpt"), best)
    assert load_checkpoint(best)["epoch"] == 3 and os.listdir(tmp_path) == ["best.pdckpt"]
