"""Label noise: the ``NOISES`` kinds, :class:`NoiseSpec`, ``inject_noise`` and ``save_noise``.

The generators live in ``noise_gen.py`` and are re-exported here. Every kind accepts any rate in [0, 1];
rates beyond the identifiable range only log a warning (see ``noise_gen``). The same seed always gives
the same labels.

References:
    Symmetric / pair ("pairflip") noise: Han et al. 2018, Co-teaching, https://arxiv.org/abs/1804.06872
    Asymmetric class maps: Patrini et al. 2017, https://arxiv.org/abs/1609.03683
    Instance-dependent noise: Xia et al. 2020, https://arxiv.org/abs/2006.10994
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

import numpy as np

from robust_paddle.data.noise_gen import (  # noqa: F401  (re-exported public API)
    AUTO_CLASS_MAPS,
    CLASS_MAPS,
    IDN_NORM_STD,
    _check_num_classes,
    _check_rate,
    apply_transition,
    asymmetric_matrix,
    check_labels,
    check_transition,
    instance_dependent_noise,
    load_noisy_label_file,
    pair_matrix,
    resolve_class_map,
    symmetric_matrix,
)
from robust_paddle.errors import DataError
from robust_paddle.ops import atomic_write
from robust_paddle.registry import NOISES

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ registered noise kinds
# Each kind: (labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups)
#   -> (noisy, T or None); ``sampling``/``groups`` matter to the transition-matrix kinds (see apply_transition)
@NOISES.register("none")
def _none(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    return labels.copy(), np.eye(num_classes)


@NOISES.register("symmetric")
def _symmetric(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    t = symmetric_matrix(num_classes, rate)
    return apply_transition(labels, t, seed=seed, sampling=sampling, groups=groups), t


@NOISES.register("pair")
def _pair(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    t = pair_matrix(num_classes, rate)
    return apply_transition(labels, t, seed=seed, sampling=sampling, groups=groups), t


@NOISES.register("asymmetric")
def _asymmetric(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    t = asymmetric_matrix(num_classes, rate, class_map, dataset=dataset)
    return apply_transition(labels, t, seed=seed, sampling=sampling, groups=groups), t


@NOISES.register("instance")
def _instance(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    if features is None:
        raise DataError("noise.kind='instance' needs the sample features (pass features=[N, ...])")
    return instance_dependent_noise(features, labels, rate=rate, num_classes=num_classes, seed=seed), None


@NOISES.register("file")
def _file(labels, *, num_classes, rate, seed, class_map, file, features, dataset, sampling, groups):
    return load_noisy_label_file(file, labels.shape[0], num_classes=num_classes), None


# ------------------------------------------------------------------------------------------ NoiseSpec
Matrix = tuple[tuple[float, ...], ...]


def _as_matrix(m: np.ndarray | None) -> Matrix | None:
    return None if m is None else tuple(tuple(float(v) for v in row) for row in np.asarray(m))


def realised_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Empirical ``P(ỹ=j | y=i)`` [C, C]; a class with no samples gets an all-zero row."""
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(clean, np.int64), np.asarray(noisy, np.int64)), 1.0)
    totals = counts.sum(1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """Everything needed to rebuild and audit injected noise.

    Attributes:
        kind: a ``NOISES`` name. rate: nominal rate. seed: the seed used.
        class_map: resolved ``(src, dst)`` pairs (asymmetric); class_map_name: ``cifar10``/``mnist``/``custom``.
        file: kind=file source. transition: nominal T [C, C] (None for ``instance``/``file``).
        sampling: ``exact`` (per-class counts) or ``random`` (independent draws); see ``apply_transition``.
        realised_rate: fraction of labels that differ from the clean ones.
        realised_matrix: empirical T [C, C] (None while clean labels are unknown).
    """

    kind: str
    rate: float
    seed: int
    num_classes: int
    class_map: tuple[tuple[int, int], ...] = ()
    class_map_name: str = ""
    file: str = ""
    transition: Matrix | None = None
    realised_rate: float | None = None
    realised_matrix: Matrix | None = None
    num_samples: int = 0
    sampling: str = "exact"

    @property
    def transition_matrix(self) -> np.ndarray | None:
        return None if self.transition is None else np.asarray(self.transition)

    def with_realised(self, clean: np.ndarray, noisy: np.ndarray) -> NoiseSpec:
        """A copy whose realised rate/matrix are measured on ``clean`` vs ``noisy`` (e.g. the train split)."""
        clean, noisy = np.asarray(clean), np.asarray(noisy)
        if clean.shape != noisy.shape:
            raise DataError(f"clean labels {clean.shape} and noisy labels {noisy.shape} differ in shape")
        rate = float(np.mean(clean != noisy)) if clean.size else 0.0
        return dataclasses.replace(self, realised_rate=rate, num_samples=int(clean.size),
                                   realised_matrix=_as_matrix(realised_matrix(clean, noisy, self.num_classes)))

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["class_map"] = {str(s): t for s, t in self.class_map}
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> NoiseSpec:
        d = json.loads(text)
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise DataError(f"noise spec: unknown key(s) {', '.join(unknown)}")
        d["class_map"] = tuple(sorted((int(s), int(t)) for s, t in (d.get("class_map") or {}).items()))
        d.setdefault("sampling", "random")  # specs written before the field existed were drawn per sample
        for key in ("transition", "realised_matrix"):
            if d.get(key) is not None:
                d[key] = _as_matrix(np.asarray(d[key], dtype=np.float64))
        return cls(**d)


def inject_noise(labels: np.ndarray, noise: Any, *, num_classes: int, seed: int | None = None,
                 features: np.ndarray | None = None, dataset: str = "",
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, NoiseSpec]:
    """Corrupt ``labels`` as described by a ``NoiseConfig`` or rebuild them from a ``NoiseSpec``.

    Args:
        labels: clean labels [N] int.
        noise: ``robust_paddle.config.NoiseConfig`` (or any object with ``kind, rate, seed, class_map,
            file, sampling``) or a saved :class:`NoiseSpec` (gives identical labels with the same ``groups``).
        num_classes: C.
        seed: used when ``noise.seed`` is None (the run's seed).
        features: [N, ...] sample features, needed by ``kind='instance'``.
        dataset: dataset name, used by ``class_map='auto'``.
        groups: optional [N] group of each sample (e.g. its split); ``sampling='exact'`` keeps the per-class
            counts exact inside each group.

    Returns:
        ``(noisy [N] int64, spec)`` with the spec's realised rate/matrix measured against ``labels``.
    """
    _check_num_classes(num_classes)
    labels = check_labels(labels, num_classes)
    if isinstance(noise, NoiseSpec):
        if noise.num_classes != num_classes:
            raise DataError(f"noise spec is for {noise.num_classes} classes, data has {num_classes}")
        class_map: Any = {s: t for s, t in noise.class_map} if noise.class_map else "auto"
        eff_seed = noise.seed
    else:
        class_map = noise.class_map
        eff_seed = noise.seed if noise.seed is not None else seed
    if eff_seed is None:
        raise DataError("inject_noise: no seed; set noise.seed or pass seed=")
    if isinstance(eff_seed, bool) or not isinstance(eff_seed, (int, np.integer)) or eff_seed < 0:
        raise DataError(f"noise.seed (or the run seed) must be an int >= 0, got {eff_seed!r}")
    kind, rate = noise.kind, _check_rate(noise.rate)
    fn = NOISES.get(kind)
    pairs: tuple[tuple[int, int], ...] = ()
    map_name = ""
    if kind == "asymmetric":
        map_name, mapping = resolve_class_map(class_map, num_classes=num_classes, dataset=dataset)
        pairs, class_map = tuple(sorted(mapping.items())), mapping
        if isinstance(noise, NoiseSpec):
            map_name = noise.class_map_name or map_name
    sampling = getattr(noise, "sampling", "exact")
    noisy, t = fn(labels, num_classes=num_classes, rate=rate, seed=int(eff_seed), class_map=class_map,
                  file=noise.file, features=features, dataset=dataset, sampling=sampling, groups=groups)
    spec = NoiseSpec(kind=kind, rate=rate, seed=int(eff_seed), num_classes=num_classes, class_map=pairs,
                     class_map_name=map_name, file=noise.file if kind == "file" else "",
                     transition=_as_matrix(t), sampling=sampling).with_realised(labels, noisy)
    logger.info("noise %s rate=%.3f seed=%d: realised rate %.4f over %d labels", kind, rate, eff_seed,
                spec.realised_rate, labels.size)
    return noisy, spec


def save_noise(spec: NoiseSpec, out_dir: str) -> None:
    """Write ``noise.json`` (the spec). The labels themselves go to ``train_labels.npy``
    (:func:`robust_paddle.data.identity.save_train_labels`, written by every run)."""
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(os.path.join(out_dir, "noise.json")) as fh:
        fh.write(spec.to_json())
