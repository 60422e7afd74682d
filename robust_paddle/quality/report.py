"""The label-issue report and the per-epoch sample statistics hook.

``write_report(run, out_dir=...)`` predicts every training sample (eval mode, no augmentation) and writes:

* ``label_issues.csv`` - one row per training sample, most suspect first: ``index`` (position in the
  run's training split, the row of ``train_labels.npy``), ``source_row`` (the row in the user's source: fix
  labels there), ``path`` (file-backed datasets), ``id`` (the source's id column, when it has one; see
  ``data/identity.py``), ``given_label``/``given_name``, ``suggested_label``/``suggested_name`` (arg-max prediction),
  ``clean_prob`` (the method's own clean probability, else a 2-component GMM on the per-sample losses,
  bounded by ``quality_score`` where confident learning flags the sample), ``quality_score``
  (self-confidence ``p[given]``, lower = more suspect), ``loss``, ``is_issue`` and, when the clean labels
  are known, ``true_label``; one rule ties these columns and the row order (:func:`issue_columns`): no
  issue row has ``clean_prob >= 0.5`` and rows follow ascending ``clean_prob`` within each block;
* ``noise_matrix.png`` - the confident-learning estimate of ``P(given | true)`` (``estimation``);
* ``loss_hist.png`` - the per-sample loss histogram with the fitted GMM's component densities;
* ``label_issues_summary.json`` - counts, one noise-rate estimate (``noise_rate_estimate``, its
  ``noise_rate_estimator`` and bootstrap ``noise_rate_interval``; the other estimators in
  ``noise_rate_estimators``, see ``quality/noise_rate.py``), the estimated matrix and, when the clean
  labels are known, precision / recall / F1 of ``is_issue`` against the truth.

Flagging unites confident learning (Northcutt et al. 2021, https://arxiv.org/abs/1911.00068) with the
loss-GMM view of Li et al. 2020 (https://arxiv.org/abs/2002.07394) under :func:`issue_columns`. The probabilities come from the trained (noise-robust) model itself, not
from cross-validation; ``benchmarks/detection.py`` measures how that compares with cleanlab on K-fold
out-of-sample probabilities.
"""

from __future__ import annotations

import csv
import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from robust_paddle.data.identity import identity_columns
from robust_paddle.engine.hooks import Hook, write_json
from robust_paddle.engine.trainer import Run
from robust_paddle.errors import DataError
from robust_paddle.methods.correction import loss_clean_probability, split_precision_recall
from robust_paddle.ops import atomic_write, per_sample_ce, softmax
from robust_paddle.quality import estimation as E
from robust_paddle.quality.noise_rate import format_noise_rate, noise_rate_summary
from robust_paddle.quality.plots import plot_loss_histogram, plot_noise_matrix
from robust_paddle.registry import HOOKS

if TYPE_CHECKING:
    from robust_paddle.engine.trainer import Trainer

logger = logging.getLogger(__name__)

CSV_NAME, SUMMARY_NAME = "label_issues.csv", "label_issues_summary.json"
TEXT_WIDTH = 80  # characters of a text shown in label_issues.csv
MATRIX_PNG, LOSS_PNG = "noise_matrix.png", "loss_hist.png"
GMM_OPTIONS = {"max_iter": 200, "tol": 1e-4}  # one-off fit: run EM to convergence (not DivideMix's 10 steps)




def rank_label_issues(labels: np.ndarray, probs: np.ndarray,
                      clean_prob: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The report's verdict and order: ``(order [N], is_issue [N] bool, quality [N])``.

    With ``clean_prob``: the one rule of :func:`issue_columns` (what ``label_issues.csv`` shows). Without:
    plain confident learning (``estimation.prune_by_noise_rate``), flagged rows first, then by ascending
    ``quality = p[given]``, then index.
    """
    if clean_prob is not None:
        cols = issue_columns(labels, probs, clean_prob)
        return cols["order"], cols["is_issue"], cols["quality_score"]
    labels, probs = E.check_inputs(labels, probs)
    n = len(labels)
    quality = E.label_quality_scores(labels, probs)
    is_issue = E.prune_by_noise_rate(labels, probs)
    return np.lexsort((np.arange(n), quality, ~is_issue)), is_issue, quality


def train_predictions(trainer: Trainer, loader: Any, n: int, *, shard: bool = False) -> np.ndarray:
    """Logits [N, C] of every training sample in dataset order: the trainer's cached training-set pass
    (:meth:`~robust_paddle.engine.train_pass.TrainSetPass.train_set_logits`) when ``loader`` is its
    ``train_eval`` loader, else one eval pass over ``loader``.

    ``shard``: data parallel, called by every rank: each predicts its shard (``Trainer.predict_logits``).
    """
    if hasattr(trainer, "train_set_logits") and loader is trainer.loaders.get("train_eval"):
        return trainer.train_set_logits(collective=shard)
    logits, idx = (trainer.predict_logits(loader, shard=True) if shard and getattr(trainer, "distributed", False)
                   else trainer.predict_logits(loader))
    if idx.shape[0] != n or not np.array_equal(np.sort(idx), np.arange(n)):
        raise DataError(f"the train_eval loader yielded {idx.shape[0]} samples with indices that are not a "
                         f"permutation of 0..{n - 1}; it must cover the training set once")
    out = np.empty_like(logits)
    out[idx] = logits
    return out


def loss_gmm(losses: np.ndarray, *, seed: int) -> tuple[np.ndarray, Any]:
    """``(clean_prob [N], GaussianMixture or None)``; all-equal losses or a mixture that does not separate
    give ``clean_prob = 1`` and no GMM, with a warning (``correction.loss_clean_probability``)."""
    prob, gmm, _ = loss_clean_probability(losses, seed=seed, where="label-issue report", **GMM_OPTIONS)
    return prob, gmm


#: a label with a clean probability below this is an issue candidate (``find_label_issues``' default too)
CLEAN_THRESHOLD = 0.5


def issue_columns(labels: np.ndarray, probs: np.ndarray, clean_prob: np.ndarray, *,
                  threshold: float = CLEAN_THRESHOLD) -> dict[str, np.ndarray]:
    """The one rule behind ``clean_prob``, ``quality_score``, ``is_issue`` and the row order of the report.

    1. ``quality_score = p[given]`` (self-confidence, Northcutt et al. 2021).
    2. ``clean_prob`` = the method's clean probability (or the loss GMM's); for a sample that confident
       learning flags (:func:`estimation.prune_by_noise_rate`) it is ``min(that, quality_score)``: the
       classifier's own probability of the given label bounds how clean a flagged label can be called.
    3. ``is_issue = clean_prob < threshold and (confident learning flags it or the prediction differs from
       the given label)``; so no issue row has ``clean_prob >= threshold``.
    4. Rows are ordered issues first, then by ascending ``clean_prob``, ties by ascending ``quality_score``,
       then by index.

    Without step 2, a loss GMM that calls a heavy-tailed loss "clean" (a GCE-trained model) left rows with
    ``is_issue = 1`` and ``clean_prob = 1.0`` (issue 15).

    Args:
        labels: [N] given labels. probs: [N, C] probabilities. clean_prob: [N] in [0, 1].
        threshold: in (0, 1).

    Returns:
        ``{"clean_prob" [N] float64, "quality_score" [N], "is_issue" [N] bool, "order" [N] int64}``.
    """
    labels, probs = E.check_inputs(labels, probs)
    quality = E.label_quality_scores(labels, probs)
    flagged = E.prune_by_noise_rate(labels, probs)
    clean = np.asarray(clean_prob, dtype=np.float64)
    clean = np.where(flagged, np.minimum(clean, quality), clean)
    disagree = probs.argmax(axis=1) != labels
    is_issue = (clean < threshold) & (flagged | disagree)
    order = np.lexsort((np.arange(len(labels)), quality, clean, ~is_issue))
    return {"clean_prob": clean, "quality_score": quality, "is_issue": is_issue, "order": order}


def shorten_text(text: Any, *, width: int = TEXT_WIDTH) -> str:
    """One line of at most ``width`` characters (``" [SEP] "`` between the parts of a pair, ``...`` when cut)."""
    t = " [SEP] ".join(text) if isinstance(text, tuple) else str(text)
    t = " ".join(t.split())
    return t if len(t) <= width else t[:width - 3] + "..."


def _names(class_names: list[str], labels: np.ndarray) -> list[str]:
    return [class_names[int(k)] for k in labels]


def _csv_rows(table: dict[str, Any], order: np.ndarray) -> tuple[list[str], list[list[Any]]]:
    header = list(table)
    cols = [table[h] for h in header]
    rows = []
    for i in order:
        row = []
        for v in cols:
            x = v[i]
            row.append(f"{x:.6f}" if isinstance(x, (float, np.floating)) else
                       int(x) if isinstance(x, (bool, np.bool_)) else x)
        rows.append(row)
    return header, rows


def write_report(run: Run, *, out_dir: str, given_labels: np.ndarray | None = None) -> dict[str, Any]:
    """Write the label-issue report of a trained run into ``out_dir``; returns the summary dict.

    Args:
        run: :class:`~robust_paddle.engine.trainer.Run` (method, data, loaders, trainer) holding trained weights.
        out_dir: folder for ``label_issues.csv``, ``noise_matrix.png``, ``loss_hist.png`` and
            ``label_issues_summary.json`` (created when missing).
        given_labels: [N] labels to audit; default the training set's current labels (the
            :class:`ReportHook` passes the labels as they were before training, in case a method
            relabelled them in place).

    Returns:
        The summary (also written as JSON), with ``files`` naming the written paths.
    """
    trainer, data = run.trainer, run.data
    ds = data.train_eval
    n = len(ds.labels)
    labels = np.asarray(ds.labels if given_labels is None else given_labels, dtype=np.int64).copy()
    if labels.shape != (n,):
        raise DataError(f"given_labels must have shape ({n},), got {labels.shape}")
    logits = train_predictions(trainer, run.loaders["train_eval"], n)
    probs = softmax(logits)
    losses = per_sample_ce(logits, labels)
    seed = int(run.cfg.seed)
    gmm_prob, gmm = loss_gmm(losses, seed=seed)
    own = run.method.clean_probability()
    if own is not None and np.asarray(own).shape != (n,):
        raise DataError(f"method {run.cfg.method.name!r}: clean_probability() has shape "
                         f"{np.asarray(own).shape}, expected ({n},)")
    model_clean_prob = gmm_prob if own is None else np.clip(np.asarray(own, dtype=np.float64), 0.0, 1.0)
    suggested = probs.argmax(axis=1)
    cols = issue_columns(labels, probs, model_clean_prob)
    clean_prob, quality, is_issue, order = cols["clean_prob"], cols["quality_score"], cols["is_issue"], cols["order"]
    t_est = E.estimate_noise_matrix(labels, probs)
    names = list(data.class_names)
    clean = getattr(ds, "clean_labels", None)

    table: dict[str, Any] = {"index": np.arange(n), **identity_columns(ds)}
    texts = getattr(ds, "texts", None)
    if texts is not None:  # text sources: the review itself, shortened, beside the labels
        table["text"] = [shorten_text(t) for t in texts]
    table.update({"given_label": labels, "given_name": _names(names, labels), "suggested_label": suggested,
                  "suggested_name": _names(names, suggested), "clean_prob": clean_prob,
                  "quality_score": quality, "loss": losses, "is_issue": is_issue})
    if clean is not None:
        table["true_label"] = np.asarray(clean, dtype=np.int64)
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, CSV_NAME)
    header, rows = _csv_rows(table, order)
    with atomic_write(csv_path, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)

    noisy_mask = None if clean is None else labels != np.asarray(clean)
    matrix_path = plot_noise_matrix(t_est, os.path.join(out_dir, MATRIX_PNG), class_names=names)
    loss_path = plot_loss_histogram(losses, os.path.join(out_dir, LOSS_PNG), gmm=gmm, noisy_mask=noisy_mask)
    summary: dict[str, Any] = {
        "method": run.cfg.method.name,
        "num_samples": n,
        "num_issues": int(is_issue.sum()),
        "issue_fraction": float(is_issue.mean()),
        "clean_prob_source": "gmm" if own is None else "method",
        **noise_rate_summary(labels, probs, noisy_mass=1.0 - gmm_prob, clean_prob=clean_prob, seed=seed),
        "class_names": names,
        "estimated_noise_matrix": t_est.tolist(),
        "matrix_orientation": "rows = true class, columns = given label: P(given = j | true = i)",
        "predicted_disagrees_with_given": int((suggested != labels).sum()),
    }
    if noisy_mask is not None:
        from robust_paddle.data.noise import realised_matrix

        truth = np.asarray(clean, dtype=np.int64)
        summary["true_noise_rate"] = float(noisy_mask.mean())
        summary["true_noise_matrix"] = realised_matrix(truth, labels, len(names)).tolist()
        summary["detection"] = E.detection_scores(is_issue, noisy_mask)
        flagged = is_issue & noisy_mask
        summary["suggested_label_accuracy_on_true_issues"] = (
            float(np.mean(suggested[flagged] == truth[flagged])) if flagged.any() else None)
    summary["files"] = {"csv": csv_path, "noise_matrix": matrix_path, "loss_hist": loss_path,
                        "summary": os.path.join(out_dir, SUMMARY_NAME)}
    write_json(summary["files"]["summary"], summary)
    logger.info("label-issue report: %d of %d samples flagged; %s -> %s", summary["num_issues"], n,
                format_noise_rate(summary), csv_path)
    return summary


# ------------------------------------------------------------------------------------------------ hooks
@HOOKS.register("report")
class ReportHook(Hook):
    """Writes the label-issue report into the run folder at the end of training (rank 0 only).

    Added by ``pipeline.hooks.build_hooks`` when ``train.report`` is true. The given labels are copied at
    ``before_train`` so a method that relabels the training set in place is still audited against the
    labels the user supplied.
    """

    priority = 95
    name = "report"

    def __init__(self) -> None:
        self.given: np.ndarray | None = None

    def before_train(self, trainer: Trainer) -> None:
        if trainer.data is not None:
            self.given = np.array(trainer.data.train.labels, dtype=np.int64, copy=True)

    def after_train(self, trainer: Trainer) -> None:
        if not trainer.is_main or trainer.data is None or not trainer.cfg.train.report:
            return
        run = Run(cfg=trainer.cfg, data=trainer.data, method=trainer.method, loaders=trainer.loaders,
                  trainer=trainer)
        write_report(run, out_dir=trainer.output_dir, given_labels=self.given)


@HOOKS.register("sample_stats")
class SampleStatsHook(Hook):
    """Per-epoch per-sample statistics for methods that keep none of their own.

    On evaluation epochs (every ``train.eval_every`` epochs and the last) whose number is a multiple of ``every``,
    one eval pass over the training set gives per-sample losses; a 2-component GMM
    on them gives clean probabilities. Writes the VisualDL histograms ``samples/loss`` and
    ``samples/clean_prob``, the scalar ``noise/rate_gmm`` and, when the clean labels are known,
    ``select/precision`` / ``select/recall`` of the GMM-clean split (``clean_prob > 0.5``). Skipped when
    the method has a ``clean_probability()`` or already filled ``samples/loss`` this epoch. Runs before
    the checkpoint hook so the checkpointed history holds the scalars.

    Args:
        every: epochs between passes (>= 1).
    """

    priority = 40
    name = "sample_stats"

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise DataError(f"sample_stats.every must be an int >= 1, got {every!r}")
        self.every = every

    def after_epoch(self, trainer: Trainer) -> None:
        if (trainer.epoch + 1) % self.every or not trainer.is_eval_epoch() or trainer.data is None:
            return
        if trainer.method.clean_probability() is not None or "samples/loss" in trainer.epoch_histograms:
            return
        ds = trainer.data.train_eval
        labels = np.asarray(ds.labels, dtype=np.int64)
        logits = train_predictions(trainer, trainer.loaders["train_eval"], len(labels), shard=True)  # all ranks
        losses = per_sample_ce(logits, labels)
        prob, _ = loss_gmm(losses, seed=int(trainer.cfg.seed) + trainer.epoch)
        trainer.epoch_histograms["samples/loss"] = losses.astype(np.float32)
        trainer.epoch_histograms["samples/clean_prob"] = prob.astype(np.float32)
        trainer.epoch_scalars["noise/rate_gmm"] = float(np.mean(1.0 - prob))
        # the same pass gives the training accuracy over the whole set (VisualDL then skips its own pass)
        preds = logits.argmax(1)
        trainer.epoch_scalars["train/acc"] = float(np.mean(preds == labels))
        clean = getattr(ds, "clean_labels", None)
        if clean is not None and not np.array_equal(np.asarray(clean), labels):
            trainer.epoch_scalars["train/acc_clean"] = float(np.mean(preds == np.asarray(clean)))
        if clean is not None:
            p, r = split_precision_recall(prob > 0.5, labels == np.asarray(clean))
            trainer.epoch_scalars["select/precision"], trainer.epoch_scalars["select/recall"] = p, r
