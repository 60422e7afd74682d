"""Data parallel on ``paddle.distributed``: ``robust_paddle/engine/distributed.py``, the sharded ``EpochBatchSampler``
and the trainer's data-parallel paths.

Unit tests run in this process. The end-to-end tests launch ``python -m paddle.distributed.launch
--nproc_per_node 2`` on CPU (gloo) and compare with one process:

* ``standard`` through ``robust_paddle/cli.py``, MLP (no BatchNorm, no dropout), 2 epochs. The global batch
  of 64 splits 32 + 32 (the last, 42, splits 21 + 21), so DataParallel's averaged gradient is the mean over
  the same 64 samples: only the order of float additions differs (about 1e-7 relative per step). Tolerance:
  weights within 1e-4, the epochs' train loss within 1e-5 relative, val/test accuracy within one sample.
  BatchNorm models are not compared: each rank normalises its half batch (no SyncBatchNorm on CPU).
* ``dividemix`` through ``tests/dist_worker.py`` (the CLI plus a hook that makes every rank dump its state),
  MLP, warm-up 1 epoch then 1 DivideMix epoch. Clean probabilities must be *equal* on both ranks after
  every epoch (gathered per-sample losses, one GMM, broadcast from rank 0). The warm-up epoch is CE like
  ``standard``, so its division matches one process within 1e-3. The DivideMix epoch differs by design:
  each rank splits labelled/unlabelled rows and draws its MixMatch permutation within its half batch, so
  the final accuracies are compared within 0.05 (about 2 standard errors of 359 test samples at 0.9).
  The same launch resumes a copy of the run from its epoch-1 checkpoint: equal to the uninterrupted run.
* ``model.freeze_epochs`` through ``tests/dist_worker.py``, MLP, 3 epochs with the backbone frozen for 2:
  frozen parameters stay bit-identical, trainable ones are equal on both ranks after every epoch and match
  one process within the ``standard`` tolerances.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle)
from robust_paddle import config as C
from robust_paddle.data import ArrayDataset, EpochBatchSampler, Pipeline, build_loader
from robust_paddle.data.imbalance import WeightedEpochBatchSampler
from robust_paddle.engine import distributed as dist
from robust_paddle.engine.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = ["train.epochs=2", "model.name=mlp", "train.progress=false", "train.checkpoint_every=1"]
QUIET = ["train.report=false", "train.visualdl=false", "train.calibration=false"]


def _dataset(n: int) -> ArrayDataset:
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return ArrayDataset(x, np.arange(n) % 3, num_classes=3, pipeline=Pipeline("tabular", (0.0, 0.0), (1.0, 1.0)))


# ------------------------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("n,batch,world", [(10, 4, 2), (37, 7, 3), (64, 8, 2), (41, 8, 4), (9, 4, 3)])
@pytest.mark.parametrize("shuffle,drop_last", [(True, False), (False, False), (True, True)])
def test_ranks_split_every_global_batch(n, batch, world, shuffle, drop_last):
    ds = _dataset(n)
    one = EpochBatchSampler(ds, batch_size=batch, shuffle=shuffle, seed=5, drop_last=drop_last)
    parts = [EpochBatchSampler(ds, batch_size=batch, shuffle=shuffle, seed=5, drop_last=drop_last,
                               num_replicas=world, rank=r) for r in range(world)]
    for s in [one, *parts]:
        s.set_epoch(3)
    whole = list(one)
    per_rank = [list(p) for p in parts]
    assert all(len(b) == len(whole) == len(p) for b, p in zip(per_rank, parts))  # same number of steps
    order = one.order().tolist()
    for t, batch_ in enumerate(whole):
        got = [per_rank[r][t] for r in range(world)]
        sizes = [len(g) for g in got]
        assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
        if len(batch_) >= world:
            assert sum(got, []) == batch_  # contiguous shares, in rank order
        else:  # a short last batch is topped up with the epoch's first samples
            assert sum(got, []) == (batch_ + order * world)[:world]


def test_sampler_replica_checks():
    ds = _dataset(4)
    with pytest.raises(ValueError, match="num_replicas must be an int >= 1, got 0"):
        EpochBatchSampler(ds, batch_size=2, shuffle=False, seed=0, num_replicas=0)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 2\), got 2"):
        EpochBatchSampler(ds, batch_size=2, shuffle=False, seed=0, num_replicas=2, rank=2)


def test_build_loader_shards_default_and_given_samplers():
    ds = _dataset(12)
    seen = []
    for r in range(2):
        loader = build_loader(ds, batch_size=4, shuffle=True, seed=1, num_replicas=2, rank=r)
        loader.batch_sampler.set_epoch(2)
        seen.append(np.concatenate([b[2].numpy() for b in loader]))
    assert sorted(np.concatenate(seen).tolist()) == list(range(12))
    weighted = WeightedEpochBatchSampler(ds, weights=np.ones(12), batch_size=4, seed=1)
    loader = build_loader(ds, batch_size=4, shuffle=True, seed=1, batch_sampler=weighted, num_replicas=2, rank=1)
    assert (loader.batch_sampler.num_replicas, loader.batch_sampler.rank) == (2, 1)
    assert [len(b) for b in loader.batch_sampler] == [2, 2, 2]


def test_shard_loader_covers_the_loader_in_order():
    ds = _dataset(11)
    loader = build_loader(ds, batch_size=4, shuffle=False, seed=0)
    parts = [list(dist.shard_loader(loader, num_replicas=3, replica=r).batch_sampler) for r in range(3)]
    for t, batch in enumerate(loader.batch_sampler):  # 4 = 2 + 1 + 1, the last 3 = 1 + 1 + 1
        assert sum((p[t] for p in parts), []) == batch


# ------------------------------------------------------------------------------------- one-process API
def test_collectives_are_identities_in_one_process():
    assert (dist.world_size(), dist.rank(), dist.is_main(), dist.is_distributed()) == (1, 0, True, False)
    assert dist.init() is False
    a = np.arange(6.0).reshape(3, 2)
    assert len(dist.all_gather_array(a)) == 1 and np.array_equal(dist.all_gather_array(a)[0], a)
    assert dist.broadcast_array(a) is a and dist.broadcast_array(None) is None
    assert dist.all_reduce_sum(np.array([1, 2], dtype=np.int32)).dtype == np.int64
    assert dist.all_reduce_sum(np.array([0.5], dtype=np.float32)).dtype == np.float64
    assert dist.any_true(True) and not dist.any_true(False)
    assert dist.mean_scalars({"a": 1}) == {"a": 1}
    assert dist.all_gather_object({"x": 1}) == [{"x": 1}]
    dist.barrier()


def test_gather_rows_orders_by_position_and_checks_coverage():
    vals = np.array([[3.0], [1.0], [2.0]])
    assert dist.gather_rows(vals, np.array([2, 0, 1]), total=3)[:, 0].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError, match="covered 2 of 3 rows"):
        dist.gather_rows(vals[:2], np.array([0, 1]), total=3)
    with pytest.raises(ValueError, match="3 rows but 2 positions"):
        dist.gather_rows(vals, np.array([0, 1]), total=3)


def test_distributed_network_is_a_drop_in_for_the_model():
    import paddle

    from robust_paddle.models import build_model

    net = build_model("mlp", num_classes=3, input_shape=(4,), hidden=[5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one process: DataParallel warns it runs single-card
        wrapped = dist.DistributedNetwork(net)
    x = paddle.randn([2, 4])
    assert dist.unwrap(wrapped) is net and dist.unwrap(net) is net
    assert np.allclose(wrapped(x).numpy(), net(x).numpy())
    assert np.allclose(wrapped.classifier(wrapped.forward_features(x)).numpy(), net(x).numpy())
    assert wrapped.feature_dim == net.feature_dim
    assert [k for k, _ in wrapped.named_parameters()] == [k for k, _ in net.named_parameters()]
    assert list(wrapped.state_dict()) == list(net.state_dict())
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute  # noqa: B018
    nets = {"net": wrapped, "other": net}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dist.wrap_networks(nets)
    assert out["net"] is wrapped and isinstance(out["other"], dist.DistributedNetwork)
    with dist.no_sync(out):
        pass


def test_kfold_is_refused_under_data_parallel(monkeypatch, tmp_path):
    from robust_paddle.pipeline import run

    monkeypatch.setattr(run.dist, "init", lambda **kw: True)
    monkeypatch.setattr(run.dist, "world_size", lambda: 2)
    cfg = C.load(os.path.join(REPO, "configs", "quickstart.yaml"), ["train.kfold=3", f"output_dir={tmp_path}/k"])
    with pytest.raises(ValueError, match=r"train.kfold=3 trains K independent models.*launch it as one process"):
        run.train(cfg)


# ------------------------------------------------------------------------------------- two processes
def _launch(script: str, args: list[str], *, log_dir: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PADDLE_TRAINERS_NUM", None)
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", log_dir,
           script, *args]
    proc = subprocess.run(cmd, env=env, cwd=os.path.dirname(log_dir), capture_output=True, text=True, timeout=420)
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{open(p, encoding='utf-8', errors='replace').read()[-3000:]}"
                         for p in sorted(glob.glob(os.path.join(log_dir, "workerlog.*"))))
        pytest.fail(f"launch failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{logs}")


def _one_process(cfg_path: str, overrides: list[str]) -> dict:
    from robust_paddle.pipeline.run import train

    return train(C.load(cfg_path, overrides))


def _overrides(out: str, extra: list[str]) -> list[str]:
    return [*COMMON, *extra, f"output_dir={out}"]


@pytest.fixture(scope="module")
def standard_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist-standard")
    cfg = os.path.join(REPO, "configs", "quickstart.yaml")
    two = str(root / "two")
    args = ["train", "-c", cfg] + sum((["-o", o] for o in _overrides(two, [])), [])
    _launch(os.path.join(REPO, "robust_paddle", "cli.py"), args, log_dir=str(root / "log"))
    one = _one_process(cfg, _overrides(str(root / "one"), QUIET))
    return root, one


@pytest.mark.slow
def test_two_processes_match_one_process_standard(standard_runs):
    root, one = standard_runs
    with open(root / "two" / "metrics.json", encoding="utf-8") as fh:
        two = json.load(fh)
    for h1, h2 in zip(one["history"], two["history"]):
        assert h2["train/loss"] == pytest.approx(h1["train/loss"], rel=1e-5)
    for split, n in (("val", 180), ("test", 359)):
        assert abs(two["final"][f"{split}/acc"] - one["final"][f"{split}/acc"]) <= 1 / n + 1e-9
    a = load_checkpoint(str(root / "one" / "checkpoints" / "latest.pdckpt"))
    b = load_checkpoint(str(root / "two" / "checkpoints" / "latest.pdckpt"))
    assert b["world_size"] == 2 and a["world_size"] == 1
    assert list(a["networks"]["net"]) == list(b["networks"]["net"])  # no DataParallel prefix
    for k, v in a["networks"]["net"].items():
        np.testing.assert_allclose(b["networks"]["net"][k].numpy(), v.numpy(), atol=1e-4)
    assert set(a["optimizer"]) == set(b["optimizer"])


@pytest.mark.slow
def test_only_rank_zero_writes_and_logs(standard_runs):
    root, _ = standard_runs
    run = root / "two"
    assert len(glob.glob(str(run / "vdl" / "vdlrecords*"))) == 1  # one VisualDL writer
    for name in ("label_issues.csv", "reliability.png", "config.yaml", "checkpoints/epoch_002.pdckpt"):
        assert (run / name).exists(), name  # rank-0-only hooks ran to the end (no collective deadlock)
    assert not glob.glob(str(run / "checkpoints" / "*.tmp-*"))
    with open(root / "log" / "workerlog.1", encoding="utf-8", errors="replace") as fh:
        assert "INFO robust_paddle" not in fh.read()


@pytest.fixture(scope="module")
def dividemix_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist-dividemix")
    cfg = os.path.join(REPO, "configs", "dividemix", "digits.yaml")
    extra = [*QUIET, "method.params.warmup_epochs=1"]
    two = _overrides(str(root / "two"), extra) + [f"train.hooks=[{{name: dump_rank_state, folder: {root}/dump}}]"]
    args = ["train", "-c", cfg] + sum((["-o", o] for o in two), [])
    args += ["--then-resume", str(root / "resumed"), str(root / "dump_resumed")]
    _launch(os.path.join(REPO, "tests", "dist_worker.py"), args, log_dir=str(root / "log"))
    one = _one_process(cfg, _overrides(str(root / "one"), extra))
    return root, one


def _clean_prob(checkpoint: str) -> np.ndarray:
    divisions = load_checkpoint(checkpoint)["method"]["divisions"]
    return np.mean([d["prob"] for d in divisions], axis=0)


@pytest.mark.slow
def test_dividemix_clean_probabilities_equal_across_ranks(dividemix_runs):
    root, _ = dividemix_runs
    for epoch in (1, 2):
        p0, p1 = (np.load(root / "dump" / f"rank{r}" / f"clean_prob_epoch{epoch}.npy") for r in (0, 1))
        assert p0.shape == (1258,) and np.array_equal(p0, p1)
    f0, f1 = (json.loads((root / "dump" / f"rank{r}" / "final.json").read_text()) for r in (0, 1))
    assert f0["eval"] == f1["eval"]  # every rank holds the same gathered evaluation
    # and the same reduced epoch scalars, except timings and the checkpoint hook's best/* (rank 0 only)
    same = [k for k in f0["final"] if not k.startswith(("time/", "best/"))]
    assert "train/loss" in same and "select/precision" in same
    assert {k: f1["final"][k] for k in same} == {k: f0["final"][k] for k in same}
    for epoch in (1, 2):  # identical networks (parameters and BN statistics) on both ranks
        w0, w1 = (np.load(root / "dump" / f"rank{r}" / f"weights_epoch{epoch}.npy") for r in (0, 1))
        np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(_clean_prob(str(root / "two" / "checkpoints" / "latest.pdckpt")),
                                  np.load(root / "dump" / "rank0" / "clean_prob_epoch2.npy"))
    # the digits preset warms up with learned transition matrices (outside the DataParallel networks, their
    # gradients averaged by a hook): trained, and part of the per-rank weights compared above
    weights = load_checkpoint(str(root / "two" / "checkpoints" / "latest.pdckpt"))["method"]["transitions"]
    assert len(weights) == 2 and all(np.abs(np.asarray(w) + 2.0).max() > 1e-3 for w in weights)


@pytest.mark.slow
def test_dividemix_two_processes_track_one_process(dividemix_runs):
    root, one = dividemix_runs
    warm1 = _clean_prob(str(root / "one" / "checkpoints" / "epoch_001.pdckpt"))
    warm2 = _clean_prob(str(root / "two" / "checkpoints" / "epoch_001.pdckpt"))
    assert np.abs(warm1 - warm2).max() < 1e-3
    two = json.loads((root / "dump" / "rank0" / "final.json").read_text())["final"]
    for key in ("val/acc", "test/acc", "val/acc_clean"):
        assert abs(two[key] - one["final"][key]) <= 0.05, key


@pytest.mark.slow
def test_dividemix_resume_with_same_ranks_is_exact(dividemix_runs):
    root, _ = dividemix_runs
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(root / "dump_resumed" / f"rank{r}" / "clean_prob_epoch2.npy"),
                                      np.load(root / "dump" / f"rank{r}" / "clean_prob_epoch2.npy"))
    full = json.loads((root / "dump" / "rank0" / "final.json").read_text())["final"]
    resumed = json.loads((root / "dump_resumed" / "rank0" / "final.json").read_text())["final"]
    same = [k for k in full if not k.startswith("time/")]
    assert {k: resumed[k] for k in same} == {k: full[k] for k in same}
    a = load_checkpoint(str(root / "two" / "checkpoints" / "latest.pdckpt"))["networks"]
    b = load_checkpoint(str(root / "resumed" / "checkpoints" / "latest.pdckpt"))["networks"]
    for name in a:
        for k in a[name]:
            np.testing.assert_array_equal(a[name][k].numpy(), b[name][k].numpy())


@pytest.fixture(scope="module")
def frozen_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist-freeze")
    cfg = os.path.join(REPO, "configs", "quickstart.yaml")
    extra = [*QUIET, "train.epochs=3", "model.freeze_epochs=2", "optimizer.backbone_lr_mult=0.5"]
    two = _overrides(str(root / "two"), extra) + [f"train.hooks=[{{name: dump_rank_state, folder: {root}/dump}}]"]
    _launch(os.path.join(REPO, "tests", "dist_worker.py"), ["train", "-c", cfg] + sum((["-o", o] for o in two), []),
            log_dir=str(root / "log"))
    one = _one_process(cfg, _overrides(str(root / "one"), extra))
    return root, one


@pytest.mark.slow
def test_frozen_backbone_under_data_parallel(frozen_runs):
    """model.freeze_epochs=2 of 3: the backbone stays bit-identical to its initial weights on both ranks while
    frozen, the head trains; after unfreezing everything trains, and the ranks hold equal networks after every
    epoch (without DataParallel's find_unused_parameters the unfrozen backbone was no longer all-reduced and
    the ranks drifted apart by ~1e-3 in one epoch). The run matches one process like the standard run does."""
    root, one = frozen_runs
    state = {(r, e): dict(np.load(root / "dump" / f"rank{r}" / f"networks_epoch{e}.npz")) for r in (0, 1) for e in range(4)}
    trainable = {e: json.loads((root / "dump" / "rank0" / f"trainable_epoch{e}.json").read_text()) for e in range(4)}
    keys = sorted(state[0, 0])
    head = [k for k in keys if k.startswith("net/classifier.")]
    backbone = [k for k in keys if k not in head]
    assert len(head) == 2 and len(backbone) == 4
    assert trainable[0] == trainable[3] == keys and trainable[1] == trainable[2] == head
    for e in range(4):  # the ranks agree bit for bit after every epoch
        for k in keys:
            np.testing.assert_array_equal(state[0, e][k], state[1, e][k], err_msg=f"epoch {e} {k}")
    for e in (1, 2):  # frozen: backbone bit-identical to the start, head trained
        assert all(np.array_equal(state[0, e][k], state[0, 0][k]) for k in backbone), e
        assert not any(np.array_equal(state[0, e][k], state[0, e - 1][k]) for k in head), e
    assert not any(np.array_equal(state[0, 3][k], state[0, 2][k]) for k in backbone)  # unfrozen: trains
    ck = load_checkpoint(str(root / "one" / "checkpoints" / "latest.pdckpt"))["networks"]["net"]
    for k, v in ck.items():  # averaged gradients = one process's gradient over the same global batches
        np.testing.assert_allclose(state[0, 3][f"net/{k}"], v.numpy(), atol=1e-4, err_msg=k)
    two = [json.loads((root / "dump" / "rank0" / f"scalars_epoch{e}.json").read_text()) for e in (1, 2, 3)]
    for h1, h2 in zip(one["history"], two):
        assert h2["train/loss"] == pytest.approx(h1["train/loss"], rel=1e-5)
        assert h2["lr/backbone"] == pytest.approx(h1["lr/backbone"])


# ------------------------------------------------------------------------------------- compose example
def test_multigpu_compose_override_launches_the_cli_on_the_chosen_gpus():
    from test_docker import dockerfile_instructions, load_compose, schema_errors

    doc = load_compose("docker-compose.yml", "docker-compose.multigpu.yml", env={"DEVICES": "0,1,2,3", "RUN": "dm"})
    assert schema_errors(doc) == []
    train = doc["services"]["train"]
    assert train["entrypoint"] == ["python3", "-m", "paddle.distributed.launch", "--devices", "0,1,2,3",
                                   "--log_dir", "/output/dm/launch_logs", "robust_paddle/cli.py"]
    assert train["command"][0] == "train" and train["deploy"]["resources"]["reservations"]["devices"]
    # the script path resolves in the image: WORKDIR /opt/robust_paddle holds a copy of robust_paddle/
    ins = dockerfile_instructions()
    assert ("WORKDIR", "/opt/robust_paddle") in ins and ("COPY", "robust_paddle/ robust_paddle/") in ins
    assert os.path.isfile(os.path.join(REPO, "robust_paddle", "cli.py"))
