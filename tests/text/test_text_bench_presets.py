"""benchmarks/text_under_noise.py: every row's preset is a valid config on the corpus's base config, and an unknown
row name is refused before anything runs (variants are accepted)."""

import os

import pytest

import robust_paddle.methods  # noqa: F401 - registers the methods
from benchmarks import text_under_noise as B
from robust_paddle import config as C
from robust_paddle.registry import METHODS as METHOD_REGISTRY
from robust_paddle.schema import build as build_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROWS = {**B.METHODS, **B.VARIANTS}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_preset_is_a_valid_config(name):
    base = C.load(os.path.join(ROOT, "configs", "text", "_base_", "snownlp.yaml"), ["train.epochs=8"])
    cfg = C.with_values(base, {"data.noise.kind": "symmetric", "data.noise.rate": 0.4, **ROWS[name]})
    for key, value in ROWS[name].items():  # every key of the preset landed where it was meant to
        node = C.to_dict(cfg)
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    spec = getattr(METHOD_REGISTRY.get(cfg.method.name), "Params", None)
    if spec is not None:  # the method's parameters pass its registry schema (names, types, ranges)
        build_params(spec, dict(cfg.method.params), "method.params")


def test_variants_are_not_in_the_default_grid_and_reuse_its_dividemix_settings():
    assert not set(B.VARIANTS) & set(B.METHODS)
    grid = B.METHODS["dividemix"]["method.params"]
    assert B.VARIANTS["dividemix_cosine"]["method.params"] == grid
    assert B.VARIANTS["dividemix_lu_eda"]["method.params"] == {**grid, "lambda_u": 25.0, "rampup_length": 0.25}
    assert B.VARIANTS["clean_oracle_cosine"]["scheduler.name"] == "cosine"


def test_unknown_row_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        B.main(["--methods", "ce,dividemx", "--skip-speed"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--methods: unknown 'dividemx'; choose from ce, gce" in err and "promix_1net" in err  # variants listed


def test_variant_rows_pass_the_argument_check(tmp_path, monkeypatch):
    """A VARIANTS row gets past the --methods check (the run is stopped where training would start)."""
    import robust_paddle.pipeline.demo as demo

    def stop(*a, **k):
        raise RuntimeError("reached training")

    monkeypatch.setattr(demo, "run_in_processes", stop)
    with pytest.raises(RuntimeError, match="reached training"):
        B.main(["--methods", "dividemix_cosine,clean_oracle_cosine", "--skip-speed", "--noises", "sym40",
                "--no-references", "--out", str(tmp_path / "o.json")])


def test_first_seed_adds_seeds_after_it_and_bad_counts_are_refused(tmp_path, monkeypatch, capsys):
    import robust_paddle.pipeline.demo as demo

    seen = {}

    def stop(fn, tasks, **k):
        seen["keys"] = [key for key, _ in tasks]
        raise RuntimeError("reached training")

    monkeypatch.setattr(demo, "run_in_processes", stop)
    with pytest.raises(RuntimeError, match="reached training"):
        B.main(["--methods", "ce", "--skip-speed", "--noises", "sym40", "--no-references", "--first-seed", "1",
                "--seeds", "2", "--out", str(tmp_path / "o.json")])
    assert seen["keys"] == [("sym40", 1, "ce"), ("sym40", 2, "ce")]
    for bad in (["--seeds", "0"], ["--first-seed", "-1"]):
        with pytest.raises(SystemExit) as e:
            B.main(["--methods", "ce", "--skip-speed", *bad])
        assert e.value.code == 2
    assert "--seeds must be >= 1 and --first-seed >= 0, got 1 and -1" in capsys.readouterr().err
