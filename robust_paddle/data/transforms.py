"""Sample pipelines: decode -> geometry -> (augment) -> normalise -> CHW float32.

Geometry (the evaluation transform, recorded in ``inference.yml`` and applied by the server through
:func:`fit_image`): resize to ``image_size``, or with ``data.eval_resize_short`` resize the short side to
that many pixels and take the centre ``image_size`` crop. Augmentation (``robust_paddle.data.augment``) is
``paddle.vision.transforms`` ops seeded per sample from ``(seed, epoch, index, view)`` by a SplitMix64 hash
(building a ``numpy.random.Generator`` per sample costs ~40 us, more than a small image's augmentation).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from robust_paddle.errors import ConfigError


# ---------------------------------------------------------------------------------------------- decode
def fit_image(im: Image.Image, *, size: tuple[int, int], resize_short: int = 0) -> Image.Image:
    """The evaluation geometry on a decoded PIL image (training and the server both call this).

    Args:
        im: any mode.
        size: ``(height, width)`` of the result; ``(0, 0)`` keeps the image as it is.
        resize_short: 0 resizes straight to ``size`` (bilinear); else the short side is resized to
            ``resize_short`` pixels (aspect kept, bilinear) and the centre ``size`` crop is taken.

    Returns:
        a PIL image of ``size`` (or the input when size is ``(0, 0)``).
    """
    h, w = size
    if not h or not w:
        return im
    if resize_short:
        iw, ih = im.size
        scale = resize_short / min(iw, ih)
        nw, nh = max(w, int(round(iw * scale))), max(h, int(round(ih * scale)))
        if (nw, nh) != (iw, ih):
            im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - w) // 2, (nh - h) // 2
        return im.crop((left, top, left + w, top + h))
    return im if im.size == (w, h) else im.resize((w, h), Image.BILINEAR)


def load_image(path: str, *, channels: int, size: int = 0, resize_short: int = 0) -> np.ndarray:
    """Read an image file as HWC uint8.

    Args:
        path: any format PIL reads.
        channels: 1 (grey, ``L``) or 3 (``RGB``).
        size: square side of the result (see :func:`fit_image`); 0 keeps the native size.
        resize_short: see :func:`fit_image`.

    Returns:
        [H, W, channels] uint8.
    """
    try:
        with Image.open(path) as im:
            im = fit_image(im.convert("L" if channels == 1 else "RGB"), size=(size, size), resize_short=resize_short)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path!r}: {e}") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def image_channels(path: str) -> int:
    """1 for greyscale files (PIL modes ``1``, ``L``, ``I``, ``F``, ``LA``), else 3."""
    with Image.open(path) as im:
        return 1 if im.mode in ("1", "L", "I", "I;16", "F", "LA") else 3


def _resize_one(img: np.ndarray, size: int, resize_short: int = 0) -> np.ndarray:
    if img.dtype == np.uint8:
        im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        out = np.asarray(fit_image(im, size=(size, size), resize_short=resize_short))
        return out[:, :, None] if out.ndim == 2 else out
    # float images: PIL's "F" mode is single channel, so resize channel by channel
    chans = [np.asarray(fit_image(Image.fromarray(img[:, :, c].astype(np.float32), mode="F"), size=(size, size),
                                  resize_short=resize_short)) for c in range(img.shape[2])]
    return np.stack(chans, axis=2).astype(img.dtype)


def convert_images(images: np.ndarray, *, channels: int = 0, size: int = 0, resize_short: int = 0) -> np.ndarray:
    """Channel conversion and resizing of an in-memory image array, done once at build time.

    Args:
        images: [N, H, W, C] uint8 or float, C in {1, 3}.
        channels: 0 keeps C; 1 converts RGB to grey with PIL's ITU-R 601-2 luma weights; 3 repeats grey.
        size: square side (bilinear); 0 keeps H, W.
        resize_short: see :func:`fit_image`.

    Returns:
        [N, size or H, size or W, channels or C], same dtype.
    """
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C in (1, 3), got shape {images.shape}")
    c = images.shape[3]
    if channels == 3 and c == 1:
        images = np.repeat(images, 3, axis=3)
    elif channels == 1 and c == 3:
        grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        grey = np.clip(np.rint(grey), 0, 255) if images.dtype == np.uint8 else grey
        images = grey.astype(images.dtype)[..., None]
    if size and (resize_short or images.shape[1:3] != (size, size)):
        images = np.stack([_resize_one(img, size, resize_short) for img in images])
    return images


# ------------------------------------------------------------------------------------------ statistics
def channel_stats(samples: Iterable[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-channel mean/std over HWC images (or per-feature over [D] vectors), in float64 running sums.

    Args:
        samples: batches [B, H, W, C] / [B, D] (already scaled, e.g. to [0, 1]).

    Returns:
        ``(mean, std)`` lists of length C (or D); a zero std becomes 1 so normalising never divides by 0.
    """
    total, sq, count = None, None, 0
    for batch in samples:
        b = np.asarray(batch, dtype=np.float64)
        b = b.reshape(-1, b.shape[-1])
        total = b.sum(0) if total is None else total + b.sum(0)
        sq = (b * b).sum(0) if sq is None else sq + (b * b).sum(0)
        count += b.shape[0]
    if not count:
        raise ValueError("cannot compute normalisation statistics from an empty training set")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
    std[std < 1e-8] = 1.0
    return [float(v) for v in mean], [float(v) for v in std]


# -------------------------------------------------------------------------------------------- pipeline
@dataclasses.dataclass(frozen=True)
class Pipeline:
    """Turns one stored sample (array row or image path) into the model input.

    Attributes:
        kind: ``"image"`` (stored HWC, output CHW) or ``"tabular"`` (stored and output [D]).
        mean, std: per channel (images) or per feature (tabular), in the scaled units.
        scale: multiplies stored values first (1/255 for uint8 images, else 1).
        augment: preset name or op list (``robust_paddle.data.augment``); train splits only.
        strong_augment: the strong view's augmentation, for methods that ask for one (:meth:`__call__`
            with ``strong=True``).
        seed: augmentation seed; a sample's randomness is ``hash(seed, epoch, index, view, strong)``.
        channels: decoding option for image paths. size: output square side (0: native size).
        resize_short: evaluation geometry (see :func:`fit_image`).
    """

    kind: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0
    augment: str | tuple = "none"
    seed: int = 0
    channels: int = 3
    size: int = 0
    resize_short: int = 0
    strong_augment: str | tuple = "strong"

    def __post_init__(self) -> None:
        from robust_paddle.data.augment import parse_augment

        if self.kind not in ("image", "tabular"):
            raise ValueError(f"pipeline kind must be 'image' or 'tabular', got {self.kind!r}")
        ops = parse_augment(self.augment)
        strong = parse_augment(self.strong_augment, field="data.strong_augment")
        if not ops and self.augment != "none":
            object.__setattr__(self, "augment", "none")
        if self.kind == "tabular" and ops:
            raise ConfigError(f"data.augment={self.augment!r} needs image data; this source is tabular "
                              "(use augment: none)")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"data.mean/std must have the same length and std > 0, got {self.mean}, {self.std}")
        # cached (not fields): one conversion per pipeline instead of one per sample
        object.__setattr__(self, "_ops", ops)
        object.__setattr__(self, "_strong_ops", strong if self.kind == "image" else ())
        object.__setattr__(self, "_built", {})
        object.__setattr__(self, "_mean", np.asarray(self.mean, dtype=np.float32))
        object.__setattr__(self, "_inv_std", 1.0 / np.asarray(self.std, dtype=np.float32))

    @property
    def augmented(self) -> bool:
        """Whether training samples are augmented (then views differ)."""
        return bool(self._ops)

    @property
    def crops_decoded(self) -> bool:
        """The first op is ``random_resized_crop``: paths are decoded at their native size for it."""
        return bool(self._ops) and self._ops[0][0] == "random_resized_crop"

    def with_augment(self, augment: str | tuple) -> Pipeline:
        return dataclasses.replace(self, augment=augment)

    def raw(self, item: np.ndarray | str, *, native: bool = False) -> np.ndarray:
        """Stored sample -> the evaluation geometry (or the decoded image when ``native``), no randomness.

        Returns HWC uint8 for image files and 8-bit arrays, else the stored dtype (tabular: [D])."""
        if isinstance(item, str):
            return load_image(item, channels=self.channels, size=0 if native else self.size,
                              resize_short=self.resize_short)
        return np.asarray(item)

    def _ops_for(self, strong: bool, hw: tuple[int, int], channels: int) -> tuple[list, list]:
        from robust_paddle.data.augment import build_ops

        key = (strong, hw, channels)
        if key not in self._built:
            self._built[key] = build_ops(self._strong_ops if strong else self._ops, hw=hw, channels=channels)
        return self._built[key]

    def load(self, item: np.ndarray | str, *, index: int, epoch: int = 0, view: int = 0,
             strong: bool = False) -> np.ndarray:
        """Decode/read, augment (train pipelines) and normalise one stored sample."""
        crop_native = isinstance(item, str) and (self._strong_ops if strong else self._ops)[:1] and \
            (self._strong_ops if strong else self._ops)[0][0] == "random_resized_crop"
        return self(self.raw(item, native=bool(crop_native)), index=index, epoch=epoch, view=view, strong=strong)

    def __call__(self, raw: np.ndarray, *, index: int, epoch: int = 0, view: int = 0,
                 strong: bool = False) -> np.ndarray:
        """Augment (when enabled) and normalise one raw sample; returns CHW / [D] float32."""
        from robust_paddle.data.augment import apply_ops

        mean, inv_std = self._mean, self._inv_std
        if self.kind == "tabular":
            return ((raw.astype(np.float32) * np.float32(self.scale) - mean) * inv_std).astype(np.float32)
        if raw.shape[-1] != mean.shape[0]:
            raise ValueError(f"image has {raw.shape[-1]} channels but mean/std have {mean.shape[0]} values")
        ops = self._strong_ops if strong else self._ops
        post: list = []
        if ops:
            hw = (self.size, self.size) if self.size else tuple(raw.shape[:2])
            pre, post = self._ops_for(strong, hw, raw.shape[2])
            rng = random.Random(sample_hash(self.seed, epoch, index, view, int(strong)))
            raw = apply_ops(raw, pre, channels=raw.shape[2], rng=rng)
            x = (raw.astype(np.float32) * np.float32(self.scale) - mean) * inv_std
            x = apply_ops(x, post, channels=raw.shape[2], rng=rng) if post else x
        else:
            x = (raw.astype(np.float32) * np.float32(self.scale) - mean) * inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_hash(*parts: int) -> int:
    """A 64-bit hash of integers (SplitMix64 chained), the randomness of one sample's augmentation."""
    h = 0
    for p in parts:
        h = _splitmix64(h ^ (int(p) & _MASK64))
    return h


def as_tuple(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)
