"""benchmarks/common.py method specs with a ``:key=value`` tail, and method_cost.py's in-process interleaving."""

import os

import pytest

from benchmarks import common as C
from benchmarks import method_cost


def test_split_spec_parses_yaml_values_and_refuses_a_part_without_equals():
    assert C.split_spec("promix:networks=1:tau=0.9:fmix=true") == ("promix", {"networks": 1, "tau": 0.9, "fmix": True})
    assert C.split_spec("standard+gce") == ("standard+gce", {})
    with pytest.raises(ValueError, match=r"method spec 'promix:networks': 'networks' is not key=value"):
        C.split_spec("promix:networks")
    assert C.parse_method("promix:networks=1") == ("promix", None)
    with pytest.raises(ValueError, match=r"unknown method 'promixx'"):
        C.parse_method("promixx:networks=1")


def test_a_spec_tail_overrides_the_presets_params_and_nothing_else():
    plain = C.run_overrides("promix", "sym40", dataset="digits", seed=0, epochs=5)
    tuned = C.run_overrides("promix:networks=1:tau=0.95", "sym40", dataset="digits", seed=0, epochs=5)
    assert plain["method.params"]["tau"] == 0.99 and "networks" not in plain["method.params"]
    assert tuned["method.params"] == {**plain["method.params"], "networks": 1, "tau": 0.95}
    assert {k: v for k, v in tuned.items() if k != "method.params"} == \
        {k: v for k, v in plain.items() if k != "method.params"}
    # the benchmark's own per-noise setting is overridable too
    assert C.run_overrides("dividemix:noise_mode=sym", "pair45", dataset="digits", seed=0,
                           epochs=5)["method.params"]["noise_mode"] == "sym"


def test_interleaved_timing_trains_every_method_every_epoch(tmp_path):
    base = C.config_mod.load(os.path.join(C.ROOT, "configs", "_base_", "digits.yaml"),
                             ["data.subset=200", "data.batch_size=50", "model.name=mlp"])
    out = method_cost.time_interleaved(base, ["standard+ce", "promix:networks=1:warmup_epochs=1"], noise="sym40",
                                       epochs=4, workdir=str(tmp_path), dataset="digits", first=1)
    assert [r["method"] for r in out] == ["standard+ce", "promix:networks=1:warmup_epochs=1"]
    for r in out:
        assert [row["epoch"] for row in r["epochs"]] == [1, 2, 3, 4]
        assert all(row["train_s"] > 0 and row["epoch_s"] >= row["train_s"] for row in r["epochs"])
    assert out[1]["warmup_epochs"] == 1
