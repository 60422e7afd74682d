"""Label-issue report: CSV columns and order, PNGs, summary values, hooks, and `robust-paddle report` end to end."""

from __future__ import annotations

import csv
import json
import os
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from robust_paddle.cli import main
from robust_paddle.ops import per_sample_ce, softmax
from robust_paddle.quality import estimation as E
from robust_paddle.quality import report as R
from robust_paddle.quality.plots import plot_loss_histogram, plot_noise_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "quickstart.yaml")


def png_size(path: str) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails unless the file is a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


class FakeTrainer:
    """Just what write_report / SampleStatsHook use: predict_logits over a 'loader' of (logits, idx)."""

    def __init__(self, logits: np.ndarray, perm: np.ndarray, clean_prob=None) -> None:
        self.logits, self.perm = logits, perm
        self.method = SimpleNamespace(clean_probability=lambda: clean_prob)
        self.epoch, self.is_main = 0, True
        self.eval_epoch = True
        self.epoch_histograms: dict = {}
        self.epoch_scalars: dict = {}

    def is_eval_epoch(self) -> bool:
        return self.eval_epoch

    def predict_logits(self, loader):
        return self.logits[self.perm], self.perm  # shuffled order: the report must restore dataset order


def make_run(*, n: int = 300, c: int = 3, noise: float = 0.3, seed: int = 0, paths: bool = True, clean_prob=None):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, c, n)
    flip = rng.random(n) < noise
    given = np.where(flip, (clean + rng.integers(1, c, n)) % c, clean)
    logits = 4.0 * np.eye(c)[clean] + rng.normal(0, 1.0, (n, c))
    ds = SimpleNamespace(labels=given, clean_labels=clean, paths=[f"img/{i}.png" for i in range(n)] if paths else None,
                         source_rows=3 * np.arange(n) + 7)  # rows in the user's file (a split held some out)
    data = SimpleNamespace(train_eval=ds, class_names=["cat", "dog", "fox"][:c])
    cfg = SimpleNamespace(seed=seed, method=SimpleNamespace(name="standard"),
                          train=SimpleNamespace(report=True))
    trainer = FakeTrainer(logits, rng.permutation(n), clean_prob)
    trainer.cfg, trainer.data, trainer.loaders = cfg, data, {"train_eval": None}
    return SimpleNamespace(cfg=cfg, data=data, method=trainer.method, loaders={"train_eval": None},
                           trainer=trainer), given, clean, logits


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_write_report_files_columns_and_order(tmp_path) -> None:
    run, given, clean, logits = make_run()
    summary = R.write_report(run, out_dir=str(tmp_path))
    rows = read_csv(str(tmp_path / R.CSV_NAME))
    assert list(rows[0]) == ["index", "source_row", "path", "given_label", "given_name", "suggested_label", "suggested_name",
                             "clean_prob", "quality_score", "loss", "is_issue", "true_label"]
    assert sorted(int(r["index"]) for r in rows) == list(range(len(given)))
    # most suspect first: all flagged rows, then the rest, each block by ascending clean_prob (issue_columns)
    flags = [int(r["is_issue"]) for r in rows]
    assert flags == sorted(flags, reverse=True) and 0 < sum(flags) < len(rows)
    for block in (1, 0):
        keys = [(float(r["clean_prob"]), float(r["quality_score"])) for r in rows if int(r["is_issue"]) == block]
        assert keys == sorted(keys)
    assert all(float(r["clean_prob"]) < R.CLEAN_THRESHOLD for r in rows if r["is_issue"] == "1")
    r0 = rows[0]
    i = int(r0["index"])
    p = np.exp(logits[i] - logits[i].max())
    p /= p.sum()
    assert r0["path"] == f"img/{i}.png" and int(r0["given_label"]) == given[i] and int(r0["true_label"]) == clean[i]
    assert all(int(r["source_row"]) == 3 * int(r["index"]) + 7 for r in rows)
    assert int(r0["suggested_label"]) == int(np.argmax(logits[i])) and r0["suggested_name"] == "cat dog fox".split()[
        int(np.argmax(logits[i]))]
    assert float(r0["quality_score"]) == pytest.approx(p[given[i]], abs=1e-6)
    assert float(r0["loss"]) == pytest.approx(-np.log(p[given[i]]), abs=1e-5)

    for name in (R.MATRIX_PNG, R.LOSS_PNG):
        w, h = png_size(str(tmp_path / name))
        assert w > 100 and h > 100
    saved = json.loads((tmp_path / R.SUMMARY_NAME).read_text())
    assert saved["num_samples"] == len(given) == summary["num_samples"]
    assert saved["num_issues"] == sum(flags)
    assert saved["clean_prob_source"] == "gmm"
    assert saved["true_noise_rate"] == pytest.approx(np.mean(given != clean))
    assert abs(saved["noise_rate_estimate"] - saved["true_noise_rate"]) < 0.05
    # one estimate, its estimator and interval; the others beside it
    from robust_paddle.quality.noise_rate import DEFAULT_ESTIMATOR, ESTIMATORS

    assert saved["noise_rate_estimator"] == DEFAULT_ESTIMATOR
    assert saved["noise_rate_estimate"] == pytest.approx(saved["noise_rate_estimators"][DEFAULT_ESTIMATOR])
    lo, hi = saved["noise_rate_interval"]
    assert lo <= saved["noise_rate_estimate"] <= hi and lo <= saved["true_noise_rate"] <= hi
    assert list(saved["noise_rate_estimators"]) == list(ESTIMATORS)
    t = np.asarray(saved["estimated_noise_matrix"])
    assert t.shape == (3, 3) and np.allclose(t.sum(1), 1.0)
    det = saved["detection"]
    flagged = np.zeros(len(given), bool)
    flagged[[int(r["index"]) for r in rows if r["is_issue"] == "1"]] = True
    tp = np.sum(flagged & (given != clean))
    assert det["precision"] == pytest.approx(tp / flagged.sum()) and det["recall"] == pytest.approx(
        tp / np.sum(given != clean))
    assert det["f1"] > 0.85


def test_report_uses_method_clean_probability_and_no_paths(tmp_path) -> None:
    n = 200
    w = np.linspace(0.0, 1.0, n)
    run, given, clean, logits = make_run(n=n, paths=False, clean_prob=w)
    summary = R.write_report(run, out_dir=str(tmp_path))
    rows = read_csv(str(tmp_path / R.CSV_NAME))
    assert "path" not in rows[0]
    assert summary["clean_prob_source"] == "method"
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    flagged = E.prune_by_noise_rate(given, probs)
    for r in rows:  # the method's probability, bounded by p[given] where confident learning flags the sample
        i = int(r["index"])
        want = min(w[i], probs[i, given[i]]) if flagged[i] else w[i]
        assert float(r["clean_prob"]) == pytest.approx(want, abs=1e-6)
    run.trainer.method.clean_probability = lambda: np.ones(n + 1)
    with pytest.raises(ValueError, match=r"clean_probability\(\) has shape \(201,\), expected \(200,\)"):
        R.write_report(run, out_dir=str(tmp_path))


def test_report_without_clean_labels_has_no_truth(tmp_path) -> None:
    run, *_ = make_run(n=120)
    run.data.train_eval.clean_labels = None
    summary = R.write_report(run, out_dir=str(tmp_path))
    assert "detection" not in summary and "true_noise_rate" not in summary
    assert "true_label" not in read_csv(str(tmp_path / R.CSV_NAME))[0]


def test_given_labels_override_and_loader_check(tmp_path) -> None:
    run, given, *_ = make_run(n=100)
    with pytest.raises(ValueError, match=r"given_labels must have shape \(100,\)"):
        R.write_report(run, out_dir=str(tmp_path), given_labels=given[:5])
    run.trainer.perm = run.trainer.perm[:50]
    with pytest.raises(ValueError, match=r"not a permutation of 0..99"):
        R.write_report(run, out_dir=str(tmp_path))


def test_sample_stats_hook_fills_histograms_and_selection() -> None:
    run, given, clean, _ = make_run(n=400, noise=0.4)
    hook = R.SampleStatsHook()
    hook.after_epoch(run.trainer)
    tr = run.trainer
    assert tr.epoch_histograms["samples/loss"].shape == (400,)
    assert tr.epoch_histograms["samples/clean_prob"].shape == (400,)
    assert abs(tr.epoch_scalars["noise/rate_gmm"] - np.mean(given != clean)) < 0.1
    assert tr.epoch_scalars["select/precision"] > 0.9 and tr.epoch_scalars["select/recall"] > 0.9
    # skipped on epochs without evaluation (train.eval_every) and when the method keeps its own statistics
    tr.epoch_histograms, tr.epoch_scalars = {}, {}
    tr.eval_epoch = False
    hook.after_epoch(tr)
    assert tr.epoch_histograms == {} and tr.epoch_scalars == {}
    tr.eval_epoch = True
    tr.method.clean_probability = lambda: np.ones(400)
    hook.after_epoch(tr)
    assert tr.epoch_histograms == {} and tr.epoch_scalars == {}
    with pytest.raises(ValueError, match=r"sample_stats.every must be an int >= 1, got 0"):
        R.SampleStatsHook(every=0)


def test_per_sample_loss_matches_log_softmax() -> None:
    logits = np.array([[1000.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(per_sample_ce(logits, np.array([1, 0])), [1000.0, np.log(2)])


def test_plot_input_checks(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"matrix must be square"):
        plot_noise_matrix(np.ones((2, 3)), str(tmp_path / "m.png"))
    with pytest.raises(ValueError, match=r"class_names has 1 entries but the matrix has 2 classes"):
        plot_noise_matrix(np.eye(2), str(tmp_path / "m.png"), class_names=["a"])
    with pytest.raises(ValueError, match=r"noisy_mask has shape"):
        plot_loss_histogram(np.ones(3), str(tmp_path / "h.png"), noisy_mask=np.ones(2, bool))
    with pytest.raises(ValueError, match=r"non-empty array of finite values"):
        plot_loss_histogram(np.array([np.nan]), str(tmp_path / "h.png"))
    png_size(plot_loss_histogram(np.zeros(5), str(tmp_path / "flat.png")))  # constant losses still plot


def test_report_cli_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    overrides = ["-o", "train.epochs=2", "-o", "data.subset=300", "-o", f"output_dir={out}",
                 "-o", "train.progress=false"]
    assert main(["-q", "train", "-c", QUICKSTART, *overrides]) == 0
    assert (out / R.CSV_NAME).is_file()  # written by ReportHook at the end of training
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert all({"noise/rate_gmm", "select/precision", "select/recall"} <= set(row) for row in history)
    assert len(read_csv(str(out / R.CSV_NAME))) == 300
    capsys.readouterr()
    rep = tmp_path / "rep"
    assert main(["-q", "report", "-c", str(out / "config.yaml"), "--checkpoint", str(out), "--out", str(rep)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["num_samples"] == 300 and printed["files"]["csv"] == str(rep / R.CSV_NAME)
    rows = read_csv(str(rep / R.CSV_NAME))
    assert len(rows) == 300 and {"true_label", "is_issue", "clean_prob"} <= set(rows[0])
    for name in (R.MATRIX_PNG, R.LOSS_PNG):
        png_size(str(rep / name))
    summary = json.loads((rep / R.SUMMARY_NAME).read_text())
    assert 0.3 < summary["true_noise_rate"] < 0.5 and summary["num_issues"] == printed["num_issues"]
    # same weights (the final checkpoint) -> the same flags as the report written at the end of training
    assert [r["is_issue"] for r in rows] == [r["is_issue"] for r in read_csv(str(out / R.CSV_NAME))]
    assert main(["report", "-c", str(out / "config.yaml"), "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_report_hook_registered() -> None:
    from robust_paddle.registry import HOOKS

    assert "report" in HOOKS and "sample_stats" in HOOKS
    assert R.ReportHook.priority == 95 and R.SampleStatsHook.priority < 50
    from robust_paddle.pipeline.commands import _run_dir

    assert os.path.basename(_run_dir("/a/run/checkpoints/best.pdckpt")) == "run"


def test_issue_columns_never_call_an_issue_clean_and_rank_by_clean_prob() -> None:
    """The standard+GCE contradiction: the loss GMM calls every sample clean (a GCE model's heavy-tailed
    losses) while confident learning flags the flipped ones. The old union rule reported those rows as
    ``is_issue = 1`` with ``clean_prob = 1.0``; the one rule bounds their clean_prob by p[given]."""
    run, given, clean, logits = make_run(n=400, noise=0.3, seed=3)
    probs = softmax(logits)
    gmm_says_clean = np.ones(len(given))
    old = E.find_label_issues(given, probs, clean_prob=gmm_says_clean)
    assert old.sum() > 50 and np.all(gmm_says_clean[old] == 1.0)  # the contradiction, reproduced
    cols = R.issue_columns(given, probs, gmm_says_clean)
    assert cols["is_issue"].sum() >= 0.95 * old.sum()  # the same samples are still found
    assert np.all(cols["clean_prob"][cols["is_issue"]] < R.CLEAN_THRESHOLD)
    assert np.all(cols["clean_prob"] <= gmm_says_clean) and np.all(cols["clean_prob"] >= 0)
    order = cols["order"]
    issue = cols["is_issue"][order]
    assert np.all(issue[:issue.sum()]) and not np.any(issue[issue.sum():])
    for block in (issue, ~issue):
        keys = list(zip(cols["clean_prob"][order][block], cols["quality_score"][order][block]))
        assert keys == sorted(keys)
    assert np.array_equal(np.sort(order), np.arange(len(given)))


def test_report_of_a_gmm_that_calls_everything_clean_has_no_contradicting_rows(tmp_path, monkeypatch) -> None:
    run, given, clean, _ = make_run(n=300, noise=0.3, seed=5)
    monkeypatch.setattr(R, "loss_gmm", lambda losses, seed: (np.ones(len(losses)), None))
    summary = R.write_report(run, out_dir=str(tmp_path))
    rows = read_csv(str(tmp_path / R.CSV_NAME))
    issues = [r for r in rows if r["is_issue"] == "1"]
    assert len(issues) == summary["num_issues"] > 30
    assert max(float(r["clean_prob"]) for r in issues) < R.CLEAN_THRESHOLD
    assert summary["detection"]["f1"] > 0.85
