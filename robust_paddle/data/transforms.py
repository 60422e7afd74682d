"""Sample pipelines: decode -> (augment) -> normalise -> CHW float32.

Augmentation is hand-written on numpy rather than ``paddle.vision.transforms`` because its randomness must
be a pure function of ``(seed, epoch, index, view)`` (reproducible runs and exact resume, whatever the
worker count); paddle's random transforms draw from the global ``random`` module. The per-sample draws
come from a SplitMix64 hash of that tuple: building a ``numpy.random.Generator`` per sample costs ~40 us,
more than the augmentation itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

from robust_paddle.data.decode import decode_image
from robust_paddle.errors import DataError

AUGMENTS = ("none", "flip", "crop", "flip_crop")
CROP_PAD = 4  # pixels of zero padding for random crops (the CIFAR recipe)


# ---------------------------------------------------------------------------------------------- decode
def load_image(path: str, *, channels: int, size: int = 0) -> np.ndarray:
    """Read an image file as HWC float32 in [0, 1] by the one decoder, :func:`robust_paddle.data.decode.decode_image`.

    Args:
        path: any format Pillow reads.
        channels: 1 or 3.
        size: square side to resize to (bilinear); 0 keeps the native size.

    Returns:
        [H, W, channels] float32.

    Raises:
        DataError: the file cannot be decoded (names the file and the reason).
    """
    return decode_image(path, channels=channels, size=size)


def _resize_one(img: np.ndarray, size: int) -> np.ndarray:
    if img.dtype == np.uint8:
        im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        out = np.asarray(im.resize((size, size), Image.BILINEAR))
        return out[:, :, None] if out.ndim == 2 else out
    # float images: PIL's "F" mode is single channel, so resize channel by channel
    chans = [np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), mode="F")
                        .resize((size, size), Image.BILINEAR)) for c in range(img.shape[2])]
    return np.stack(chans, axis=2).astype(img.dtype)


def convert_images(images: np.ndarray, *, channels: int = 0, size: int = 0) -> np.ndarray:
    """Channel conversion and resizing of an in-memory image array, done once at build time.

    Args:
        images: [N, H, W, C] uint8 or float, C in {1, 3}.
        channels: 0 keeps C; 1 converts RGB to grey with PIL's ITU-R 601-2 luma weights; 3 repeats grey.
        size: square side (bilinear); 0 keeps H, W.

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
    if size and images.shape[1:3] != (size, size):
        images = np.stack([_resize_one(img, size) for img in images])
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
        scale: multiplies stored array values first (1/255 for uint8 arrays, else 1); image paths are decoded
            to [0, 1] by :func:`robust_paddle.data.decode.decode_image` and then multiplied by ``scale`` too
            (path sources use 1).
        augment: one of ``AUGMENTS``; train splits only.
        seed: augmentation seed; a sample's randomness is ``rng(seed, epoch, index, view)``.
        channels, size: decoding options for image paths (size 0: native).
        shape_hw: with size 0, the ``(height, width)`` every decoded file must have ((0, 0): not checked).
    """

    kind: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0
    augment: str = "none"
    seed: int = 0
    channels: int = 3
    size: int = 0
    shape_hw: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.kind not in ("image", "tabular"):
            raise ValueError(f"pipeline kind must be 'image' or 'tabular', got {self.kind!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"data.augment: {self.augment!r} is not allowed; choose one of: {', '.join(AUGMENTS)}")
        if self.kind == "tabular" and self.augment != "none":
            raise ValueError(f"data.augment={self.augment!r} needs image data; this source is tabular "
                             "(use augment: none)")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"data.mean/std must have the same length and std > 0, got {self.mean}, {self.std}")
        # cached float32 arrays (not fields): one conversion per pipeline instead of one per sample
        object.__setattr__(self, "_mean", np.asarray(self.mean, dtype=np.float32))
        object.__setattr__(self, "_inv_std", 1.0 / np.asarray(self.std, dtype=np.float32))

    def with_augment(self, augment: str) -> Pipeline:
        return dataclasses.replace(self, augment=augment)

    def raw(self, item: np.ndarray | str) -> np.ndarray:
        """Stored sample -> float32 in scaled units (HWC image or [D] vector), no randomness."""
        if isinstance(item, str):
            arr = load_image(item, channels=self.channels, size=self.size)
            if not self.size and self.shape_hw[0] and arr.shape[:2] != tuple(self.shape_hw):
                (h, w), (eh, ew) = arr.shape[:2], self.shape_hw
                raise DataError(f"{item}: image is {w}x{h} (width x height), the other images are {ew}x{eh}; set "
                                "data.image_size to a side length to resize every image to a square of that side")
        else:
            arr = np.asarray(item)
        return arr.astype(np.float32) * np.float32(self.scale)

    def __call__(self, raw: np.ndarray, *, index: int, epoch: int = 0, view: int = 0) -> np.ndarray:
        """Augment (when enabled) and normalise one raw sample; returns CHW / [D] float32."""
        mean, inv_std = self._mean, self._inv_std
        if self.kind == "tabular":
            return ((raw - mean) * inv_std).astype(np.float32)
        if raw.shape[-1] != mean.shape[0]:
            raise ValueError(f"image has {raw.shape[-1]} channels but mean/std have {mean.shape[0]} values")
        if self.augment != "none":
            h1 = sample_hash(self.seed, epoch, index, view)
            h2 = _splitmix64(h1)
            crop, n = "crop" in self.augment, 2 * CROP_PAD + 1
            raw = augment_image(raw, top=h1 % n if crop else CROP_PAD, left=(h1 >> 32) % n if crop else CROP_PAD,
                                flip="flip" in self.augment and bool(h2 & 1))
        x = (raw - mean) * inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def augment_image(img: np.ndarray, *, top: int = CROP_PAD, left: int = CROP_PAD, flip: bool = False,
                  pad: int = CROP_PAD) -> np.ndarray:
    """Crop ``img`` at ``(top, left)`` of its zero padding by ``pad`` pixels, then optionally mirror it.

    ``top = left = pad`` is the identity crop; the result equals
    ``np.pad(img, pad)[top:top + H, left:left + W]`` without building the padded copy.

    Args:
        img: [H, W, C].
        top, left: offsets in [0, 2 * pad].
        flip: mirror horizontally.

    Returns:
        [H, W, C], same dtype.
    """
    h, w = img.shape[:2]
    dy, dx = int(top) - pad, int(left) - pad
    if dy or dx:
        out = np.zeros_like(img)
        hh, ww = h - abs(dy), w - abs(dx)
        if hh > 0 and ww > 0:
            out[max(0, -dy):max(0, -dy) + hh, max(0, -dx):max(0, -dx) + ww] = \
                img[max(0, dy):max(0, dy) + hh, max(0, dx):max(0, dx) + ww]
        img = out
    return img[:, ::-1] if flip else img


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
