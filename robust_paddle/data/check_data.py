"""``robust-paddle check-data -c CFG [--out DIR]``: read every sample of every split before any training and
report what would hurt it.

``data_report.json`` (and a printed summary) holds: samples per class and split, the imbalance ratio (largest
/ smallest training class), image sizes, Pillow modes and channels, unreadable files with their reason,
exact duplicates (same content hash: file bytes, or array row bytes) within the data and across splits
(train/val/test leakage), duplicates whose labels disagree, labels out of range and the other label problems
of :mod:`robust_paddle.data.labels`, NaN/Inf features, the channel/size decision of
:mod:`robust_paddle.data.imagecheck`, and the realised noise rate when clean labels are known (the source's,
or those of the configured ``data.noise`` injection).

Files are read on a thread pool (Pillow releases the GIL while decoding): each is read once, hashed (BLAKE2b,
128 bits) and fully decoded (``Image.load``, no conversion), so unreadable and truncated files are found.
``train`` runs the cheap part (headers, labels, features) on every run (``build_data``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from robust_paddle.data.build import _split_groups, _split_indices
from robust_paddle.data.decode import DECODE_ERRORS, failure_reason, mode_channels
from robust_paddle.data.imagecheck import default_threads
from robust_paddle.data.labels import collect_label_problems, describe
from robust_paddle.errors import ConfigError, DataError
from robust_paddle.ops import atomic_write
from robust_paddle.registry import DATASETS

logger = logging.getLogger(__name__)

REPORT_FILE = "data_report.json"
LIST_MAX = 50  # examples kept per list in the report
FULL_COUNTS_MAX = 1000  # classes listed with zero counts too


@dataclasses.dataclass
class FileFacts:
    """One file as read: content hash, Pillow mode, width/height, or the reason it cannot be read."""

    path: str
    digest: str = ""
    mode: str = ""
    width: int = 0
    height: int = 0
    error: str = ""


def read_file_facts(path: str) -> FileFacts:
    """Read, hash and fully decode one image file (no conversion); never raises for a bad file."""
    try:
        with open(path, "rb") as fh:
            blob = fh.read()
    except OSError as e:
        return FileFacts(path, error=f"{path}: cannot read image: {failure_reason(e)}")
    digest = hashlib.blake2b(blob, digest_size=16).hexdigest()
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            return FileFacts(path, digest, im.mode, int(im.size[0]), int(im.size[1]))
    except DECODE_ERRORS as e:
        return FileFacts(path, digest, error=f"{path}: cannot read image: {failure_reason(e)}")


def scan_files(paths: Sequence[str], *, progress: bool = True, desc: str = "files",
               threads: int | None = None) -> list[FileFacts]:
    """:func:`read_file_facts` of every path on a thread pool, in order, with a tqdm bar."""
    from tqdm import tqdm

    with ThreadPoolExecutor(threads or default_threads()) as pool, \
            tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        out = []
        for facts in pool.map(read_file_facts, paths, chunksize=32):
            out.append(facts)
            bar.update()
    return out


def _row_digests(x: np.ndarray) -> list[str]:
    flat = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in flat]


def _counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    valid = labels[(labels >= 0) & (labels < len(names))]
    counts = np.bincount(valid, minlength=len(names)) if len(names) else np.zeros(0, np.int64)
    full = len(names) <= FULL_COUNTS_MAX  # beyond that (a stray huge label) only the classes that occur
    return {names[i]: int(c) for i, c in enumerate(counts) if full or c}


def _duplicates(samples: dict[str, list[tuple[str, str, int]]]) -> dict:
    """``samples[split]`` = [(digest, where, label)] -> exact duplicates, leakage across splits, label conflicts."""
    groups: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for part, rows in samples.items():
        for digest, where, label in rows:
            if digest:
                groups[digest].append((part, where, label))
    dup = [g for g in groups.values() if len(g) > 1]
    leak = [g for g in dup if len({p for p, _, _ in g}) > 1]  # the same sample in two splits (leakage)
    conflict = [g for g in dup if len({lbl for _, _, lbl in g}) > 1]

    def show(gs):
        return [[{"split": p, "sample": w, "label": int(lbl)} for p, w, lbl in g] for g in gs[:LIST_MAX]]

    return {"exact_duplicate_groups": len(dup), "duplicate_samples": int(sum(len(g) - 1 for g in dup)),
            "cross_split_groups": len(leak), "label_conflict_groups": len(conflict),
            "examples": show(dup), "cross_split_examples": show(leak), "label_conflict_examples": show(conflict)}


def _parts(src, idx) -> dict:
    """``{split: (Split, indices into it)}``: carved val/test come from the train source."""
    out = {"train": (src.train, idx["train"])}
    for part in ("val", "test"):
        if idx.get(part) is not None:
            out[part] = (src.train, idx[part])
        elif getattr(src, part) is not None:
            out[part] = (getattr(src, part), np.arange(len(getattr(src, part).labels)))
    return out


def check_data(cfg, *, out_dir: str | None = None, progress: bool = True) -> dict:
    """Read every sample of every split of ``cfg.data`` and write ``<out_dir>/data_report.json``.

    Args:
        cfg: a ``robust_paddle.config.Config``. out_dir: the report's folder (default ``cfg.output_dir``).

    Returns:
        The report; ``report["problems"]`` lists the one-line problems that stop ``train``.

    Raises:
        DataError / ConfigError: the source cannot be read at all (missing file, unreadable list ...).
    """
    d, seed = cfg.data, int(cfg.seed)
    try:
        reader = DATASETS.get(d.name)
    except ValueError as e:
        raise ConfigError(f"data.name: {e}") from None
    with collect_label_problems() as problems:  # label and feature problems are reported, not raised
        src = reader(d)
    names = list(src.class_names)
    try:
        idx = _split_indices(src, d, seed)
    except ValueError as e:
        problems.append(str(e))
        idx = {"train": np.arange(len(src.train.labels)), "val": None, "test": None}
    parts = _parts(src, idx)
    report: dict = {"dataset": d.name, "kind": src.kind, "num_classes": len(names), "class_names": names[:1000],
                    "splits": {}, "problems": problems}
    samples: dict[str, list[tuple[str, str, int]]] = {}
    unreadable: list[dict] = []
    sizes: Counter = Counter()
    modes: Counter = Counter()
    for part, (split, rows) in parts.items():
        labels = split.labels[rows]
        entry = {"samples": int(rows.size), "per_class": _counts(labels, names)}
        if isinstance(split.data, list):
            facts = scan_files([split.data[i] for i in rows], progress=progress, desc=f"check-data {part}")
            for f in facts:
                if f.error:
                    unreadable.append({"split": part, "path": f.path, "reason": f.error})
                else:
                    sizes[f"{f.width}x{f.height}"] += 1
                    modes[f.mode] += 1
            where = [f.path for f in facts]
            digests = [f.digest if not f.error else "" for f in facts]
            entry["unreadable"] = sum(1 for f in facts if f.error)
        else:
            x = split.data[rows]  # NaN/Inf features were reported while the source was read
            where = [describe(split, int(i)) for i in rows]
            digests = _row_digests(x) if x.size else []
            if src.kind == "image":
                sizes[f"{x.shape[2]}x{x.shape[1]}"] += int(rows.size)
                modes[f"array {x.dtype} C={x.shape[3]}"] += int(rows.size)
        samples[part] = list(zip(digests, where, labels.tolist()))
        clean = split.clean_labels[rows] if split.clean_labels is not None else None
        if clean is not None:
            entry["realised_noise_rate"] = float(np.mean(labels != clean)) if labels.size else 0.0
        report["splits"][part] = entry
    train_counts = [c for c in report["splits"]["train"]["per_class"].values()]
    nonzero = [c for c in train_counts if c > 0]
    report["imbalance_ratio"] = float(max(nonzero) / min(nonzero)) if nonzero else None
    report["empty_classes"] = [n for n, c in report["splits"]["train"]["per_class"].items() if c == 0][:LIST_MAX]
    report["unreadable"] = unreadable[:LIST_MAX * 20]
    report["unreadable_count"] = len(unreadable)
    if unreadable and d.on_bad_sample == "error":
        problems.append(f"{len(unreadable)} unreadable file(s), e.g. {unreadable[0]['reason']}; fix or remove them, "
                        "or set data.on_bad_sample: skip")
    report["image_sizes"] = dict(sizes.most_common(LIST_MAX))
    report["modes"] = dict(modes.most_common())
    if src.kind == "image":
        _image_decision(report, modes, sizes, d, problems, is_files=isinstance(src.train.data, list))
    report["duplicates"] = _duplicates(samples)
    _noise(report, src, idx, d, seed, len(names), problems)
    out_dir = out_dir or cfg.output_dir
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, REPORT_FILE)
    with atomic_write(path) as fh:
        json.dump(report, fh, indent=2, ensure_ascii=False)
    report["path"] = path
    return report


def _image_decision(report: dict, modes: Counter, sizes: Counter, d, problems: list[str], *, is_files: bool) -> None:
    if is_files:
        by_channels = Counter()
        for mode, n in modes.items():
            by_channels[mode_channels(mode)] += n
        report["channels_seen"] = {str(k): int(v) for k, v in sorted(by_channels.items())}
        channels = d.channels or (1 if by_channels[1] > by_channels[3] else 3)
    else:
        channels = d.channels or None
    report["channels"] = channels
    if len(sizes) > 1 and not d.image_size:
        problems.append(f"images have {len(sizes)} different sizes (width x height): "
                        f"{', '.join(list(sizes)[:10])}; set data.image_size")
    report["input_size"] = ([d.image_size, d.image_size] if d.image_size
                            else [int(v) for v in next(iter(sizes)).split("x")][::-1] if len(sizes) == 1 else None)


def _noise(report: dict, src, idx, d, seed: int, num_classes: int, problems: list[str]) -> None:
    if d.noise.kind == "none" or problems:
        return
    from robust_paddle.data.noise import inject_noise

    observed = src.train.labels
    try:
        noisy, spec = inject_noise(observed, d.noise, num_classes=num_classes, seed=seed, dataset=src.name,
                                   groups=_split_groups(idx, len(observed)))
    except (DataError, ValueError) as e:
        problems.append(f"data.noise: {e}")
        return
    train = idx["train"]
    report["injected_noise"] = {"kind": d.noise.kind, "rate": d.noise.rate,
                                "realised_rate_train": float(np.mean(noisy[train] != observed[train]))}


def format_summary(report: dict) -> str:
    """The printed summary of a report (a few aligned lines)."""
    lines = [f"dataset {report['dataset']} ({report['kind']}), {report['num_classes']} classes"]
    for part, e in report["splits"].items():
        counts = list(e["per_class"].values())
        extra = f", unreadable {e['unreadable']}" if e.get("unreadable") else ""
        noise = f", realised noise {e['realised_noise_rate']:.3f}" if "realised_noise_rate" in e else ""
        lines.append(f"  {part:<5} {e['samples']:>8} samples, per class min {min(counts) if counts else 0} "
                     f"max {max(counts) if counts else 0}{extra}{noise}")
    if report.get("imbalance_ratio") is not None:
        lines.append(f"  imbalance ratio (largest / smallest training class): {report['imbalance_ratio']:.2f}")
    if report.get("image_sizes"):
        lines.append(f"  image sizes (WxH): {', '.join(f'{k} x{v}' for k, v in list(report['image_sizes'].items())[:5])}")
        lines.append(f"  modes: {', '.join(f'{k} x{v}' for k, v in report['modes'].items())}; "
                     f"channels used: {report.get('channels')}")
    dup = report["duplicates"]
    lines.append(f"  exact duplicates: {dup['duplicate_samples']} samples in {dup['exact_duplicate_groups']} groups; "
                 f"across splits: {dup['cross_split_groups']} groups; conflicting labels: {dup['label_conflict_groups']}")
    if "injected_noise" in report:
        n = report["injected_noise"]
        lines.append(f"  data.noise {n['kind']} {n['rate']}: realised {n['realised_rate_train']:.3f} on train")
    lines.append(f"  problems that stop training: {len(report['problems'])}")
    lines += [f"    - {p}" for p in report["problems"][:10]]
    return "\n".join(lines)
