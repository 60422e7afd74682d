"""Channels and input size of image-path datasets decided from the data, and bad files found before training.

Rules (``build_data`` applies them to every path-backed source):

- **Headers probed**: every file of every split when a split has at most :data:`PROBE_MAX_FILES` files, else
  that many evenly spaced ones (``check-data`` and ``data.on_bad_sample: skip`` read every file). Probing
  reads only the header (mode, size), about 20x cheaper than decoding.
- **Channels** (``data.channels: 0``): the majority of the probed *training* files, 1 for grey modes
  (``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``), 3 otherwise; a tie gives 3. A warning lists the files that
  disagree (they are converted by the decoder's channel rule). ``data.channels`` 1 or 3 overrides.
- **Size** (``data.image_size: 0``): every probed file of every split must have the same width x height;
  otherwise one error names the sizes seen and ``data.image_size``. Files outside the sample are checked as
  they are decoded (:class:`~robust_paddle.data.transforms.Pipeline` ``shape_hw``).
- **Unreadable files** (``data.on_bad_sample``): ``error`` stops at the first probed file that cannot be read,
  naming it and the reason; ``skip`` fully decodes every file first (threads), leaves the bad ones out of every
  split and returns them, so the run can write ``skipped_files.txt``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from robust_paddle.data.decode import ImageInfo, decode_image, probe_image
from robust_paddle.errors import DataError
from robust_paddle.ops import atomic_write

logger = logging.getLogger(__name__)

PROBE_MAX_FILES = 20_000  # headers probed per split (evenly spaced) when a split is larger
LIST_MAX = 10  # file names listed in one warning or error


@dataclasses.dataclass
class ImageShape:
    """The decision: ``channels`` (1 or 3) and ``(height, width)``; ``skipped``: ``(path, reason)`` of the
    files left out (``on_bad_sample: skip``)."""

    channels: int
    height: int
    width: int
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def _sample(paths: Sequence[str], limit: int) -> list[int]:
    n = len(paths)
    if n <= limit:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).astype(int).tolist()))


def _listed(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:LIST_MAX])
    return shown + (f" and {len(paths) - LIST_MAX} more" if len(paths) > LIST_MAX else "")


def default_threads() -> int:
    """Threads for reading files: the CPUs this process may use, at most 16."""
    return max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def probe_all(paths: Sequence[str], *, threads: int | None = None) -> list[ImageInfo | DataError]:
    """:func:`~robust_paddle.data.decode.probe_image` of every path (threaded); failures returned, not raised."""
    def one(p: str) -> ImageInfo | DataError:
        try:
            return probe_image(p)
        except DataError as e:
            return e

    with ThreadPoolExecutor(threads or default_threads()) as pool:
        return list(pool.map(one, paths, chunksize=64))


def verify_all(paths: Sequence[str], *, threads: int | None = None) -> list[str | None]:
    """Fully decode every path (threaded): ``None`` for a good file, else the one-line reason."""
    def one(p: str) -> str | None:
        try:
            decode_image(p, channels=3)
        except DataError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(threads or default_threads()) as pool:
        return list(pool.map(one, paths, chunksize=16))


def _bad_hint() -> str:
    return "fix or remove the file, or set data.on_bad_sample: skip to leave unreadable files out"


def decide_image_shape(splits: dict[str, list[str]], *, channels: int = 0, image_size: int = 0,
                       on_bad_sample: str = "error") -> ImageShape:
    """Decide channels and size from the files of ``splits`` (``{"train": [...], "val": [...], ...}``).

    Args:
        splits: image paths per split; ``"train"`` decides the channels.
        channels: ``data.channels`` (0: from the data).
        image_size: ``data.image_size`` (0: the files' common size).
        on_bad_sample: ``error`` or ``skip`` (see the module docstring).

    Returns:
        :class:`ImageShape`; with ``skip`` its ``skipped`` lists the bad files (the caller removes them).

    Raises:
        DataError: an unreadable file (``error``), sizes that differ with ``image_size`` 0, no readable
            training image.
    """
    skipped: list[tuple[str, str]] = []
    infos: dict[str, list[tuple[str, ImageInfo]]] = {}
    for part, paths in splits.items():
        if on_bad_sample == "skip":
            reasons = verify_all(paths)
            skipped += [(p, r) for p, r in zip(paths, reasons) if r is not None]
            picked = [i for i in _sample(paths, PROBE_MAX_FILES) if reasons[i] is None]
        else:
            picked = _sample(paths, PROBE_MAX_FILES)
        probed = probe_all([paths[i] for i in picked])
        rows = []
        for i, info in zip(picked, probed):
            if isinstance(info, DataError):
                if on_bad_sample != "skip":
                    raise DataError(f"{info}; {_bad_hint()}")
                skipped.append((paths[i], str(info)))
                continue
            rows.append((paths[i], info))
        infos[part] = rows
    if not infos.get("train"):
        raise DataError("no readable training image: every training file failed to decode "
                        f"(e.g. {skipped[0][1] if skipped else 'none found'})")
    if not channels:
        counts = Counter(info.channels for _, info in infos["train"])
        channels = 1 if counts[1] > counts[3] else 3
        other = [p for p, info in infos["train"] if info.channels != channels]
        if other:
            word = {1: "greyscale", 3: "colour"}
            logger.warning("data.channels=0: %d of %d training images are %s, so the model takes %d channel(s); "
                           "%d %s file(s) are converted: %s (set data.channels to choose)", counts[channels],
                           len(infos["train"]), word[channels], channels, len(other), word[4 - channels],
                           _listed(other))
    if image_size:
        h = w = int(image_size)
    else:
        sizes: dict[tuple[int, int], list[str]] = {}
        for rows in infos.values():
            for p, info in rows:
                sizes.setdefault((info.width, info.height), []).append(p)
        if len(sizes) > 1:
            seen = sorted(sizes.items(), key=lambda kv: -len(kv[1]))
            text = "; ".join(f"{w_}x{h_} ({len(ps)} file(s), e.g. {ps[0]})" for (w_, h_), ps in seen[:LIST_MAX])
            raise DataError(f"images have {len(sizes)} different sizes (width x height): {text}; set "
                            "data.image_size to a side length to resize every image to a square of that side "
                            "(data.image_size: 0 needs images of one size)")
        w, h = next(iter(sizes))
    if skipped:
        logger.warning("data.on_bad_sample=skip: %d unreadable file(s) left out: %s", len(skipped),
                       _listed([p for p, _ in skipped]))
    return ImageShape(channels=int(channels), height=int(h), width=int(w), skipped=skipped)


SKIPPED_FILE = "skipped_files.txt"


def write_skipped_files(out_dir: str, skipped: Sequence[tuple[str, str]]) -> str:
    """Write ``<out_dir>/skipped_files.txt``: the path of every file left out, one per line (UTF-8, written to a
    temporary file and renamed). Returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, SKIPPED_FILE)
    with atomic_write(path, newline="\n") as fh:
        fh.writelines(f"{p}\n" for p, _ in skipped)
    return path
