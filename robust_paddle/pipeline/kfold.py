"""K-fold training: K models on folds of the training split, averaged logits, out-of-fold probabilities.

``train_kfold(cfg, folds=K)`` trains the configured run K times, each time on the training split minus
one stratified fold, and

* predicts the held-out fold (no augmentation) with that fold's evaluation weights, giving out-of-fold
  probabilities ``oof_probs`` [N, C] for every training sample: each row comes from a model that never
  saw the sample, which is what the label-issue report needs (:func:`robust_paddle.quality.estimation.find_label_issues`);
* averages the K models' logits on the test (and val) split for the ensemble prediction.

The fold split and seeds are those of :func:`cross_val_pred_probs` (stratified
``StratifiedKFold(shuffle=True, random_state=seed)``, plain folds when a class has fewer than K samples,
fold k seeded with ``seed + k``), which delegates here. With ``output_dir`` each fold is a full run folder
``fold_<k>/`` (checkpoints, metrics.json ...) and the folder gets ``train_labels.npy`` (source rows and
labels of the rows of ``oof_probs.npy``), ``oof_probs.npy``, ``test_logits.npy`` and ``kfold.json``;
``robust-paddle train`` does this when ``train.kfold: K``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from robust_paddle import config as config_mod
from robust_paddle.config import Config
from robust_paddle.engine.metrics import classification_metrics
from robust_paddle.errors import ConfigError
from robust_paddle.ops import softmax

logger = logging.getLogger(__name__)


def kfold_splits(labels: np.ndarray, *, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (fit indices, held-out indices) pairs covering ``[0, N)``; every sample is held out once.

    Stratified on ``labels`` unless a present class has fewer than ``folds`` samples (then plain shuffled
    folds).

    Args:
        labels: [N] int labels. folds: K >= 2. seed: shuffling seed.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds (train.kfold) must be an int >= 2, got {folds!r}")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = labels.shape[0]
    if n < folds:
        raise ConfigError(f"folds={folds} exceeds the {n} training samples")
    counts = np.bincount(labels)
    split_labels = labels if counts[counts > 0].min() >= folds else np.zeros(n, dtype=np.int64)
    kf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    return [(fit, held) for fit, held in kf.split(np.zeros(n), split_labels)]


def fold_data(bundle: Any, fit_idx: np.ndarray) -> Any:
    """A copy of a DataBundle whose train/train_eval splits hold only ``fit_idx`` (sharing one label array)."""
    train = bundle.train.select(fit_idx)
    return dataclasses.replace(bundle, train=train, train_eval=train.with_pipeline(bundle.train_eval.pipeline))


@dataclasses.dataclass
class KFoldResult:
    """What :func:`train_kfold` returns.

    Attributes:
        oof_logits, oof_probs: [N, C] out-of-fold logits / softmax probabilities of the training split.
        test_logits, val_logits: [M, C] logits averaged over the K models, or None without that split.
        fold_indices: the K held-out index arrays.
        summary: ``{"epochs_run", "final": ensemble val/test scalars, "kfold": per-fold final metrics,
            ensemble metrics and out-of-fold metrics (``kfold.json``)}`` (written as ``metrics.json``).
    """

    oof_logits: np.ndarray
    oof_probs: np.ndarray
    test_logits: np.ndarray | None
    val_logits: np.ndarray | None
    fold_indices: list[np.ndarray]
    summary: dict[str, Any]


def _eval_loader(ds: Any, cfg: Config) -> Any:
    from robust_paddle.data import build_loader

    return build_loader(ds, batch_size=cfg.data.eval_batch_size, shuffle=False, seed=cfg.seed,
                        num_workers=cfg.data.num_workers)


def _split_metrics(logits: np.ndarray, ds: Any, num_classes: int) -> dict[str, Any]:
    preds = logits.argmax(1)
    out = classification_metrics(ds.labels, preds, num_classes=num_classes)
    clean = getattr(ds, "clean_labels", None)
    if clean is not None and not np.array_equal(clean, ds.labels):
        out["clean"] = classification_metrics(clean, preds, num_classes=num_classes)
    return out


def train_kfold(cfg: Config, *, folds: int, data: Any = None, output_dir: str | None = None) -> KFoldResult:
    """Train ``folds`` models on folds of the training split.

    Args:
        cfg: the run config (its ``train.kfold`` is ignored; each fold runs with ``train.kfold: 0``).
        folds: K >= 2.
        data: a prebuilt DataBundle for ``cfg`` (built from ``cfg`` when None).
        output_dir: when given, fold k is a run folder ``<output_dir>/fold_<k>`` with the configured hooks
            (evaluation, checkpoints ...) and the results are written there; when None nothing is written
            and the folds run without hooks.

    Returns:
        :class:`KFoldResult` (out-of-fold probabilities aligned with ``data.train``).
    """
    from robust_paddle.data import build_data
    from robust_paddle.pipeline.build import build_run, set_device
    from robust_paddle.pipeline.hooks import build_hooks

    set_device(cfg.train.device)
    bundle = build_data(cfg) if data is None else data
    labels = np.asarray(bundle.train.labels, dtype=np.int64)
    splits = kfold_splits(labels, folds=folds, seed=int(cfg.seed))
    n, c = labels.shape[0], int(bundle.num_classes)
    oof = np.zeros((n, c), dtype=np.float32)
    sums: dict[str, np.ndarray] = {}
    fold_rows = []
    if output_dir is not None:
        from robust_paddle.data.identity import save_train_labels
        from robust_paddle.data.noise import save_noise

        if not os.path.exists(os.path.join(output_dir, "config.yaml")):
            config_mod.save(cfg, os.path.join(output_dir, "config.yaml"))
        save_train_labels(bundle.train, output_dir)  # the rows of oof_probs.npy
        if bundle.noise is not None:
            save_noise(bundle.noise, output_dir)
    with tempfile.TemporaryDirectory(prefix="robust_paddle_kfold_") as tmp:
        for k, (fit_idx, held_idx) in enumerate(splits):
            root = output_dir if output_dir is not None else tmp
            fold_cfg = config_mod.with_values(cfg, {"seed": int(cfg.seed) + k, "train.kfold": 0,
                                                    "output_dir": os.path.join(root, f"fold_{k}")})
            if output_dir is None:
                fold_cfg = config_mod.with_values(fold_cfg, {"train.progress": False})
            os.makedirs(fold_cfg.output_dir, exist_ok=True)
            run = build_run(fold_cfg, output_dir=fold_cfg.output_dir, data=fold_data(bundle, fit_idx),
                            hooks=build_hooks(fold_cfg.train) if output_dir is not None else [], start_weights=True)
            if output_dir is not None:
                config_mod.save(fold_cfg, os.path.join(fold_cfg.output_dir, "config.yaml"))
            summary = run.trainer.fit()
            with run.trainer.evaluation_weights():
                logits, idx = run.trainer.predict_logits(_eval_loader(bundle.train_eval.select(held_idx), cfg))
                oof[held_idx[idx]] = logits
                for split in ("val", "test"):
                    ds = getattr(bundle, split)
                    if ds is not None and len(ds):
                        sl, si = run.trainer.predict_logits(_eval_loader(ds, cfg))
                        ordered = np.empty_like(sl)
                        ordered[si] = sl
                        sums[split] = sums.get(split, 0.0) + ordered
            fold_rows.append({"fold": k, "train": int(len(fit_idx)), "held_out": int(len(held_idx)),
                              "final": summary.get("final", {})})
            logger.info("k-fold %d/%d: trained on %d, predicted %d held-out samples", k + 1, folds, len(fit_idx),
                        len(held_idx))
    avg = {split: s / folds for split, s in sums.items()}
    details: dict[str, Any] = {"folds": folds, "per_fold": fold_rows, "oof": _split_metrics(oof, bundle.train, c)}
    final: dict[str, float] = {}
    for split, logits in avg.items():
        details[f"ensemble_{split}"] = m = _split_metrics(logits, getattr(bundle, split), c)
        final.update({f"{split}/acc": m["acc"], f"{split}/macro_f1": m["macro_f1"]})
        if "clean" in m:
            final[f"{split}/acc_clean"] = m["clean"]["acc"]
    # the shape of Trainer.metrics_summary (final, epochs_run) so the CLI prints it like a single run
    result_summary = {"epochs_run": max(int(r["final"].get("epoch", 0)) for r in fold_rows),
                      "final": final, "kfold": details}
    result = KFoldResult(oof_logits=oof, oof_probs=softmax(oof), test_logits=avg.get("test"),
                         val_logits=avg.get("val"), fold_indices=[h for _, h in splits], summary=result_summary)
    if output_dir is not None:
        from robust_paddle.engine.hooks import write_json

        np.save(os.path.join(output_dir, "oof_probs.npy"), result.oof_probs)
        if result.test_logits is not None:
            np.save(os.path.join(output_dir, "test_logits.npy"), result.test_logits)
        write_json(os.path.join(output_dir, "kfold.json"), details)
        write_json(os.path.join(output_dir, "metrics.json"), result_summary)
    return result


def cross_val_pred_probs(cfg: Config, *, folds: int = 5, data: Any = None) -> np.ndarray:
    """Out-of-sample probabilities [N, C] for every training sample by K-fold cross-validation.

    The configured run (model, method, loss, optimizer, epochs) is trained ``folds`` times, each time on
    the training split minus one stratified fold (``ArrayDataset.select``), and predicts the held-out fold
    without augmentation; no files are written (the per-fold trainers get no hooks). Fold ``k`` is seeded
    with ``cfg.seed + k``, the split with ``cfg.seed``.

    Args:
        cfg: the run config (``data.noise`` decides which noisy labels the folds see).
        folds: K >= 2.
        data: a prebuilt ``DataBundle`` for ``cfg`` (rebuilt from ``cfg`` when None).

    The fold loop is :func:`train_kfold` (one implementation; ``train.kfold`` runs also keep the models).

    Returns:
        [N, C] float64 probabilities, row ``i`` from the model that did not see sample ``i``.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an int >= 2, got {folds!r}")
    return train_kfold(cfg, folds=folds, data=data).oof_probs
