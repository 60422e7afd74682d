"""Label-noise generators: transition matrices, instance-dependent noise, noisy-label files.

Pure functions over numpy arrays; the same seed always gives the same labels. ``noise.py`` re-exports
them and adds the ``NOISES`` registry entries, :class:`NoiseSpec` and ``inject_noise``.

Rates and learnability (a deliberate choice): every kind accepts any ``rate`` in [0, 1] so that studies
beyond the identifiable range remain possible, but a warning is logged when the noisy label of some class
would be more often wrong-in-one-direction than right:

* ``symmetric``: off-diagonal mass ``rate/(C-1)``; the clean class stays the most likely one while
  ``rate < (C-1)/C``.
* ``pair`` and ``asymmetric``: a class flips into a single other class, so ``rate >= 0.5`` makes the flipped
  class the majority (the classes swap meaning).

References:
    Symmetric / pair ("pairflip") noise: Han et al. 2018, Co-teaching, https://arxiv.org/abs/1804.06872
    Asymmetric class maps: Patrini et al. 2017, https://arxiv.org/abs/1609.03683
    Instance-dependent noise: Xia et al. 2020, https://arxiv.org/abs/2006.10994
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from robust_paddle.data.textfile import read_text_lines, where
from robust_paddle.errors import DataError
from robust_paddle.quality.estimation import round_preserving_total

logger = logging.getLogger(__name__)

#: Standard asymmetric class maps (source class -> class it is flipped into).
CLASS_MAPS: Mapping[str, Mapping[int, int]] = {
    # truck->automobile, bird->airplane, deer->horse, cat<->dog (Patrini et al. 2017)
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # 2->7, 3->8, 5<->6, 7->1 (Patrini et al. 2017)
    "mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
}
#: ``class_map: auto`` picks the map by dataset name.
AUTO_CLASS_MAPS: Mapping[str, str] = {"cifar10": "cifar10", "mnist": "mnist", "digits": "mnist"}
IDN_NORM_STD = 0.1  # std of the truncated normal flip-rate distribution (Xia et al. 2020, Alg. 2)


# ------------------------------------------------------------------------------------------- validation
def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise DataError(f"num_classes must be an int >= 2, got {num_classes!r}")


def _check_rate(rate: float, field: str = "noise.rate") -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0.0 <= rate <= 1.0:
        raise DataError(f"{field} must be a number in [0, 1], got {rate!r}")
    return float(rate)


def check_labels(labels: Any, num_classes: int, *, field: str = "labels") -> np.ndarray:
    """Return ``labels`` as int64 [N], raising ValueError unless they are integers in [0, num_classes)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DataError(f"{field} must be 1-D [N], got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{field} must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise DataError(f"{field}: label {int(bad)} is out of range; labels must be in [0, {num_classes - 1}]")
    return arr


# ------------------------------------------------------------------------------------------ matrices
def symmetric_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Symmetric noise: keep with ``1-rate``, else flip uniformly to one of the OTHER classes.

    Returns:
        T [C, C] float64, ``T[i, i] = 1-rate`` and ``T[i, j] = rate/(C-1)`` for ``j != i``.
    """
    _check_num_classes(num_classes)
    rate = _check_rate(rate)
    if rate >= (num_classes - 1) / num_classes and rate > 0:
        logger.warning("symmetric noise rate %.3f >= (C-1)/C = %.3f: the clean class is no longer the most "
                       "likely observed label", rate, (num_classes - 1) / num_classes)
    t = np.full((num_classes, num_classes), rate / (num_classes - 1))
    np.fill_diagonal(t, 1.0 - rate)
    return t


def pair_matrix(num_classes: int, rate: float) -> np.ndarray:
    """Pair-flip noise: ``y -> (y+1) mod C`` with probability ``rate`` (Han et al. 2018).

    Returns:
        T [C, C] float64.
    """
    _check_num_classes(num_classes)
    rate = _check_rate(rate)
    if rate >= 0.5:
        logger.warning("pair noise rate %.3f >= 0.5: flipped labels outnumber clean ones", rate)
    t = np.eye(num_classes) * (1.0 - rate)
    t[np.arange(num_classes), (np.arange(num_classes) + 1) % num_classes] += rate
    return t


def resolve_class_map(class_map: str | Mapping[Any, Any], *, num_classes: int,
                      dataset: str = "") -> tuple[str, dict[int, int]]:
    """Turn ``"cifar10"``, ``"mnist"``, ``"auto"`` or a ``{src: dst}`` mapping into ``(name, {src: dst})``.

    Raises:
        ValueError: unknown map name, ``auto`` for a dataset without a standard map, or bad classes.
    """
    if isinstance(class_map, str):
        name = class_map
        if name == "auto":
            if dataset not in AUTO_CLASS_MAPS:
                raise DataError(
                    f"noise.class_map='auto' has no standard map for dataset {dataset!r} (known: "
                    f"{', '.join(sorted(AUTO_CLASS_MAPS))}); set noise.class_map to one of "
                    f"{', '.join(sorted(CLASS_MAPS))} or a mapping {{src: dst}}")
            name = AUTO_CLASS_MAPS[dataset]
        if name not in CLASS_MAPS:
            raise DataError(f"noise.class_map: unknown map {class_map!r}; choose one of "
                             f"{', '.join(sorted(CLASS_MAPS))}, 'auto' or a mapping {{src: dst}}")
        mapping = dict(CLASS_MAPS[name])
    elif isinstance(class_map, Mapping):
        name = "custom"
        mapping = {}
        for k, v in class_map.items():
            try:
                src, dst = int(k), int(v)
            except (TypeError, ValueError):
                raise DataError(f"noise.class_map: entry {k!r}: {v!r} must map a class index to a class index") from None
            mapping[src] = dst
    else:
        raise DataError(f"noise.class_map must be a map name or a mapping, got {type(class_map).__name__}")
    for src, dst in mapping.items():
        if not (0 <= src < num_classes and 0 <= dst < num_classes) or src == dst:
            raise DataError(f"noise.class_map: {src} -> {dst} is invalid; classes must differ and lie in "
                             f"[0, {num_classes - 1}]")
    return name, mapping


def asymmetric_matrix(num_classes: int, rate: float, class_map: str | Mapping[Any, Any],
                      *, dataset: str = "") -> np.ndarray:
    """Class-conditional noise: ``src -> class_map[src]`` with probability ``rate``, other classes clean.

    Args:
        class_map: ``"cifar10"`` (9->1, 2->0, 4->7, 3<->5), ``"mnist"`` (2->7, 3->8, 5<->6, 7->1),
            ``"auto"`` (by ``dataset``) or a ``{src: dst}`` mapping.

    Returns:
        T [C, C] float64.
    """
    _check_num_classes(num_classes)
    rate = _check_rate(rate)
    _, mapping = resolve_class_map(class_map, num_classes=num_classes, dataset=dataset)
    if rate >= 0.5:
        logger.warning("asymmetric noise rate %.3f >= 0.5: mapped classes become indistinguishable", rate)
    t = np.eye(num_classes)
    for src, dst in mapping.items():
        t[src, src] = 1.0 - rate
        t[src, dst] = rate
    return t


def check_transition(t: Any, num_classes: int | None = None) -> np.ndarray:
    """Validate a row-stochastic matrix [C, C] (non-negative, rows sum to 1) and return it as float64."""
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or (num_classes is not None and t.shape[0] != num_classes):
        raise DataError(f"transition matrix must be square [C, C] (C={num_classes}), got shape {t.shape}")
    if not np.all(np.isfinite(t)) or t.min() < 0 or not np.allclose(t.sum(1), 1.0, atol=1e-6):
        raise DataError("transition matrix must be finite, non-negative, and each row must sum to 1; "
                         f"row sums are {np.round(t.sum(1), 6).tolist()}")
    return t


def _sample_rows(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of ``probs`` [N, C] by inverse CDF (vectorised ``rng.choice`` per row)."""
    u = rng.random(probs.shape[0])
    cum = np.cumsum(probs, axis=1)
    return np.minimum((u[:, None] >= cum).sum(1), probs.shape[1] - 1).astype(np.int64)


SAMPLINGS = ("exact", "random")


def apply_transition(labels: np.ndarray, t: np.ndarray, *, seed: int, sampling: str = "exact",
                     groups: np.ndarray | None = None) -> np.ndarray:
    """Noisy labels from the transition matrix ``T[i, j] = P(ỹ=j | y=i)``.

    ``sampling="exact"`` (default) gives every class exactly ``round(n_c * T[c, j])`` samples with noisy label
    ``j`` (largest-remainder rounding, so the ``n_c`` add up), assigned to a random permutation of the class's
    samples; with ``groups`` (e.g. the train / validation split of each sample) this holds inside every group.
    The realised matrix then equals ``T`` up to ``1/n_c``: on small data (sklearn digits has ~125 training
    images per class) independent draws give per-class rates several points off the nominal one -- at
    pair-45 some classes end up with more flipped labels than clean ones, which no method can undo. The
    count-based draw is also what DivideMix's reference data loader does (a fixed number of noisy samples).
    ``sampling="random"`` draws ``ỹ ~ T[y, :]`` independently per sample (Co-teaching's reference).

    Args:
        labels: clean labels [N] int.
        t: row-stochastic transition matrix [C, C].
        seed: the only source of randomness.
        sampling: ``"exact"`` or ``"random"``.
        groups: optional [N] ints; exact counts are kept per (group, class).

    Returns:
        noisy labels [N] int64.
    """
    t = check_transition(t)
    labels = check_labels(labels, t.shape[0])
    if sampling not in SAMPLINGS:
        raise DataError(f"noise.sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    rng = np.random.default_rng(seed)
    if sampling == "random":
        return _sample_rows(t[labels], rng)
    if groups is None:
        groups = np.zeros(labels.shape[0], dtype=np.int64)
    groups = np.asarray(groups)
    if groups.shape != labels.shape:
        raise DataError(f"noise groups {groups.shape} must match labels {labels.shape}")
    noisy = labels.astype(np.int64).copy()
    for g in np.unique(groups):
        for c in np.unique(labels[groups == g]):
            members = np.flatnonzero((groups == g) & (labels == c))
            counts = round_preserving_total(members.size * t[c], rng=rng)
            noisy[rng.permutation(members)] = np.repeat(np.arange(t.shape[0]), counts)
    return noisy


def instance_dependent_noise(features: np.ndarray, labels: np.ndarray, *, rate: float, num_classes: int,
                             seed: int, norm_std: float = IDN_NORM_STD) -> np.ndarray:
    """Instance-dependent noise of Xia et al. 2020 (https://arxiv.org/abs/2006.10994, Algorithm 2).

    Each sample gets a flip rate ``q_i ~ TruncNormal(rate, norm_std, [0, 1])``; one random projection
    ``W_y`` [D, C] per class turns the features into scores ``x_i W_{y_i}``; the clean class is masked and
    a softmax spreads ``q_i`` over the other classes, so ``P(ỹ_i = y_i) = 1 - q_i``. The mean flip rate
    is ``rate``.

    Args:
        features: [N, ...] float, flattened to [N, D] (e.g. normalised images).
        labels: clean labels [N] int.
        rate: mean flip rate in [0, 1].
        num_classes: C.
        seed: the only source of randomness.
        norm_std: std of the flip-rate distribution (0.1 in the paper).

    Returns:
        noisy labels [N] int64.
    """
    _check_num_classes(num_classes)
    rate = _check_rate(rate)
    labels = check_labels(labels, num_classes)
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if x.shape[0] != labels.shape[0]:
        raise DataError(f"features has {x.shape[0]} rows but labels has {labels.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise DataError("features must be finite for instance-dependent noise")
    if rate == 0.0:
        return labels.copy()
    rng = np.random.default_rng(seed)
    lo, hi = (0.0 - rate) / norm_std, (1.0 - rate) / norm_std
    flip = stats.truncnorm(lo, hi, loc=rate, scale=norm_std).rvs(size=labels.shape[0], random_state=rng)
    scores = np.empty((labels.shape[0], num_classes))
    for c in range(num_classes):  # W_c drawn class by class: C*D*C floats never held at once
        w = rng.standard_normal((x.shape[1], num_classes), dtype=np.float32)
        rows = labels == c
        scores[rows] = x[rows] @ w
    scores[np.arange(labels.shape[0]), labels] = -np.inf
    scores -= scores.max(1, keepdims=True)
    p = np.exp(scores)
    p *= (flip / p.sum(1))[:, None]
    p[np.arange(labels.shape[0]), labels] += 1.0 - flip
    return _sample_rows(p, rng)


def load_noisy_label_file(path: str, n: int, *, num_classes: int | None = None) -> np.ndarray:
    """Read noisy labels from ``.npy`` (1-D ints) or text (one integer per line, e.g. CIFAR-10N exports).

    Args:
        path: the file.
        n: the number of samples the labels must cover (the train source, in its order).
        num_classes: when given, labels must lie in [0, num_classes).

    Returns:
        labels [n] int64.

    Raises:
        ValueError: missing file, unparsable line, wrong length or out-of-range label.
    """
    if not path or not os.path.isfile(path):
        raise DataError(f"noise.file: {path!r} does not exist (kind=file needs a .npy or text file of labels)")
    if path.endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise DataError(f"noise.file {path}: expected a 1-D integer array, got shape {arr.shape} "
                             f"dtype {arr.dtype}")
    else:
        values = []
        for i, line in read_text_lines(path, what="noise.file"):
            try:
                values.append(int(line.strip()))
            except ValueError:
                raise DataError(f"noise.file {where(path, i)}: {line.strip()!r} is not an integer label; expected "
                                "one integer label per line") from None
        arr = np.asarray(values, dtype=np.int64)
    if arr.shape[0] != n:
        raise DataError(f"noise.file {path}: has {arr.shape[0]} labels but the training source has {n} "
                         "samples; the file must hold one label per sample, in source order")
    if num_classes is not None:
        check_labels(arr, num_classes, field=f"noise.file {path}")
    elif arr.size and arr.min() < 0:
        raise DataError(f"noise.file {path}: label {int(arr.min())} is out of range; labels must be >= 0")
    return arr.astype(np.int64)
