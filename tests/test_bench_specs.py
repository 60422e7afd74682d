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


def _run(method, rnd, warmup, epoch_s, train_s=None):
    train_s = train_s or epoch_s
    return {"method": method, "round": rnd, "warmup_epochs": warmup,
            "epochs": [{"epoch": e + 1, "epoch_s": a, "train_s": b, "train_cpu_s": b, "cpu_s": a}
                       for e, (a, b) in enumerate(zip(epoch_s, train_s))]}


def test_paired_ratios_divide_each_epoch_by_the_references_same_epoch():
    runs = [_run("standard+ce", 0, 0, [9.0, 1.0, 2.0, 1.0]),
            _run("dividemix", 0, 2, [9.0, 2.2, 5.0, 4.0], train_s=[9.0, 2.2, 4.0, 3.0]),
            _run("promix", 0, 1, [9.0, 3.0, 6.0, 6.0]),
            _run("standard+ce", 1, 0, [9.0, 2.0, 1.0, 1.0]),
            _run("dividemix", 1, 2, [9.0, 3.0, 4.0, 5.0]),
            _run("promix", 1, 1, [9.0, 6.0, 6.0, 5.0])]
    table = [{"method": m} for m in ("standard+ce", "dividemix", "promix")]
    method_cost.paired_ratios(runs, table)
    ce, dm, pm = table
    # warm-up epochs after the first (epoch 2 of 2) over twice CE's same epoch: 2.2 / 2, 3.0 / 4
    assert dm["paired_warmup"] == pytest.approx((1.1 + 0.75) / 2) and dm["paired_warmup_n"] == 2
    # main phase (epochs 3, 4; epoch 1 never counts): 5/2, 4/1, 4/1, 5/1
    assert dm["paired_x_ce"] == pytest.approx(4.0) and dm["paired_x_ce_n"] == 4
    # promix epochs 3, 4 over dividemix's (its epoch 2 has no main-phase dividemix epoch to pair with): 6/5, 6/4, 6/4, 5/5
    assert pm["paired_x_dm"] == pytest.approx(1.35) and pm["paired_x_dm_n"] == 4
    assert pm["paired_warmup"] is None and ce["paired_x_ce"] == pytest.approx(1.0)
    targets = {t["target"]: t for t in method_cost.check_targets(
        [{**r, **{k: None for k in ("x_ce", "x_dm", "warmup_s", "warmup_cpu_s", "gmm_s_share")}} for r in table])}
    assert targets["promix epoch <= 1.2x a dividemix epoch"]["value"] == pytest.approx(1.35)


@pytest.mark.parametrize("spec,match", [
    ("promix:", r"'' is not key=value"),
    ("promix:networks=", r"'networks=' is not key=value"),
    ("promix:=1", r"'=1' is not key=value"),
    ("promix:networks=1:networks=2", r"'networks' is given twice"),
    ("forward_correction:identity_weight=0.1@known_t", r"@known_t goes before the :key=value tail"),
])
def test_split_spec_refuses_a_malformed_tail(spec, match):
    with pytest.raises(ValueError, match=match):
        C.split_spec(spec)


@pytest.mark.parametrize("spec,match", [
    ("promix:foo=1", r"method spec 'promix:foo=1': method.params: unknown key\(s\) foo for method 'promix'"),
    ("promix:mixup_draws=3", r"method.params.mixup_draws: 3 is out of range; must be <= 2"),
    ("promix:mixup_draws=1.5", r"method.params.mixup_draws: expected int, got 1.5"),
    ("dividemix:noise_mode=pair", r"method.params.noise_mode: 'pair' is not allowed"),
])
def test_check_spec_checks_the_tails_params_like_the_registry(spec, match):
    with pytest.raises(ValueError, match=match):
        C.check_spec(spec, noises=["sym40", "pair45"], dataset="digits", epochs=5)
    C.check_spec("promix:mixup_draws=1:networks=1", noises=["sym40"], dataset="digits", epochs=5)


def _argv(tmp_path, methods, *extra):
    return ["--methods", methods, "--noises", "sym40", "--seeds", "1", "--epochs", "3", "-o", "data.subset=200",
            "--out", str(tmp_path / "out.json"), "--workdir", str(tmp_path / "runs"), *extra]


@pytest.mark.parametrize("bench", ["accuracy_under_noise", "noise_rate", "method_cost"])
@pytest.mark.parametrize("spec,match", [
    ("promix:foo=1", "unknown key(s) foo"),
    ("promix:", "'' is not key=value"),
    # only the built run can tell: an epoch count against train.epochs, one parameter against another
    ("promix:warmup_epochs=5", "method.params.warmup_epochs=5 leaves method 'promix' no training"),
    ("promix:lga_epochs=1:networks=1", "label guessing by agreement needs two networks"),
])
def test_a_bad_spec_stops_every_benchmark_with_one_line_before_any_training(tmp_path, capsys, bench, spec, match):
    import importlib

    mod = importlib.import_module(f"benchmarks.{bench}")
    with pytest.raises(SystemExit) as exc:
        mod.main(_argv(tmp_path, f"standard+ce,{spec}") + (["--rounds", "1"] if bench == "method_cost" else []))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f": error: method spec {spec!r}: " in err[-1] and match in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out.json").exists()  # nothing trained


def test_run_name_is_one_safe_folder_per_spec():
    assert C.run_name("standard+gce") == "standard+gce"
    assert C.run_name("forward_correction@known_t") == "forward_correction@known_t"
    a, b = C.run_name("forward_correction:transition=/data/T.npy"), C.run_name("forward_correction:transition=_data_T.npy")
    assert "/" not in a and ":" not in a and a.startswith("forward_correction_transition=_data_T.npy-") and a != b


def test_paired_quartiles_stay_within_the_ratios_seen():
    runs = [_run("standard+ce", 0, 0, [9.0, 1.0, 1.0]), _run("promix", 0, 0, [9.0, 1.0, 2.0])]
    table = [{"method": m} for m in ("standard+ce", "promix")]
    method_cost.paired_ratios(runs, table)
    # epochs 2 and 3 (never the first): ratios 1 and 2
    assert table[1]["paired_x_ce"] == pytest.approx(1.5) and table[1]["paired_x_ce_n"] == 2
    assert table[1]["paired_x_ce_iqr"] == pytest.approx([1.25, 1.5, 1.75])  # the default method: [0.75, 1.5, 2.25]


@pytest.mark.parametrize("flags,match", [(["--seeds", "3"], "--seeds 3: the timing runs train seed 0 only"),
                                         (["--epochs", "1"], "--epochs 1: the first epoch is never timed"),
                                         (["--resume"], "--resume: timing runs are not resumed"),
                                         (["--against", "HEAD", "--interleave"], "--interleave with --against")])
def test_method_cost_refuses_flags_it_would_ignore(tmp_path, capsys, flags, match):
    with pytest.raises(SystemExit) as exc:
        method_cost.main(["--methods", "standard+ce", "--epochs", "3", "--out", str(tmp_path / "out.json"), *flags])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("flags,match", [(["--method", "standard+gce:foo=1"], "unknown key(s) foo"),
                                         (["--noise", "sym400"], "noise spec 'sym400'"),
                                         (["--scenarios", "qat,prune99"], "--scenarios: unknown 'prune99'")])
def test_compression_refuses_a_bad_spec_before_training(tmp_path, capsys, flags, match):
    from benchmarks import compression

    with pytest.raises(SystemExit) as exc:
        compression.main(["--epochs", "2", "-o", "data.subset=200", "--workdir", str(tmp_path / "w"), *flags])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("bench,argv,match", [
    ("text_under_noise", ["--methods", "dividemix,promixx", "--skip-speed"], "--methods: unknown 'promixx'"),
    ("text_under_noise", ["--noises", "sym40,sym33"], "--noises: unknown 'sym33'"),
    ("distributed", ["--methods", "standard,promixx"], "--methods: unknown 'promixx'"),
    ("finetune_pretrained", ["--methods", "standard+ce,promix:networks=1"], "names only (no @known_t, no :key=value"),
    ("finetune_pretrained", ["--methods", "standard+cee"], "unknown loss 'cee'"),
    ("data_throughput", ["--methods", "dividemixx"], "unknown method 'dividemixx'"),
])
def test_the_other_benchmarks_refuse_unknown_methods_before_any_work(tmp_path, capsys, monkeypatch, bench, argv, match):
    import importlib

    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(f"benchmarks.{bench}")
    with pytest.raises(SystemExit) as exc:
        mod.main([*argv, "--out", str(tmp_path / "out.json")])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_a_resumed_grid_retrains_a_cell_whose_run_was_killed(tmp_path):
    """--resume with the same --workdir: a cell that is not in the results but left its folder (killed mid-run) trains
    anew instead of stopping the grid with "output_dir ... already holds a run"."""
    from benchmarks import accuracy_under_noise as A

    argv = ["--methods", "standard+ce:mixup_alpha=0.2", "--noises", "sym40", "--seeds", "1", "--epochs", "2", "-o",
            "data.subset=120", "-o", "model.name=mlp", "--out", str(tmp_path / "out.json"), "--workdir",
            str(tmp_path / "runs"), "--resume"]
    leftover = tmp_path / "runs" / (C.run_name("standard+ce:mixup_alpha=0.2") + "-sym40-s0")
    leftover.mkdir(parents=True)
    (leftover / "config.yaml").write_text("seed: 0\n")
    (leftover / "metrics.json").write_text('{"epochs_run": 1}')  # its first epoch had finished
    assert A.main(argv) == 0
    import json

    runs = json.loads((tmp_path / "out.json").read_text())["runs"]
    assert sorted(r["method"] for r in runs) == ["clean_oracle", "standard+ce:mixup_alpha=0.2"]
    assert json.loads((leftover / "metrics.json").read_text())["epochs_run"] == 2


def test_a_methods_targets_hold_for_its_spec_variants_and_the_recorded_table_for_the_preset_only():
    keys = ("x_ce", "x_dm", "warmup_s", "warmup_cpu_s", "gmm_s_share")
    table = [{"method": m, **{k: None for k in keys}, "x_ce": 1.5, "gmm_s_share": 0.01}
             for m in ("co_teaching", "co_teaching:forget_rate=0.3", "gmm_correction:mixup_alpha=0")]
    got = {t["target"] for t in method_cost.check_targets(table)}
    assert got == {"co_teaching epoch <= 2.1x a standard CE epoch",
                   "co_teaching x CE no worse than the recorded 1.91 (+5%)",
                   "co_teaching:forget_rate=0.3 epoch <= 2.1x a standard CE epoch",
                   "gmm_correction:mixup_alpha=0: GMM step <= 5% of an epoch"}


def test_tables_keep_their_columns_aligned_for_long_specs():
    from benchmarks import accuracy_under_noise as A
    from benchmarks import noise_rate as N

    long = "forward_correction@known_t:identity_weight=0.1"
    cell = {"mean": 0.5, "std": 0.0, "frac_oracle": 0.6}
    acc = A.format_table({"oracle": {"mean": 0.9, "std": 0.0}, "cells": {f"{m}|sym40": cell for m in ("elr", long)}},
                         ["elr", long], ["sym40"], "digits").splitlines()
    assert len({len(line) for line in acc[1:] if line and not line.startswith("-")}) == 1
    nr_cell = {"true_noise_rate": [0.4], "abs_error": {"loss_gmm": [0.05]}, "covered": 1, "n": 1}
    nr = N.format_table({"grid_mean_abs_error": {"loss_gmm": 0.05}, "cells": {"elr|sym40": nr_cell,
                                                                              f"{long}|sym40": nr_cell},
                         "covered": 2, "runs": 2, "best": "loss_gmm"}, "digits").splitlines()
    assert len({len(line) for line in nr[1:-1] if not line.startswith("-")}) == 1


@pytest.mark.parametrize("bench", ["accuracy_under_noise", "noise_rate", "method_cost"])
@pytest.mark.parametrize("flags,match", [(["--methods", ","], "--methods: no spec given"),
                                         (["--methods", "standard+ce,elr,standard+ce"], "'standard+ce' given twice"),
                                         (["--methods", "elr", "--noises", "sym40,sym40"], "'sym40' given twice"),
                                         (["--methods", "standard+ce", "--noises", " , "], "--noises: no spec given")])
def test_an_empty_spec_list_is_one_line(tmp_path, capsys, bench, flags, match):
    import importlib

    with pytest.raises(SystemExit) as exc:
        importlib.import_module(f"benchmarks.{bench}").main([*flags, "--out", str(tmp_path / "o.json")])
    assert exc.value.code == 2 and match in capsys.readouterr().err


def test_a_known_t_reference_with_a_tail_is_never_the_best_method():
    from benchmarks import accuracy_under_noise as A

    ref = "forward_correction@known_t:identity_weight=0.1"
    cells = {f"{m}|sym40": {"mean": v} for m, v in (("elr", 0.8), (ref, 0.95))}
    targets = A.check_targets({"cells": cells, "oracle": {"mean": 0.9}}, ["elr", ref], ["sym40"])
    best = next(t for t in targets if t["target"].startswith("sym40: best method"))
    assert best["best"] == "elr" and best["value"] == pytest.approx(0.8 / 0.9)
