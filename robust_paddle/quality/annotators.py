"""Several annotators per sample: reading their answers and aggregating them into a consensus.

Notation: ``N`` samples, ``C`` classes, ``A`` annotators, ``K`` answers; answer ``k`` says annotator
``a_k`` gave sample ``s_k`` the label ``l_k``. Not every annotator labels every sample.

Aggregation is done by the PyPI library ``crowd-kit`` (Toloka; well kept and tested against the papers), with
these methods (``data.annotations_method``):

* ``majority_vote`` - the most frequent answer (ties: the posterior splits evenly between the tied labels);
* ``dawid_skene`` - Dawid & Skene 1979, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
  Algorithm" (JRSS C 28:20): one confusion matrix per annotator, fitted by EM;
* ``glad`` - Whitehill et al. 2009, "Whose Vote Should Count More" (NeurIPS): annotator expertise and sample
  difficulty;
* ``mace`` - Hovy et al. 2013, "Learning Whom to Trust with MACE" (NAACL): annotators who are either competent
  or spamming.

Every method returns a posterior ``P(true | answers)`` [N, C]. From it, the same definitions for every method:

* consensus label = argmax of the posterior (lowest class on ties);
* agreement of a sample = the share of its answers equal to the consensus label;
* annotator confusion ``conf_a[true, given]`` = posterior mass of each true class over that annotator's answers,
  rows normalised (a row with no mass is uniform);
* annotator accuracy = the mean posterior probability of the label the annotator gave, i.e. the expected share
  of their answers that are right under the consensus.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robust_paddle.data.table import read_table
from robust_paddle.data.textfile import where
from robust_paddle.errors import DataError, MissingDependencyError

__all__ = ["AGGREGATION_METHODS", "Annotations", "Consensus", "aggregate", "consensus_from_posterior", "parse_label",
           "read_annotations", "with_model_answers"]

logger = logging.getLogger(__name__)

AGGREGATION_METHODS = ("majority_vote", "dawid_skene", "glad", "mace")
SAMPLE_COLUMNS = ("sample", "sample_id", "path", "id")  # accepted names of the sample column, first found wins
ANNOTATOR_COLUMNS = ("annotator", "annotator_id", "worker")


@dataclass(frozen=True)
class Annotations:
    """Answers of several annotators.

    Attributes:
        sample: [K] int64 position of the answered sample (0..N-1).
        annotator: [K] int64 annotator index into ``annotator_names``.
        label: [K] int64 label given (0..C-1).
        annotator_names: [A] annotator ids as written in the file.
        lines: [K] int line of each answer in its file (for messages), 0 when built in memory.
        path: the file, "" when built in memory.
    """

    sample: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    annotator_names: list[str]
    lines: np.ndarray
    path: str = ""

    @classmethod
    def from_arrays(cls, sample: Any, annotator: Any, label: Any) -> Annotations:
        """Answers from three [K] int arrays (annotators named by their index)."""
        s, a, lab = (np.asarray(v, dtype=np.int64) for v in (sample, annotator, label))
        if not (s.ndim == a.ndim == lab.ndim == 1 and s.shape == a.shape == lab.shape):
            raise DataError(f"sample, annotator and label must be 1-D of equal length, got {s.shape}, {a.shape}, "
                             f"{lab.shape}")
        names = [str(i) for i in range(int(a.max()) + 1)] if a.size else []
        return cls(s, a, lab, names, np.zeros(s.size, dtype=np.int64))


@dataclass(frozen=True)
class Consensus:
    """The aggregated labels (see the module docstring for definitions).

    Attributes:
        labels: [N] int64 consensus label (-1 for a sample nobody answered).
        posterior: [N, C] float64 ``P(true | answers)`` (a row of zeros for an unanswered sample).
        agreement: [N] float64 share of a sample's answers equal to its consensus label (NaN when unanswered).
        num_answers: [N] int64 answers per sample.
        annotator_confusion: [A, C, C] float64, ``[a, true, given]``, rows sum to 1.
        annotator_accuracy: [A] float64 in [0, 1].
        annotator_answers: [A] int64 answers per annotator.
        annotator_names: [A].
        method: the aggregation method.
        info: method-specific facts (e.g. the chosen ``gamma`` of ``aggregate_with_model``).
    """

    labels: np.ndarray
    posterior: np.ndarray
    agreement: np.ndarray
    num_answers: np.ndarray
    annotator_confusion: np.ndarray
    annotator_accuracy: np.ndarray
    annotator_answers: np.ndarray
    annotator_names: list[str]
    method: str
    info: dict[str, Any] = field(default_factory=dict)


def parse_label(value: Any, *, class_index: Mapping[str, int], num_classes: int, at: str) -> int:
    """A label cell as a class index: an int in [0, C) or a class name; ``at`` prefixes errors (DataError)."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, (int, np.integer)) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        k = int(value)
        if not 0 <= k < num_classes:
            raise DataError(f"{at}: label {k} is outside [0, {num_classes}) for this {num_classes}-class dataset")
        return k
    if isinstance(value, str) and value.strip() in class_index:
        return class_index[value.strip()]
    names = ", ".join(list(class_index)[:10]) + (" ..." if len(class_index) > 10 else "")
    raise DataError(f"{at}: label {value!r} is neither a class index in [0, {num_classes}) nor a class name "
                    f"({names or 'the dataset has no class names'})")


def _column(row_values: Mapping[str, Any], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in row_values), None)


def read_annotations(path: str, *, sample_index: Mapping[str, int], num_classes: int,
                     class_names: Sequence[str] = (), what: str = "data.annotations") -> Annotations:
    """Read annotator answers from a CSV / TSV / JSONL file.

    Columns: the sample (``sample``, ``sample_id``, ``path`` or ``id``: a key of ``sample_index``), the
    annotator (``annotator``, ``annotator_id`` or ``worker``) and ``label`` (a class index or a class name).

    Args:
        path: the file (format from its extension, see :func:`robust_paddle.data.table.read_table`).
        sample_index: sample key as written in the file (str) -> position 0..N-1.
        num_classes: C.
        class_names: names accepted in the ``label`` column.
        what: the config key, for messages.

    Raises:
        DataError: an unknown sample, a label outside the classes, the same annotator answering one sample twice
            with different labels, an annotator with a single answer (their quality cannot be estimated), an
            empty file; each names ``file:line``.
    """
    rows = read_table(path, what=what)
    if not rows:
        raise DataError(f"{what}: {path} has a header but no answers")
    first = rows[0].values
    s_col, a_col = _column(first, SAMPLE_COLUMNS), _column(first, ANNOTATOR_COLUMNS)
    for col, names in ((s_col, SAMPLE_COLUMNS), (a_col, ANNOTATOR_COLUMNS), ("label" if "label" in first else None,
                                                                               ("label",))):
        if col is None:
            raise DataError(f"{what}: {where(path, rows[0].line)}: no {' / '.join(names)} column (columns: "
                            f"{', '.join(first)})")
    class_index = {str(n): i for i, n in enumerate(class_names)}
    annotator_ids: dict[str, int] = {}
    seen: dict[tuple[int, int], tuple[int, int]] = {}
    sample, annot, label, lines = [], [], [], []
    for r in rows:
        at = f"{what}: {where(path, r.line)}"
        key = str(r.get(s_col, "")).strip()
        if key not in sample_index:
            hint = next(iter(sample_index), "")
            raise DataError(f"{at}: sample {key!r} is not in the training set (samples are named like {hint!r}: "
                            "the row number of the data file, its path, or its id column)")
        who = str(r.get(a_col, "")).strip()
        if not who:
            raise DataError(f"{at}: empty annotator id")
        s = sample_index[key]
        a = annotator_ids.setdefault(who, len(annotator_ids))
        lab = parse_label(r.get("label"), class_index=class_index, num_classes=num_classes, at=at)
        if (s, a) in seen:
            prev_line, prev_label = seen[(s, a)]
            if prev_label != lab:
                raise DataError(f"{at}: annotator {who!r} labels sample {key!r} {lab}, but {prev_label} on line "
                                f"{prev_line}; keep one answer per annotator and sample")
            continue  # an exact repeat counts once
        seen[(s, a)] = (r.line, lab)
        sample.append(s)
        annot.append(a)
        label.append(lab)
        lines.append(r.line)
    counts = np.bincount(np.asarray(annot), minlength=len(annotator_ids))
    lonely = np.flatnonzero(counts < 2)
    if lonely.size:
        names = list(annotator_ids)
        k = int(np.flatnonzero(np.asarray(annot) == lonely[0])[0])
        raise DataError(f"{what}: {where(path, lines[k])}: annotator {names[lonely[0]]!r} gave only one answer; "
                        f"an annotator's quality needs at least 2 (drop or merge {len(lonely)} such annotator(s))")
    return Annotations(np.asarray(sample, np.int64), np.asarray(annot, np.int64), np.asarray(label, np.int64),
                       list(annotator_ids), np.asarray(lines, np.int64), path)


def _crowdkit_posterior(ann: Annotations, num_classes: int, method: str, seed: int) -> np.ndarray:
    """[n_answered_tasks, C] posterior from crowd-kit, rows in the order of ``np.unique(ann.sample)``."""
    try:
        import pandas as pd
        from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("data.annotations needs crowd-kit: pip install 'robust_paddle[quality]'") from e
    df = pd.DataFrame({"task": ann.sample, "worker": ann.annotator, "label": ann.label})
    model = {"majority_vote": lambda: MajorityVote(),
             "dawid_skene": lambda: DawidSkene(n_iter=100),
             "glad": lambda: GLAD(n_iter=100),
             "mace": lambda: MACE(n_restarts=10, n_iter=50, random_state=seed % 2**31)}[method]()
    probas = model.fit_predict_proba(df)
    tasks = np.unique(ann.sample)
    probas = probas.reindex(index=tasks, columns=range(num_classes), fill_value=0.0).fillna(0.0)
    post = probas.to_numpy(dtype=np.float64)
    sums = post.sum(axis=1, keepdims=True)
    return np.divide(post, sums, out=np.full_like(post, 1.0 / num_classes), where=sums > 0)


def with_model_answers(ann: Annotations, pred_probs: np.ndarray) -> Annotations:
    """``ann`` plus one pseudo-annotator ``"model"`` answering the arg-max of ``pred_probs`` [N, C] (ideally
    out-of-sample) for every sample that has at least one human answer.

    The aggregation method then estimates the model's reliability like any annotator's (its confusion matrix
    under Dawid-Skene), which is how a model's view enters the consensus here; CROWDLAB (Goh et al. 2022,
    https://arxiv.org/abs/2210.06812, cleanlab's multi-annotator consensus) weights the model's probabilities
    instead.
    """
    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] <= int(ann.sample.max()):
        raise DataError(f"pred_probs must be [N, C] covering every answered sample, got shape {probs.shape}")
    tasks = np.unique(ann.sample)
    model = len(ann.annotator_names)
    return Annotations(np.r_[ann.sample, tasks], np.r_[ann.annotator, np.full(tasks.size, model)],
                       np.r_[ann.label, probs[tasks].argmax(axis=1)], [*ann.annotator_names, "model"],
                       np.r_[ann.lines, np.zeros(tasks.size, dtype=np.int64)], ann.path)


def aggregate(ann: Annotations, *, num_samples: int, num_classes: int, method: str = "dawid_skene",
              seed: int = 0) -> Consensus:
    """Consensus labels, posterior and annotator quality from several annotators' answers.

    Args:
        ann: the answers (K >= 1), samples in [0, num_samples), labels in [0, num_classes).
        num_samples: N. num_classes: C.
        method: one of ``AGGREGATION_METHODS``.
        seed: seed of the randomised methods (``mace``).

    Returns:
        :class:`Consensus`; unanswered samples get label -1, a zero posterior row and NaN agreement.

    Raises:
        ValueError: unknown ``method``; answers out of range.
    """
    if method not in AGGREGATION_METHODS:
        raise DataError(f"annotations method {method!r} is not known; choose one of {', '.join(AGGREGATION_METHODS)}")
    if ann.sample.size == 0:
        raise DataError("no annotator answers to aggregate")
    if ann.sample.min() < 0 or ann.sample.max() >= num_samples or ann.label.min() < 0 \
            or ann.label.max() >= num_classes:
        raise DataError("answers out of range: samples must be in [0, N) and labels in [0, C)")
    tasks = np.unique(ann.sample)
    posterior = np.zeros((num_samples, num_classes))
    posterior[tasks] = _crowdkit_posterior(ann, num_classes, method, seed)
    return consensus_from_posterior(ann, posterior, method=method)


def consensus_from_posterior(ann: Annotations, posterior: np.ndarray, *, method: str) -> Consensus:
    """:class:`Consensus` of the answers ``ann`` given the posterior [N, C] of every sample (rows of unanswered
    samples are ignored and set to zero), with the module docstring's definitions."""
    num_samples, num_classes = posterior.shape
    n_ann = len(ann.annotator_names)
    answered = np.zeros(num_samples, dtype=bool)
    answered[ann.sample] = True
    posterior = np.where(answered[:, None], posterior, 0.0)
    labels = np.where(answered, posterior.argmax(axis=1), -1).astype(np.int64)
    num_answers = np.bincount(ann.sample, minlength=num_samples).astype(np.int64)
    agree = np.bincount(ann.sample, weights=(ann.label == labels[ann.sample]).astype(float), minlength=num_samples)
    agreement = np.divide(agree, num_answers, out=np.full(num_samples, np.nan), where=num_answers > 0)
    conf = np.zeros((n_ann, num_classes, num_classes))
    np.add.at(conf, (ann.annotator, slice(None), ann.label), posterior[ann.sample])  # [a, true, given]
    rows = conf.sum(axis=2, keepdims=True)
    conf = np.divide(conf, rows, out=np.full_like(conf, 1.0 / num_classes), where=rows > 0)
    answers = np.bincount(ann.annotator, minlength=n_ann).astype(np.int64)
    right = np.bincount(ann.annotator, weights=posterior[ann.sample, ann.label], minlength=n_ann)
    accuracy = np.divide(right, answers, out=np.zeros(n_ann), where=answers > 0)
    if (~answered).any():
        logger.warning("%d of %d samples have no annotator answer", int((~answered).sum()), num_samples)
    return Consensus(labels, posterior, agreement, num_answers, conf, accuracy, answers,
                     list(ann.annotator_names), method)


def write_annotator_outputs(cons: Consensus, out_dir: str, *, sample_names: Sequence[str], file_labels: np.ndarray,
                            class_names: Sequence[str]) -> list[str]:
    """Write ``consensus.csv`` (one row per source sample) and ``annotators.csv`` (one row per annotator,
    best first) plus ``annotators.json`` (the confusion matrices ``[true][given]``); returns the paths.

    ``consensus.csv``: source_row, sample, num_answers, consensus_label, consensus_name, confidence (posterior of
    the consensus label), agreement, file_label. ``annotators.csv``: annotator, answers, accuracy, and the most
    frequent confusion (``true -> given`` with its probability).
    """
    from robust_paddle.ops import atomic_write

    os.makedirs(out_dir, exist_ok=True)
    n = cons.labels.size
    conf_p = np.where(cons.labels >= 0, cons.posterior[np.arange(n), np.maximum(cons.labels, 0)], np.nan)
    paths = [os.path.join(out_dir, name) for name in ("consensus.csv", "annotators.csv", "annotators.json")]
    with atomic_write(paths[0], newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source_row", "sample", "num_answers", "consensus_label", "consensus_name", "confidence",
                    "agreement", "file_label"])
        for i in range(n):
            lab = int(cons.labels[i])
            w.writerow([i, sample_names[i], int(cons.num_answers[i]), lab if lab >= 0 else "",
                        class_names[lab] if lab >= 0 else "", "" if lab < 0 else f"{conf_p[i]:.6f}",
                        "" if np.isnan(cons.agreement[i]) else f"{cons.agreement[i]:.6f}", int(file_labels[i])])
    order = np.argsort(-cons.annotator_accuracy, kind="stable")
    with atomic_write(paths[1], newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["annotator", "answers", "accuracy", "top_confusion", "top_confusion_prob"])
        for a in order:
            off = cons.annotator_confusion[a].copy()
            np.fill_diagonal(off, -1.0)
            t, g = np.unravel_index(int(off.argmax()), off.shape)
            w.writerow([cons.annotator_names[a], int(cons.annotator_answers[a]), f"{cons.annotator_accuracy[a]:.6f}",
                        f"{class_names[t]} -> {class_names[g]}", f"{off[t, g]:.6f}"])
    with atomic_write(paths[2]) as fh:
        json.dump({"method": cons.method, "class_names": list(class_names),
                   "annotators": [{"annotator": cons.annotator_names[a], "answers": int(cons.annotator_answers[a]),
                                   "accuracy": float(cons.annotator_accuracy[a]),
                                   "confusion": cons.annotator_confusion[a].round(6).tolist()} for a in order]},
                  fh, indent=2)
    return paths
