"""Datasets returning ``(x, label, index)``, epoch-seeded loaders and label-noise injection.

Importing this package registers the ``DATASETS`` sources and the ``NOISES`` kinds.
"""

from robust_paddle.data import sources, text  # noqa: F401  (registers DATASETS)
from robust_paddle.data.build import DataBundle, build_data
from robust_paddle.data.datasets import ArrayDataset, EpochBatchSampler, build_loader
from robust_paddle.data.noise import (
    CLASS_MAPS,
    NoiseSpec,
    apply_transition,
    asymmetric_matrix,
    inject_noise,
    instance_dependent_noise,
    load_noisy_label_file,
    pair_matrix,
    realised_matrix,
    save_noise,
    symmetric_matrix,
)
from robust_paddle.data.transforms import Pipeline

__all__ = [
    "CLASS_MAPS",
    "ArrayDataset",
    "DataBundle",
    "EpochBatchSampler",
    "NoiseSpec",
    "Pipeline",
    "apply_transition",
    "asymmetric_matrix",
    "build_data",
    "build_loader",
    "inject_noise",
    "instance_dependent_noise",
    "load_noisy_label_file",
    "pair_matrix",
    "realised_matrix",
    "save_noise",
    "symmetric_matrix",
]
