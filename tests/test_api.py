"""The public API: lazy imports, find_label_issues == the report's verdict and order, list_methods."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import robust_paddle
from robust_paddle.errors import ConfigError, DataError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality"))
from test_report import make_run, read_csv  # noqa: E402

from robust_paddle.quality import report as R  # noqa: E402


def test_all_names_the_api_and_import_stays_light():
    assert set(robust_paddle.__all__) >= {"train", "evaluate", "find_label_issues", "estimate_noise_matrix",
                                          "load_predictor", "list_methods"}
    code = ("import sys, robust_paddle\n"
            "heavy = [m for m in sys.modules if m.startswith(('robust_paddle.pipeline', 'robust_paddle.methods', "
            "'robust_paddle.data', 'sklearn'))]\n"
            "print(heavy)\n"
            "from robust_paddle import find_label_issues\n"
            "print(find_label_issues.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "robust_paddle.api"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        robust_paddle.nope  # noqa: B018


@pytest.mark.parametrize("own_clean_prob", [False, True])
def test_find_label_issues_matches_the_report(tmp_path, own_clean_prob):
    rng = np.random.default_rng(5)
    clean_prob = rng.random(300) if own_clean_prob else None
    run, given, clean, logits = make_run(seed=3, clean_prob=clean_prob)
    summary = R.write_report(run, out_dir=str(tmp_path))
    rows = read_csv(str(tmp_path / R.CSV_NAME))
    flagged = [int(r["index"]) for r in rows if r["is_issue"] == "1"]
    assert len(flagged) == summary["num_issues"] > 10
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    got = robust_paddle.find_label_issues(given, probs, seed=3,
                                          **({"clean_prob": clean_prob} if own_clean_prob else {}))
    assert got.dtype == np.int64 and got.tolist() == flagged
    # without a clean probability: plain confident learning, a subset of the united verdict
    plain = robust_paddle.find_label_issues(given, probs, clean_prob=None)
    assert set(plain.tolist()) <= set(flagged) and len(plain) > 0


def test_find_label_issues_and_noise_matrix_input_errors():
    probs = np.full((4, 2), 0.5)
    with pytest.raises(DataError):
        robust_paddle.find_label_issues(np.array([0, 1, 0]), probs)
    with pytest.raises(ConfigError, match="clean_prob: 'loss' is not allowed"):
        robust_paddle.find_label_issues(np.array([0, 1, 0, 1]), probs, clean_prob="loss")
    labels = np.array([0] * 50 + [1] * 50)
    p = np.where(np.arange(100)[:, None] < 50, [0.9, 0.1], [0.2, 0.8])
    t = robust_paddle.estimate_noise_matrix(labels, p)
    assert t.shape == (2, 2) and np.allclose(t.sum(1), 1.0)


def test_list_methods_names_every_method_with_its_parameters():
    from robust_paddle.registry import METHODS

    entries = {e["name"]: e for e in robust_paddle.list_methods()}
    assert set(entries) == set(METHODS.names())
    dm = entries["dividemix"]
    assert dm["paper"].startswith("arXiv:2002.07394")
    assert {"warmup_epochs", "p_threshold", "lambda_u"} <= {p["name"] for p in dm["params"]}


@pytest.mark.parametrize("kind, entry, param", [("methods", "co_teaching", "forget_rate"), ("losses", "gce", "q"),
                                                ("models", "small_cnn", "channels"), ("optimizers", "adam", "betas"),
                                                ("schedulers", "step", "step_size")])
def test_cli_list(kind, entry, param, capsys):
    from robust_paddle.cli import main

    assert main(["-q", "list", kind]) == 0
    out = capsys.readouterr().out
    block = out.split(f"\n{entry}: ", 1)[1] if not out.startswith(f"{entry}: ") else out[len(entry) + 2:]
    assert f"    {param}: " in block.split("\n\n")[0]
