"""robust_paddle.compress: stage specs, pruning, QAT, PTQ, robust fine-tuning, report, hook and every input check.

One tiny noisy-digits run (small CNN, 2 epochs) is trained per session; the end-to-end tests compress it on
the CPU with one fine-tuning epoch and few latency calls, then load the saved models in Paddle Inference.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import numpy as np
import pytest

import robust_paddle  # noqa: F401  (before paddle: zlib preload)
from robust_paddle import config as C
from robust_paddle.config import ConfigError

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs", "quickstart.yaml")
FAST = ["data.subset=300", "data.batch_size=50", "train.epochs=2", "model.params={channels: [8, 16]}",
        "optimizer.lr=0.1", "train.progress=false", "train.visualdl=false", "train.report=false",
        "train.calibration=false", "train.checkpoint_every=0", "slim.finetune_epochs=1", "slim.latency_iters=2",
        "slim.latency_batch_sizes=[1, 8]"]


def cfg_with(out: str, *overrides: str) -> C.Config:
    return C.load(CONFIG, FAST + [f"output_dir={out}", *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, checkpoint) of the tiny GCE run on 40% symmetric noise."""
    from robust_paddle.pipeline.run import train

    out = str(tmp_path_factory.mktemp("slim") / "run")
    train(cfg_with(out))
    return out, os.path.join(out, "checkpoints", "latest.pdckpt")


def compress(run_dir: str, ckpt: str, out: str, stages: str, *extra: str) -> dict:
    from robust_paddle.pipeline.commands import compress_command

    cfg = cfg_with(run_dir, f"slim.stages={stages}", *extra)
    return compress_command(cfg, ckpt, out_dir=out, print_table=False)


def predict(prefix: str, x: np.ndarray, *, int8: bool) -> np.ndarray:
    from robust_paddle.deploy.predictor import PaddlePredictor

    return PaddlePredictor(prefix, int8=int8)(x)


# --------------------------------------------------------------------------------------------- spec checks
@pytest.mark.parametrize("stages, match", [
    ("[{name: prune, ratio: 0}]", r"slim\.stages\[0\]\.ratio: 0\.0 is out of range; must be > 0 and < 1"),
    ("[{name: prune, ratio: 1.0}]", r"slim\.stages\[0\]\.ratio: 1\.0 is out of range"),
    ("[{name: prune, ratio: -0.2}]", r"slim\.stages\[0\]\.ratio: -0\.2 is out of range"),
    ("[{name: prune, ratio: 0.3}, {name: prune, ratio: 1.5}]", r"slim\.stages\[1\]\.ratio: 1\.5"),
    ("[{name: prune, ratio: abc}]", r"slim\.stages\[0\]\.ratio: expected float"),
    ("[{name: prune, flops_target: 1.2}]", r"slim\.stages\[0\]\.flops_target: 1\.2 is out of range"),
    ("[{name: prune}]", r"slim\.stages\[0\]: set exactly one of ratio .* and flops_target"),
    ("[{name: prune, ratio: 0.3, flops_target: 0.3}]", r"slim\.stages\[0\]: set exactly one of ratio"),
    ("[{name: prune, pruner: l2, ratio: 0.3}]",
     r"slim\.stages\[0\]\.pruner: 'l2' is not allowed; choose one of: l1norm, fpgm"),
    ("[{name: prune, ratio: 0.3, align: 0}]", r"slim\.stages\[0\]\.align: 0 is out of range"),
    ("[{name: qat, lr: 0}]", r"slim\.stages\[0\]\.lr: 0\.0 is out of range"),
    ("[{name: qat, finetune_epochs: -1}]", r"slim\.stages\[0\]\.finetune_epochs: -1 is out of range"),
    ("[{name: qat, activation_quantize_type: abs_max}]", r"slim\.stages\[0\]\.activation_quantize_type: 'abs_max'"),
    ("[{name: ptq, calibration_samples: 0}]", r"slim\.stages\[0\]\.calibration_samples: 0 is out of range"),
    ("[{name: ptq, calibration_split: test}]", r"slim\.stages\[0\]\.calibration_split: 'test' is not allowed"),
    ("[{name: ptq, algo: foo}]", r"slim\.stages\[0\]\.algo: 'foo' is not allowed"),
    ("[{name: distill}]", r"slim\.stages\[0\]\.name: 'distill' is not a compression stage; choose one of: prune"),
    ("[{ratio: 0.3}]", r"slim\.stages\[0\]\.name: None is not a compression stage"),
    ("[{name: qat, bits: 4}]", r"unknown key 'slim\.stages\[0\]\.bits'"),
    ("[{name: qat}, {name: prune, ratio: 0.3}]", r"slim\.stages\[1\]: 'prune' cannot follow the quantisation stage"),
    ("[{name: qat}, {name: ptq}]", r"slim\.stages\[1\]: only one quantisation stage"),
])
def test_invalid_stages_name_the_field(stages, match):
    with pytest.raises(ConfigError, match=match):
        C.load(CONFIG, [f"slim.stages={stages}"])


def test_valid_stages_parse_to_typed_dataclasses():
    from robust_paddle.compress import PruneStage, PTQStage, QATStage, parse_stages

    cfg = C.load(CONFIG, ["slim.stages=[{name: prune, pruner: fpgm, flops_target: 0.3, align: 8}, {name: qat}]"])
    prune, qat = parse_stages(cfg.slim.stages)
    assert isinstance(prune, PruneStage) and prune.pruner == "fpgm" and prune.flops_target == 0.3
    assert isinstance(qat, QATStage) and qat.weight_quantize_type == "channel_wise_abs_max"
    assert qat.activation_quantize_type == "moving_average_abs_max"
    (ptq,) = parse_stages([{"name": "ptq"}])
    assert isinstance(ptq, PTQStage) and ptq.calibration_samples == 256


def test_latency_batch_sizes_checked():
    with pytest.raises(ConfigError, match=r"slim\.latency_batch_sizes: expected a non-empty list of ints >= 1"):
        C.load(CONFIG, ["slim.latency_batch_sizes=[0]"])


def test_shipped_slim_configs_load(repo_root):
    folder = os.path.join(repo_root, "configs", "slim")
    names = sorted(f for f in os.listdir(folder) if f.endswith(".yaml"))
    assert names
    for name in names:
        assert C.load(os.path.join(folder, name)).slim.stages, name


# --------------------------------------------------------------------------------- environment errors
def test_missing_paddleslim_says_what_to_install(monkeypatch, tmp_path):
    from robust_paddle.pipeline.commands import compress_command

    monkeypatch.setitem(sys.modules, "paddleslim", None)  # makes `import paddleslim` raise ImportError
    cfg = C.load(CONFIG, ["slim.stages=[{name: qat}]"])
    with pytest.raises(ImportError, match=r"stage 'qat' needs PaddleSlim.*pip install robust_paddle\[slim\]"):
        compress_command(cfg, str(tmp_path / "none.pdckpt"), out_dir=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_paddleslim_tracing_works_and_never_leaks_static_mode():
    """PaddleSlim 2.6 traces layers with a helper Paddle 3 renamed; the shim (``_compat.patch_paddleslim``)
    makes it work there, and on every version a failed trace leaves dygraph mode (PaddleSlim's own does not)."""
    import paddle

    from robust_paddle.compress.backend import import_paddleslim

    import_paddleslim("prune")
    from paddleslim.core.dygraph import dygraph2program

    net = paddle.nn.Sequential(paddle.nn.Conv2D(1, 4, 3), paddle.nn.ReLU())
    program = dygraph2program(net, [[1, 1, 8, 8]])
    assert "conv2d" in {op.type for op in program.global_block().ops}
    assert paddle.in_dynamic_mode()

    class Broken(paddle.nn.Layer):
        def forward(self, x):
            raise ValueError("broken forward")

    with pytest.raises(ValueError, match="broken forward"):
        dygraph2program(Broken(), [[1, 1, 8, 8]])
    assert paddle.in_dynamic_mode()


def test_no_stages_is_an_error(tmp_path):
    from robust_paddle.pipeline.commands import compress_command

    with pytest.raises(ValueError, match=r"slim\.stages is empty"):
        compress_command(C.load(CONFIG), str(tmp_path / "x.pdckpt"), out_dir=str(tmp_path / "out"))


# ------------------------------------------------------------------------------------- unit-level checks
def test_unknown_pruner_name_rejected():
    import paddle

    from robust_paddle.compress.prune import build_pruner

    with pytest.raises(ValueError, match=r"pruner: 'l2norm' is not a PaddleSlim filter pruner; choose one of: l1norm, fpgm"):
        build_pruner(paddle.nn.Conv2D(1, 4, 3), "l2norm", input_shape=(1, 8, 8))


def test_empty_calibration_sets_rejected(tmp_path):
    from robust_paddle.compress import PTQStage
    from robust_paddle.compress.quant import calibration_array, calibration_loader, quantize_post_static

    field = "slim.stages[1].calibration_split"
    with pytest.raises(ValueError, match=r"slim\.stages\[1\]\.calibration_split: the calibration set is empty"):
        calibration_array([], samples=8, seed=0, field=field)
    with pytest.raises(ValueError, match=r"slim\.stages\[1\]\.calibration_split: the calibration set is empty"):
        calibration_array(None, samples=8, seed=0, field=field)
    with pytest.raises(ValueError, match=r"slim\.stages\[0\]\.calibration_samples: the calibration set is empty"):
        quantize_post_static(str(tmp_path), str(tmp_path / "q"), np.zeros((0, 1, 8, 8), np.float32), stage=PTQStage(),
                             model_filename="inference.pdmodel", params_filename="inference.pdiparams",
                             field="slim.stages[0].calibration_samples")
    with pytest.raises(ValueError, match=r"calibration: the calibration array is empty"):
        calibration_loader(np.zeros((0, 4), np.float32), feed_name="x", batch_size=2)


def test_calibration_array_is_a_seeded_subset():
    from robust_paddle.compress.quant import calibration_array

    ds = [(np.full((2,), i, np.float32), i, i) for i in range(10)]
    a = calibration_array(ds, samples=4, seed=3, field="f")
    assert a.shape == (4, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, calibration_array(ds, samples=4, seed=3, field="f"))
    assert len(np.unique(a[:, 0])) == 4
    assert calibration_array(ds, samples=50, seed=0, field="f").shape == (10, 2)


def test_accuracy_check_verdicts():
    from robust_paddle.compress.command import accuracy_check

    ok = accuracy_check({"test_acc": 0.9}, {"test_acc": 0.895}, max_drop=0.01)
    assert ok["passed"] and ok["metric"] == "test_acc" and ok["drop"] == pytest.approx(0.005)
    bad = accuracy_check({"test_acc": 0.9}, {"test_acc": 0.85}, max_drop=0.01)
    assert not bad["passed"] and bad["drop"] == pytest.approx(0.05)
    fallback = accuracy_check({"train_acc_clean": 0.8}, {"train_acc_clean": 0.81}, max_drop=0.0)
    assert fallback["passed"] and fallback["metric"] == "train_acc_clean"
    assert accuracy_check({}, {}, max_drop=0.0)["skipped"]


def test_align_ratios_keeps_multiples():
    import paddle

    from robust_paddle.compress.prune import align_ratios

    conv = paddle.nn.Conv2D(1, 32, 3)
    name = conv.weight.name
    assert align_ratios(conv, {name: 0.3}, None) == {name: 0.3}
    aligned = align_ratios(conv, {name: 0.3}, 8)[name]
    assert round(32 * (1 - aligned)) % 8 == 0 and aligned == pytest.approx(0.25)
    assert align_ratios(conv, {name: 0.99}, 8)[name] == pytest.approx(0.75)  # keeps at least `align` filters


# ----------------------------------------------------------------------------------------- end to end
def test_prune_then_qat_end_to_end(trained, tmp_path, monkeypatch):
    import paddle

    from robust_paddle.compress.command import REPORT_FILE
    from robust_paddle.methods.standard import StandardMethod

    losses = []
    original = StandardMethod.train_step

    def spy(self, batch, *, epoch, step):
        losses.append((type(self.loss_fn).__name__, epoch))
        return original(self, batch, epoch=epoch, step=step)

    monkeypatch.setattr(StandardMethod, "train_step", spy)
    run_dir, ckpt = trained
    out = str(tmp_path / "c")
    report = compress(run_dir, ckpt, out, "[{name: prune, ratio: 0.5, max_acc_drop: 1.0}, "
                      "{name: qat, max_acc_drop: 1.0}]")
    with open(os.path.join(out, REPORT_FILE), encoding="utf-8") as fh:
        assert json.load(fh)["stages"][1]["name"] == "qat"
    prune, qat = report["stages"]
    # pruning shrinks parameters and FLOPs; the saved program reproduces the pruned network
    assert prune["after"]["params"] < prune["before"]["params"]
    assert prune["after"]["flops"] < 0.6 * prune["before"]["flops"]
    assert prune["after"]["params_bytes"] < prune["before"]["params_bytes"]
    assert prune["checks"]["program"]["passed"] and prune["checks"]["program"]["max_abs_diff"] <= 1e-5
    assert set(prune["details"]["networks"]["net"]["ratios"].values()) == {0.5}
    # fine-tuning used the run's robust loss (GCE), with epochs numbered after the checkpoint's two
    assert losses and {name for name, _ in losses} == {"GeneralizedCrossEntropyLoss"} and min(e for _, e in losses) == 2
    assert prune["details"]["finetune"]["epochs"] == 1
    assert os.path.isfile(os.path.join(prune["dir"], "metrics.json"))
    # QAT: int8 weights, same FLOPs/params, every metric measured
    assert qat["after"]["int8"] and qat["after"]["flops"] == prune["after"]["flops"]
    # (a tiny net's weights file is dominated by fp32 BN parameters and scales: the 0.3x target is a benchmark)
    assert qat["after"]["params_bytes"] < qat["before"]["params_bytes"]
    for key in ("test_acc", "train_acc_clean", "train_acc_noisy", "latency_ms", "program_bytes"):
        assert key in qat["after"] and key in prune["before"]
    assert set(qat["after"]["latency_ms"]) == set(qat["after"]["latency_cpu_ms"]) == {"1", "8"}
    # the int8 model loads and predicts in Paddle Inference (oneDNN int8 and the op-by-op program)
    x = np.random.default_rng(0).normal(size=(5, 1, 8, 8)).astype(np.float32)
    prefix = os.path.join(qat["dir"], "inference")
    for int8 in (True, False):
        y = predict(prefix, x, int8=int8)
        assert y.shape == (5, 10) and np.isfinite(y).all()
    # only the convolutions in int8 (pool / fc in fp32): still the same model's predictions
    from robust_paddle.deploy.predictor import PaddlePredictor

    conv_only = PaddlePredictor(prefix, int8=True, int8_ops=["conv2d"])(x)
    np.testing.assert_allclose(conv_only, predict(prefix, x, int8=True), atol=0.5)
    assert (conv_only.argmax(1) == predict(prefix, x, int8=False).argmax(1)).mean() >= 0.8
    with pytest.raises(ValueError, match="int8_ops must be a non-empty list of op type names"):
        PaddlePredictor(prefix, int8=True, int8_ops="conv2d")
    info = os.path.join(qat["dir"], "inference.yml")
    assert os.path.isfile(info) and os.path.isfile(os.path.join(out, "input", "inference.yml"))
    from robust_paddle.deploy.predictor import load_model_info

    assert load_model_info(qat["dir"]).source["int8"] is True
    assert report["final"]["dir"] == qat["dir"] and report["passed"]
    # weights really are int8 in the saved parameters
    from robust_paddle import _compat

    legacy = os.path.exists(prefix + ".pdmodel")  # QAT writes the legacy program on Paddle 3.x too
    paddle.enable_static()
    try:
        guard = _compat.legacy_program_guard() if legacy else contextlib.nullcontext()
        with guard:
            exe = paddle.static.Executor(paddle.CPUPlace())
            scope = paddle.static.Scope()
            with paddle.static.scope_guard(scope):
                prog, _, _ = paddle.static.load_inference_model(prefix, exe)
                dtypes = {str(np.asarray(scope.find_var(v.name).get_tensor()).dtype)
                          for v in prog.list_vars() if v.persistable and scope.find_var(v.name) is not None
                          and v.name.endswith(".w_0") and len(v.shape) > 1}
    finally:
        paddle.disable_static()
    assert "int8" in dtypes
    # the output folder is not overwritten
    with pytest.raises(ValueError, match=r"already holds a compression"):
        compress(run_dir, ckpt, out, "[{name: qat}]")


def test_sensitivity_prune_then_ptq_end_to_end(trained, tmp_path, capsys):
    from robust_paddle.pipeline.commands import compress_command

    run_dir, ckpt = trained
    out = str(tmp_path / "c")
    cfg = cfg_with(run_dir, "slim.stages=[{name: prune, pruner: fpgm, flops_target: 0.3, sensitivity_samples: 40, "
                   "max_acc_drop: 1.0}, {name: ptq, calibration_samples: 64, batch_size: 16, max_acc_drop: 1.0}]")
    report = compress_command(cfg, ckpt, out_dir=out)
    prune, ptq = report["stages"]
    removed = 1 - prune["after"]["flops"] / prune["before"]["flops"]
    assert 0.15 < removed < 0.6
    sens = prune["details"]["networks"]["net"]["sensitivities"]
    assert sens and all(len(v) == 9 for v in sens.values())  # ratios 0.1 .. 0.9 per conv
    assert os.path.isfile(os.path.join(prune["dir"], "sensitivities_net.pickle"))
    assert ptq["details"]["calibration_samples"] == 64 and ptq["details"]["batches"] == 4
    assert ptq["after"]["int8"] and ptq["after"]["params_bytes"] < ptq["before"]["params_bytes"]
    x = np.zeros((3, 1, 8, 8), np.float32)
    assert predict(os.path.join(ptq["dir"], "inference"), x, int8=True).shape == (3, 10)
    printed = capsys.readouterr().out
    assert "stage 0: prune fpgm flops_target 0.3" in printed and "stage 1: ptq int8 hist" in printed
    assert "weights file" in printed and "latency b8 (ms)" in printed and "CPU time b8 (ms)" in printed


def test_failed_check_raises_after_the_report(trained, tmp_path, monkeypatch):
    from robust_paddle.compress import command
    from robust_paddle.compress.command import REPORT_FILE, CompressionCheckError

    def failing(before, after, *, max_drop):  # the verdict logic itself: test_accuracy_check_verdicts
        return {"metric": "test_acc", "drop": 0.5, "max_drop": max_drop, "passed": False}

    monkeypatch.setattr(command, "accuracy_check", failing)
    run_dir, ckpt = trained
    out = str(tmp_path / "c")
    with pytest.raises(CompressionCheckError, match=r"stage 0 \(prune\): failed: accuracy; see .*compress_report"):
        compress(run_dir, ckpt, out, "[{name: prune, ratio: 0.5, finetune_epochs: 0, max_acc_drop: 0.0}]",
                 "slim.latency_batch_sizes=[1]")
    with open(os.path.join(out, REPORT_FILE), encoding="utf-8") as fh:
        report = json.load(fh)
    assert not report["passed"] and not report["stages"][0]["passed"]
    assert report["stages"][0]["checks"]["program"]["passed"]


def test_compress_hook_runs_after_training(tmp_path):
    from robust_paddle.pipeline.run import train

    out = str(tmp_path / "run")
    cfg = cfg_with(out, "train.epochs=1", "train.hooks=[{name: compress, out: slim}]",
                   "slim.stages=[{name: qat, finetune_epochs: 0, calibration_batches: 2, max_acc_drop: 1.0}]",
                   "slim.latency_batch_sizes=[1]")
    train(cfg)
    with open(os.path.join(out, "slim", "compress_report.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert report["source"]["checkpoint"].endswith("latest.pdckpt") and report["stages"][0]["after"]["int8"]
    assert report["stages"][0]["details"]["calibration_batches"] == 2


def test_compress_hook_options_checked():
    from robust_paddle.pipeline.commands import CompressHook

    with pytest.raises(ValueError, match=r"compress\.checkpoint: 'last' is not allowed; choose one of: latest, best"):
        CompressHook(checkpoint="last")


class _WritesMarker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def test_sensitivity_cache_is_read_weights_only(trained, tmp_path, capsys):
    import pickle

    from paddleslim.dygraph.prune.filter_pruner import Status

    from robust_paddle.compress.prune import rewrite_sensitivity_cache
    from robust_paddle.errors import CheckpointError

    marker = tmp_path / "marker"
    good = tmp_path / "good.pickle"
    status = Status()
    status.sensitivies = {"conv2d_0.w_0": {0.1: np.float32(0.01), np.float64(0.2): 0.05}}
    status.save(str(good))
    rewrite_sensitivity_cache(str(good))
    assert Status(str(good)).sensitivies == {"conv2d_0.w_0": {0.1: pytest.approx(0.01), 0.2: 0.05}}
    # a crafted cache left in a --out folder: compress stops with one line, the payload never runs
    run_dir, ckpt = trained
    out = tmp_path / "c"
    (out / "00_prune").mkdir(parents=True)
    with open(out / "00_prune" / "sensitivities_net.pickle", "wb") as fh:
        pickle.dump({"conv": _WritesMarker(marker)}, fh)
    from robust_paddle import cli

    capsys.readouterr()
    code = cli.main(["-q", "compress", "-c", os.path.join(run_dir, "config.yaml"), "--checkpoint", ckpt, "--out",
                     str(out), "-o", "slim.stages=[{name: prune, flops_target: 0.3, sensitivity_samples: 40}]",
                     "-o", "slim.finetune_epochs=1"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("robust-paddle")]
    assert code == 2 and len(err) == 1, err
    assert "sensitivities_net.pickle: refused to load: the file references builtins.exec" in err[0]
    assert not marker.exists()
    with open(good, "wb") as fh:
        pickle.dump({"a": 1}, fh)
    with pytest.raises(CheckpointError, match="good.pickle is not a PaddleSlim sensitivity cache; delete it"):
        rewrite_sensitivity_cache(str(good))
