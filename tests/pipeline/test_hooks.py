"""build_hooks: what a run config asks for."""

from robust_paddle import config as C
from robust_paddle.pipeline.hooks import build_hooks


def names(*overrides):
    return [h.name for h in build_hooks(C.load(None, list(overrides)).train)]


def test_diagnostics_pass_can_be_turned_off():
    assert "sample_stats" in names()
    assert "sample_stats" not in names("train.diagnostics=false")
    assert "sample_stats" not in names("train.visualdl=false")
    assert {"eval", "checkpoint", "metrics_json"} <= set(names("train.diagnostics=false"))


def test_compile_to_static_trains_like_dygraph(tmp_path):
    """train.compile: to_static runs every network as a static program and trains like dygraph."""
    import numpy as np
    import paddle

    from robust_paddle.pipeline.build import build_run, compile_networks

    common = ["data.subset=200", "train.epochs=2", "train.progress=false", "optimizer.name=adam",
              "optimizer.lr=0.001", "scheduler.name=constant"]
    runs = {}
    for mode in ("none", "to_static"):
        cfg = C.load(None, common + [f"output_dir={tmp_path}/{mode}", f"train.compile={mode}"])
        with paddle.utils.unique_name.guard():
            run = build_run(cfg, output_dir=cfg.output_dir, hooks=build_hooks(cfg.train)[:1])  # eval only
            if mode == "to_static":
                compile_networks(run.method)
            run.trainer.fit()
        runs[mode] = run
    forward = runs["to_static"].method.networks["net"].forward
    assert "StaticFunction" in type(forward).__name__
    assert "StaticFunction" not in type(runs["none"].method.networks["net"].forward).__name__
    for a, b in zip(runs["none"].trainer.history, runs["to_static"].trainer.history):
        for key in ("train/loss", "val/acc", "test/acc"):
            np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_train_applies_compile(monkeypatch, tmp_path):
    from robust_paddle.pipeline import run as run_mod

    seen = []
    monkeypatch.setattr(run_mod, "compile_networks", lambda method: seen.append(sorted(method.networks)))
    run_mod.train(C.load(None, ["data.subset=100", "train.epochs=1", "train.progress=false", "train.report=false",
                                "train.compile=to_static", f"output_dir={tmp_path}/r"]))
    assert seen == [["net"]]
