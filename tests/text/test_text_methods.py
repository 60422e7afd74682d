"""Every robust method trains on token ids unchanged (mixup on features, FGM / PGD on word embeddings)."""

import math

import pytest
from text_helpers import text_config, write_corpus

from robust_paddle import config as C
from robust_paddle.pipeline import run as run_mod

CASES = [
    ("standard", {"mixup_alpha": 0.4, "adversarial": "fgm", "adv_target": "embedding", "rdrop_alpha": 1.0}, {}),
    ("standard", {"adversarial": "pgd", "adv_target": "embedding", "adv_steps": 2}, {"name": "gce"}),
    ("standard", {}, {"name": "ce", "params": {"label_smoothing": 0.1}}),
    ("co_teaching", {"forget_rate": 0.2, "num_gradual": 1}, {}),
    ("co_teaching_plus", {"forget_rate": 0.2, "num_gradual": 1, "init_epoch": 1}, {}),
    ("jocor", {"forget_rate": 0.2, "num_gradual": 1}, {}),
    ("dividemix", {"warmup_epochs": 1}, {}),
    ("gmm_correction", {"warmup_epochs": 1, "mixup_alpha": 0.5}, {}),
    ("forward_correction", {"transition": "auto", "warmup_epochs": 1}, {}),
]


@pytest.mark.parametrize("method,params,loss", CASES, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_method_trains_on_text(tmp_path, method, params, loss):
    path = write_corpus(str(tmp_path), 160)
    cfg = C.from_dict(text_config(path, str(tmp_path / "run"), **{
        "method": {"name": method, "params": params}, "data.noise": {"kind": "symmetric", "rate": 0.2},
        "train.report": False, "train.epochs": 4, "data.batch_size": 16, **({"loss": loss} if loss else {})}))
    summary = run_mod.train(cfg)
    assert summary["epochs_run"] == 4
    acc = summary["final"]["test/acc"]
    # the plain-loss methods learn this toy corpus within 4 epochs; the semi-supervised / two-network ones
    # (warm-up 1 epoch, then MixMatch or small-loss exchange on 96 samples) only have to train and stay finite
    # here: their accuracy on the real corpus is measured in benchmarks/text_under_noise.py
    assert math.isfinite(acc) and acc >= (0.6 if method in ("standard", "co_teaching", "co_teaching_plus",
                                                            "forward_correction") else 0.0)


@pytest.mark.parametrize("augment", ["none", "eda"])
def test_second_text_view_only_when_texts_are_augmented(tmp_path, augment):
    """dividemix / promix ask the loader for a second view only when it differs from the batch: for texts that is
    EDA. (TextPipeline used to have no ``augmented`` flag -- its method of that name was always truthy -- so
    without EDA every text batch carried an identical copy: twice the forwards and a duplicated MixMatch batch.)"""
    import numpy as np
    import paddle

    from robust_paddle.pipeline.build import build_run

    path = write_corpus(str(tmp_path), 64)
    expected = {"dividemix": ((1, False),), "promix": ((1, True),)} if augment == "eda" else \
        {"dividemix": (), "promix": ()}
    for method, params in (("dividemix", {"warmup_epochs": 1}), ("promix", {"warmup_epochs": 1, "networks": 1})):
        out = str(tmp_path / f"{method}-{augment}")
        cfg = C.from_dict(text_config(path, out, **{"method": {"name": method, "params": params},
                                                    "data.augment": augment, "data.batch_size": 8}))
        with paddle.utils.unique_name.guard():
            run = build_run(cfg, output_dir=out)
        ds = run.loaders["train"].dataset
        assert ds.pipeline.augmented is (augment == "eda") and ds.pipeline.strong_augmented is (augment == "eda")
        assert run.method.loader_views(ds) == expected[method]
        batch = next(iter(run.loaders["train"]))
        assert len(batch) == 3 + len(expected[method])
        if augment == "eda":  # the view is the EDA text of (seed, epoch, index, view 1), tokenised
            idx = batch[2].numpy()
            np.testing.assert_array_equal(batch[3].numpy(), np.stack([ds.get_x(int(i), view=1, strong=s) for i, s in
                                                                      zip(idx, [expected[method][0][1]] * len(idx))]))
