"""Simulated crowds of annotators with known quality, for tests, benchmarks and trying the consensus methods.

Each annotator has a confusion matrix ``P(given | true)`` of one of these kinds:

* ``expert`` / ``good`` / ``mediocre``: right with probability ``accuracy``, otherwise a uniformly random
  other class;
* ``spammer``: a uniformly random class whatever the truth;
* ``systematic``: right like a ``good`` annotator except on a fixed set of class pairs, where the true class
  is answered as its partner with probability ``confusion`` (e.g. always reading 3 as 8).

Assignment is sparse: every sample is answered by ``answers_per_sample`` distinct annotators chosen with
probability proportional to each annotator's ``workload``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robust_paddle.errors import DataError

__all__ = ["Crowd", "annotator_matrix", "simulate_crowd"]


@dataclass(frozen=True)
class Crowd:
    """A simulated crowd: answers (``sample``, ``annotator``, ``label``, each [K]), every annotator's true
    confusion matrix [A, C, C] (``[a, true, given]``), true accuracy [A] under the class prior, and kinds."""

    sample: np.ndarray
    annotator: np.ndarray
    label: np.ndarray
    confusion: np.ndarray
    accuracy: np.ndarray
    kinds: list[str]


def annotator_matrix(kind: str, num_classes: int, *, rng: np.random.Generator, accuracy: float = 0.8,
                     confusion: float = 0.6, pairs: int = 2) -> np.ndarray:
    """One annotator's ``P(given | true)`` [C, C] (rows sum to 1); see the module docstring for ``kind``."""
    c = num_classes
    if kind == "spammer":
        return np.full((c, c), 1.0 / c)
    m = np.full((c, c), (1.0 - accuracy) / (c - 1))
    np.fill_diagonal(m, accuracy)
    if kind == "systematic":
        for i in rng.choice(c, size=min(pairs, c), replace=False):
            j = int(rng.choice([k for k in range(c) if k != i]))
            m[i] = (1.0 - confusion) * m[i]
            m[i, j] += confusion
    elif kind not in ("expert", "good", "mediocre"):
        raise DataError(f"unknown annotator kind {kind!r}")
    return m


DEFAULT_MIX = (("expert", 0.95, 0.15), ("good", 0.8, 0.35), ("mediocre", 0.6, 0.2), ("systematic", 0.85, 0.15),
               ("spammer", 0.0, 0.15))  # (kind, accuracy, share of annotators)


def simulate_crowd(true_labels: np.ndarray, *, num_classes: int, num_annotators: int, answers_per_sample: int,
                   seed: int, mix: tuple[tuple[str, float, float], ...] = DEFAULT_MIX) -> Crowd:
    """Draw annotator answers for ``true_labels`` [N].

    Args:
        true_labels: [N] int true classes.
        num_classes: C. num_annotators: A (>= answers_per_sample).
        answers_per_sample: distinct annotators answering each sample.
        seed: random seed.
        mix: ``(kind, accuracy, share)`` triples; shares are normalised and rounded to whole annotators.

    Returns:
        :class:`Crowd` with ``K = N * answers_per_sample`` answers.
    """
    y = np.asarray(true_labels, dtype=np.int64)
    if not 1 <= answers_per_sample <= num_annotators:
        raise DataError(f"answers_per_sample must be in [1, {num_annotators}], got {answers_per_sample}")
    rng = np.random.default_rng(seed)
    shares = np.array([s for _, _, s in mix], dtype=np.float64)
    counts = np.floor(shares / shares.sum() * num_annotators).astype(int)
    counts[np.argsort(-(shares / shares.sum() * num_annotators - counts))[: num_annotators - counts.sum()]] += 1
    kinds, mats = [], []
    for (kind, acc, _), k in zip(mix, counts):
        for _ in range(k):
            kinds.append(kind)
            mats.append(annotator_matrix(kind, num_classes, rng=rng, accuracy=acc))
    order = rng.permutation(len(kinds))
    kinds = [kinds[i] for i in order]
    conf = np.stack([mats[i] for i in order])
    workload = rng.uniform(0.5, 1.5, size=num_annotators)
    p = workload / workload.sum()
    n = y.size
    who = np.stack([rng.choice(num_annotators, size=answers_per_sample, replace=False, p=p) for _ in range(n)])
    sample = np.repeat(np.arange(n), answers_per_sample)
    annotator = who.reshape(-1)
    cum = np.cumsum(conf[annotator, y[sample]], axis=1)
    label = np.minimum((rng.uniform(size=(sample.size, 1)) > cum).sum(axis=1), num_classes - 1)
    prior = np.bincount(y, minlength=num_classes) / n
    accuracy = np.einsum("c,acc->a", prior, conf)
    return Crowd(sample, annotator.astype(np.int64), label.astype(np.int64), conf, accuracy, kinds)
