"""``build_data(cfg)``: source -> splits -> noise -> normalisation -> datasets.

Order of operations (each step depends only on the config and ``cfg.seed``):

1. The ``DATASETS`` source reads train (and, when it has them, val/test) samples.
2. Splits: a test split is carved from the train source when the source has none (``data.test_split``),
   then a validation split (``data.val_split``, a fraction of the whole train source) when there is no
   ``val_path``/``clean_val_path``; both stratified on the source labels with ``cfg.seed``. They do not
   depend on the noise, so runs at different noise rates share the same split.
3. ``data.subset`` keeps a stratified random sample of N training samples (source order preserved).
4. Normalisation: ``data.mean``/``data.std``, else the dataset's standard values, else statistics of the
   training split (at most 256 evenly spaced images for file-backed sources).
5. Noise (``data.noise``) is drawn over the whole train source in source order (so ``kind: file`` label
   files line up with it and a subset sees the same noisy labels as the full run); the train split keeps
   the noisy labels, the carved validation split keeps them when ``noise.apply_to_val`` (else the original
   labels), a separate ``val_path`` set is noised with seed ``noise_seed + 1``; test and trusted
   (``clean_val_path``) labels are never noised. The returned spec's realised rate/matrix describe the
   final train split.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from robust_paddle.data.datasets import ArrayDataset, RowView
from robust_paddle.data.imagecheck import decide_image_shape
from robust_paddle.data.label_sources import LabelSources, apply_label_override, apply_label_sources
from robust_paddle.data.noise import NoiseSpec, check_labels, inject_noise
from robust_paddle.data.sources import Source, Split
from robust_paddle.data.transforms import Pipeline, channel_stats, convert_images
from robust_paddle.errors import ConfigError, DataError
from robust_paddle.registry import DATASETS

logger = logging.getLogger(__name__)
STATS_MAX_FILES = 256  # images read to estimate mean/std of file-backed sources


@dataclasses.dataclass
class DataBundle:
    """Everything the trainer, methods and export need from the data.

    Attributes:
        train: noisy labels, train augmentation. train_eval: same samples/order/labels array, no augmentation.
        val, test: ArrayDataset or None. input_shape: one sample, e.g. (1, 8, 8), (3, 32, 32) or (64,).
        mean, std: per channel (per feature for tabular), applied after ``scale``.
        noise: the injected noise, or None. scale: multiplies raw values before mean/std (1/255 for 8-bit
        images). name: the ``DATASETS`` source. skipped: ``(path, reason)`` of the files left out by
        ``data.on_bad_sample: skip``. label_sources: what ``data.annotations`` / ``data.labels_override`` did
        (arrays over source rows; index them with ``train.source_rows``), or None.
    """

    train: ArrayDataset
    train_eval: ArrayDataset
    val: ArrayDataset | None
    test: ArrayDataset | None
    num_classes: int
    class_names: list[str]
    input_shape: tuple[int, ...]
    mean: list[float]
    std: list[float]
    noise: NoiseSpec | None
    scale: float = 1.0
    name: str = ""
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    label_sources: LabelSources | None = None
    tokenizer: Any = None  # text sources: the run's data.tokenize.TextTokenizer
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)  # text: vocab_size, pad_id, windows


def _split(idx: np.ndarray, labels: np.ndarray, n_out: int, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(kept, held_out)`` index arrays, each sorted; plain random when stratifying is impossible."""
    try:
        keep, out = train_test_split(idx, test_size=n_out, stratify=labels[idx], random_state=seed)
    except ValueError as e:
        logger.warning("%s split is not stratified (%s)", what, e)
        keep, out = train_test_split(idx, test_size=n_out, random_state=seed)
    return np.sort(keep), np.sort(out)


def _split_indices(src: Source, cfg_data, seed: int) -> dict[str, np.ndarray | None]:
    n = len(src.train.labels)
    idx, labels, rs = np.arange(n), src.train.labels, seed % 2**32
    out: dict[str, np.ndarray | None] = {"test": None, "val": None}
    for part, frac in (("test", cfg_data.test_split), ("val", cfg_data.val_split)):
        if getattr(src, part) is not None or frac <= 0:
            continue
        k = int(round(frac * n))
        if k < 1 or k >= len(idx):
            raise DataError(f"data.{part}_split={frac} leaves {k} of {len(idx)} samples for {part}; "
                             f"choose a fraction giving between 1 and {len(idx) - 1} samples, or 0")
        idx, out[part] = _split(idx, labels, k, rs, part)
    if cfg_data.subset and cfg_data.subset < len(idx):
        idx, _ = _split(idx, labels, len(idx) - cfg_data.subset, rs, "subset")
    elif cfg_data.subset:
        logger.warning("data.subset=%d >= %d training samples: keeping all", cfg_data.subset, len(idx))
    out["train"] = idx
    return out


def _split_groups(idx: dict[str, np.ndarray | None], n: int) -> np.ndarray:
    """The split of every source sample (train and samples left out by ``data.subset`` 0, val 1, test 2), so
    that exact noise sampling gives each split the nominal per-class rate. A subset shares group 0 with the
    samples it leaves out: it keeps the noisy labels of the full run (its own rate is then close to, not
    exactly, the nominal one)."""
    groups = np.zeros(n, dtype=np.int64)
    for g, part in ((1, "val"), (2, "test")):
        if idx.get(part) is not None:
            groups[idx[part]] = g
    return groups


def _prepare_images(src: Source, d) -> tuple[int, tuple[int, ...], list[tuple[str, str]]]:
    """Convert in-memory images once (channels, size), or decide channels and size of image files from the
    data (``imagecheck.decide_image_shape``; with ``on_bad_sample: skip`` the unreadable files are removed
    from every split here). Returns (channels, input_shape, skipped ``(path, reason)``). Texts: (0, (L,), [])."""
    if src.kind == "text":
        if d.image_size or d.channels:
            raise ConfigError("data.image_size/data.channels apply to images; this source holds texts; set them to 0")
        return 0, (int(d.text.max_length),), []
    if src.kind == "tabular":
        if d.image_size or d.channels:
            raise DataError("data.image_size/data.channels apply to images; this npz source is tabular "
                             "(x is [N, D]); set them to 0")
        return 0, (int(src.train.data.shape[1]),), []
    if d.eval_resize_short and not d.image_size:
        raise ConfigError(f"data.eval_resize_short={d.eval_resize_short} needs data.image_size (the centre crop's side)")
    if d.eval_resize_short and d.eval_resize_short < d.image_size:
        raise ConfigError(f"data.eval_resize_short={d.eval_resize_short} must be >= data.image_size={d.image_size}")
    if isinstance(src.train.data, np.ndarray):
        for split in (src.train, src.val, src.test):
            if split is not None:
                split.data = convert_images(split.data, channels=d.channels, size=d.image_size,
                                            resize_short=d.eval_resize_short)
        _, h, w, c = src.train.data.shape
        return c, (c, h, w), []
    splits = {part: getattr(src, part) for part in ("train", "val", "test") if getattr(src, part) is not None}
    shape = decide_image_shape({part: list(s.data) for part, s in splits.items()}, channels=d.channels,
                               image_size=d.image_size, on_bad_sample=d.on_bad_sample)
    if shape.skipped:
        bad = {p for p, _ in shape.skipped}
        for split in splits.values():
            keep = np.asarray([p not in bad for p in split.data], dtype=bool)
            split.rows = np.flatnonzero(keep).astype(np.int64)  # source rows stay those of the files
            split.data = [p for p, k in zip(split.data, keep) if k]
            split.labels = split.labels[keep]
            for field in ("clean_labels", "ids", "lines"):  # every per-sample array of the split
                if getattr(split, field, None) is not None:
                    setattr(split, field, np.asarray(getattr(split, field))[keep])
    return shape.channels, (shape.channels, shape.height, shape.width), shape.skipped


def _stats(src: Source, d, train_idx: np.ndarray, pipe: Pipeline, width: int) -> tuple[list[float], list[float]]:
    if (d.mean is None) != (d.std is None):
        raise DataError("set both data.mean and data.std, or neither")
    if src.kind == "text":
        if d.mean is not None or d.std is not None:
            raise ConfigError("data.mean/data.std apply to images and features; this source holds texts; leave them unset")
        return [], []
    if d.mean is not None:
        if len(d.mean) != width or len(d.std) != width:
            raise DataError(f"data.mean/data.std need {width} values (one per {'feature' if src.kind == 'tabular' else 'channel'}), "
                             f"got {len(d.mean)} and {len(d.std)}")
        return list(d.mean), list(d.std)
    if src.mean is not None and len(src.mean) == width:
        return list(src.mean), list(src.std)
    data = src.train.data
    if isinstance(data, np.ndarray):
        chunks = (data[train_idx[i:i + 4096]].astype(np.float64) * src.scale for i in range(0, len(train_idx), 4096))
        return channel_stats(chunks)
    pick = train_idx[np.linspace(0, len(train_idx) - 1, min(STATS_MAX_FILES, len(train_idx))).astype(int)]
    return channel_stats(pipe.raw(data[i])[None] for i in pick)


def _rows(data, idx):
    """Rows ``idx`` of a split's samples: a list of paths, an in-memory copy, or a view of a memory map."""
    if idx is None:
        return data
    if isinstance(data, np.memmap):
        return RowView(data, idx)
    if isinstance(data, RowView):
        return data[idx]
    return data[idx] if isinstance(data, np.ndarray) else [data[i] for i in idx]


def _dataset(split: Split, idx, labels, clean, num_classes, pipe, names) -> ArrayDataset:
    """The samples ``idx`` of ``split`` (all when None); each keeps its source row (and id) for the outputs."""
    data = _rows(split.data, idx)
    take = (lambda a: a) if idx is None else (lambda a: a[idx])
    rows = split.rows if split.rows is not None else np.arange(len(split.labels), dtype=np.int64)
    return ArrayDataset(data, take(labels), num_classes=num_classes, pipeline=pipe,
                        clean_labels=None if clean is None else take(clean), class_names=names,
                        source_rows=take(rows), ids=None if split.ids is None else take(split.ids))


def _features(split: Split, num_classes: int, pipe: Pipeline) -> np.ndarray:
    return ArrayDataset(split.data, split.labels, num_classes=num_classes, pipeline=pipe).features()


def _augment_spec(value):
    """Config value (preset name or list of op mappings) -> a hashable spec for :class:`Pipeline`."""
    from robust_paddle.data.augment import parse_augment

    return value if isinstance(value, str) else parse_augment(value)


def _text_pipeline(src: Source, d, train_idx: np.ndarray, seed: int, run_dir: str | None, model=None):
    from robust_paddle.data.text_pipeline import TextPipeline, build_eda, run_tokenizer, text_model_kwargs

    tok = run_tokenizer(d.text, src.train.data[train_idx], run_dir=run_dir, model=model)
    eda = build_eda(d.text) if d.augment == "eda" else None
    return TextPipeline(tok, eda=eda, seed=seed), text_model_kwargs(tok, d.text)


def build_data(cfg, *, run_dir: str | None = None) -> DataBundle:
    """Build the datasets described by ``cfg.data`` (a ``robust_paddle.config.Config``) with ``cfg.seed``.

    ``run_dir``: the run folder; a text source reloads ``<run_dir>/tokenizer.json`` when it is there, else it
    fits the tokenizer on the training split (the caller saves ``bundle.tokenizer``).

    Returns:
        DataBundle; ``train.labels`` are noisy, ``train.clean_labels`` the labels before injection (or the
        source's clean labels), None when neither is known.
    """
    d, seed = cfg.data, int(cfg.seed)
    try:
        reader = DATASETS.get(d.name)
    except ValueError as e:
        raise DataError(f"data.name: {e}") from None
    src: Source = reader(d)
    num_classes, names = len(src.class_names), list(src.class_names)
    for part in ("train", "val", "test"):
        split = getattr(src, part)
        if split is not None:
            check_labels(split.labels, num_classes, field=f"{part} labels of dataset '{d.name}'")
    channels, input_shape, skipped = _prepare_images(src, d)
    idx = _split_indices(src, d, seed)
    label_sources = apply_label_sources(src, d, seed=seed)  # after the splits: they follow the file's labels
    model_kwargs: dict[str, Any] = {}
    if src.kind == "text":
        base, model_kwargs = _text_pipeline(src, d, idx["train"], seed, run_dir, model=getattr(cfg, "model", None))
        mean, std = _stats(src, d, idx["train"], base, 0)
    else:
        if d.augment == "eda":
            raise ConfigError("data.augment: eda augments texts; this source holds images or features")
        width = input_shape[0]
        base = Pipeline(src.kind, (0.0,) * width, (1.0,) * width, scale=src.scale, seed=seed,
                        channels=channels or 3, size=d.image_size if src.kind == "image" else 0,
                        shape_hw=tuple(input_shape[1:]) if src.kind == "image" and not d.image_size else (0, 0),
                        resize_short=d.eval_resize_short if src.kind == "image" else 0,
                        strong_augment=_augment_spec(d.strong_augment) if src.kind == "image" else "none")
        mean, std = _stats(src, d, idx["train"], base, width)
        base = dataclasses.replace(base, mean=tuple(mean), std=tuple(std))

    observed = src.train.labels
    noisy, clean, spec = observed, src.train.clean_labels, None
    nz = d.noise
    if nz.kind == "instance" and src.kind == "text":
        raise ConfigError("data.noise.kind: instance noise needs numeric features; texts have none (use symmetric, "
                         "pair, asymmetric or file)")
    if nz.kind != "none":
        feats = _features(src.train, num_classes, base) if nz.kind == "instance" else None
        noisy, spec = inject_noise(observed, nz, num_classes=num_classes, seed=seed, features=feats, dataset=src.name,
                                   groups=_split_groups(idx, len(observed)))
        clean = observed if clean is None else clean
    noisy, label_sources = apply_label_override(noisy, src, d, label_sources)

    train = _dataset(src.train, idx["train"], noisy, clean, num_classes, base.with_augment(_augment_spec(d.augment)),
                     names)
    if len(train):
        train.get_x(0)  # an augmentation the data cannot take (e.g. colour ops on float pixels) fails here
    train_eval = train.with_pipeline(base)
    val = None
    if idx["val"] is not None:
        val = _dataset(src.train, idx["val"], noisy if nz.apply_to_val else observed, clean, num_classes, base, names)
    elif src.val is not None:
        v_labels = src.val.labels
        if spec is not None and nz.apply_to_val and not src.val_trusted and nz.kind != "file":
            v_feats = _features(src.val, num_classes, base) if nz.kind == "instance" else None
            v_noise = dataclasses.replace(nz, seed=spec.seed + 1)
            v_labels, _ = inject_noise(src.val.labels, v_noise, num_classes=num_classes, features=v_feats,
                                       dataset=src.name)
        v_clean = src.val.clean_labels if src.val.clean_labels is not None or spec is None else src.val.labels
        val = _dataset(src.val, None, v_labels, v_clean, num_classes, base, names)
    test = None
    if idx["test"] is not None:
        best = clean if clean is not None else observed
        test = _dataset(src.train, idx["test"], best, clean, num_classes, base, names)
    elif src.test is not None:
        best = src.test.clean_labels if src.test.clean_labels is not None else src.test.labels
        test = _dataset(src.test, None, best, src.test.clean_labels, num_classes, base, names)
    if spec is not None:
        spec = spec.with_realised(train.clean_labels, train.labels)
    logger.info("data %s: train %d, val %s, test %s, classes %d, input %s%s", src.name, len(train),
                len(val) if val is not None else "-", len(test) if test is not None else "-", num_classes,
                input_shape, f", noise {spec.kind} realised {spec.realised_rate:.3f}" if spec else "")
    return DataBundle(train=train, train_eval=train_eval, val=val, test=test, num_classes=num_classes,
                      class_names=names, input_shape=tuple(int(s) for s in input_shape), mean=mean, std=std,
                      noise=spec, scale=src.scale, name=src.name, skipped=skipped,
                      label_sources=label_sources, tokenizer=getattr(base, "tokenizer", None),
                      model_kwargs=model_kwargs)
