"""The cached per-sample pass over the training set: computed once per state of the weights, shared by its
consumers, and not run when nothing needs it (no division or diagnostics during a DivideMix warm-up)."""

import numpy as np
import paddle

from robust_paddle import config as C
from robust_paddle.losses.functional import per_sample_ce
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


class CountingLoader:
    """The ``train_eval`` loader, recording the weights state (global step, version) of every pass over it."""

    def __init__(self, inner, trainer, passes):
        self.inner, self.trainer, self.passes = inner, trainer, passes

    def __iter__(self):
        self.passes.append((self.trainer.global_step, getattr(self.trainer, "_weights_version", 0)))
        return iter(self.inner)

    def __len__(self):
        return len(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_dividemix_division_diagnostics_and_report_share_one_pass_per_weights_state(tmp_path):
    cfg = C.load(None, FAST[:-2] + ["method.name=dividemix", "method.params.warmup_epochs=1", "train.epochs=3",
                                    "train.visualdl=true", "train.diagnostics=true", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=build_hooks(cfg.train))
    passes = []
    run.loaders["train_eval"] = CountingLoader(run.loaders["train_eval"], run.trainer, passes)
    assert run.trainer.loaders["train_eval"] is run.loaders["train_eval"]
    summary = run.trainer.fit()
    # the warm-up epoch's end and both later epochs each divide, log VisualDL's train/acc and (last) write
    # the report from the same pass: three passes, one per weights state (six when train/acc ran its own)
    assert len(passes) == 3 and len(set(passes)) == 3
    assert all("noise/rate_gmm" in row for row in summary["history"])
    assert (tmp_path / "label_issues.csv").is_file()


def old_division_losses(trainer, nets):
    """The per-network pass GMM division ran before it read the cached pass (kept as the reference)."""
    loader = trainer.loaders["train_eval"]
    out = np.zeros((len(nets), len(loader.dataset)), dtype=np.float64)
    for net in nets:
        net.eval()
    with paddle.no_grad():
        for x, y, idx in (b[:3] for b in loader):
            with trainer.autocast():
                for k, net in enumerate(nets):
                    out[k, idx.numpy()] = per_sample_ce(net(x), y).numpy()
    for net in nets:
        net.train()
    return out


def test_division_from_the_cached_pass_equals_the_per_network_pass(tmp_path):
    cfg = C.load(None, FAST + ["method.name=dividemix", "method.params.warmup_epochs=1", "train.epochs=2",
                               "data.noise.kind=symmetric", "data.noise.rate=0.4", f"output_dir={tmp_path}"])
    with paddle.utils.unique_name.guard():
        run = build_run(cfg, output_dir=str(tmp_path), hooks=[])
    tr = run.trainer
    tr.fit()  # trained networks (the two differ), the state the last division saw
    nets = list(tr.method.networks.values())
    ref = old_division_losses(tr, nets)
    losses = gmm_correction.train_set_losses(tr)
    np.testing.assert_array_equal(losses, ref)
    assert not np.array_equal(losses[0], losses[1])
    for k in range(2):
        a, b = gmm_correction.Division(), gmm_correction.Division()
        a.update(losses[k], window=1, seed=7)
        b.update(ref[k], window=1, seed=7)
        np.testing.assert_array_equal(a.prob, b.prob)
        np.testing.assert_array_equal(tr.method.divisions[k].prob, a.prob)  # what the run's last division gave
