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
