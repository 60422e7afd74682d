"""The cached per-sample pass over the training set: computed once per state of the weights, shared by its
consumers, and not run when nothing needs it (no division or diagnostics during a DivideMix warm-up)."""

import numpy as np
import paddle

from robust_paddle import config as C
from robust_paddle.methods import gmm_correction
from robust_paddle.pipeline.build import build_run
from robust_paddle.pipeline.hooks import build_hooks

FAST = ["data.subset=120", "train.progress=false", "train.visualdl=false", "train.calibration=false"]


def counting(monkeypatch, trainer):
    calls = []
    real = trainer.predict_logits

    def predict_logits(loader, **kw):
        calls.append(loader is trainer.loaders["train_eval"])
        return real(loader, **kw)

    monkeypatch.setattr(trainer, "predict_logits", predict_logits)
    return calls


def test_one_pass_per_weights_state(monkeypatch, tmp_path):
    cfg = C.load(None, FAST + ["train.epochs=1", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=[])
    tr = run.trainer
    calls = counting(monkeypatch, tr)
    a = tr.train_set_logits()
    b = tr.train_set_logits(collective=False)
    assert a is b and calls == [True]
    ref, idx = type(tr).predict_logits(tr, run.loaders["train_eval"])  # the uncounted, uncached pass
    np.testing.assert_allclose(a[idx], ref, rtol=1e-6)
    tr.weights_changed()  # e.g. EMA weights swapped in for evaluation
    tr.train_set_logits()
    tr.global_step += 1  # an optimizer step
    tr.train_set_logits()
    assert calls == [True, True, True]


def test_report_and_sample_stats_share_the_last_pass(monkeypatch, tmp_path):
    cfg = C.load(None, FAST[:-2] + ["train.epochs=2", "train.visualdl=true", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=build_hooks(cfg.train))
    calls = counting(monkeypatch, run.trainer)
    run.trainer.fit()
    # sample stats on both (evaluation) epochs; the report at the end reuses the last epoch's pass
    assert calls.count(True) == 2 and (tmp_path / "label_issues.csv").is_file()


def test_no_training_set_pass_during_dividemix_warmup(monkeypatch, tmp_path):
    # a run that ends inside the warm-up is refused by the budget check (issue 21); it is exactly the case here
    monkeypatch.setattr(gmm_correction, "check_training_after", lambda *a, **k: None)
    cfg = C.load(None, FAST + ["method.name=dividemix", "method.params.warmup_epochs=3", "train.epochs=2",
                               "train.report=false", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=build_hooks(cfg.train))
    calls = counting(monkeypatch, run.trainer)
    divisions = []
    real = gmm_correction.train_set_losses
    monkeypatch.setattr(gmm_correction, "train_set_losses", lambda *a: divisions.append(1) or real(*a))
    run.trainer.fit()
    assert True not in calls and divisions == []
