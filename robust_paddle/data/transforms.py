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

from robust_paddle.data.decode import decode_image
from robust_paddle.errors import ConfigError, DataError


# ---------------------------------------------------------------------------------------------- decode
def fit_image(im: Image.Image, *, size: tuple[int, int], resize_short: int = 0) -> Image.Image:
    """The evaluation geometry on one PIL image (mode ``L``/``RGB`` uint8 or a float ``F`` channel).

    Args:
        im: the image.
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


def fit_array(arr: np.ndarray, *, size: tuple[int, int], resize_short: int = 0) -> np.ndarray:
    """:func:`fit_image` on an HWC float32 array, channel by channel in float (Pillow mode ``F``)."""
    chans = [np.asarray(fit_image(Image.fromarray(np.ascontiguousarray(arr[:, :, c], dtype=np.float32), mode="F"),
                                  size=size, resize_short=resize_short)) for c in range(arr.shape[2])]
    return np.stack(chans, axis=2).astype(np.float32, copy=False)


def load_image(source: str | bytes, *, channels: int, size: int | tuple[int, int] = 0, resize_short: int = 0,
               name: str | None = None) -> np.ndarray:
    """Decode an image file (or encoded bytes) by the one decoder, :func:`robust_paddle.data.decode.decode_image`,
    then apply the evaluation geometry (:func:`fit_image`). Training and the server both call this.

    Args:
        source: a path, or the encoded bytes (the server).
        channels: 1 or 3.
        size: square side or ``(height, width)``; 0 keeps the native size.
        resize_short: 0: resize straight to ``size``; else short side to this, then the centre crop.
        name: how errors name the image.

    Returns:
        [H, W, channels] float32 in [0, 1].

    Raises:
        DataError: the file cannot be decoded (names the file and the reason).
    """
    if not resize_short or not size:
        return decode_image(source, channels=channels, size=size, name=name)
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return fit_array(decode_image(source, channels=channels, name=name), size=hw, resize_short=resize_short)


def _resize_one(img: np.ndarray, size: int, resize_short: int = 0) -> np.ndarray:
    if img.dtype == np.uint8:
        im = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        out = np.asarray(fit_image(im, size=(size, size), resize_short=resize_short))
        return out[:, :, None] if out.ndim == 2 else out
    # float images: PIL's "F" mode is single channel, so resize channel by channel
    return fit_array(img, size=(size, size), resize_short=resize_short).astype(img.dtype)


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
        raise DataError(f"images must be [N, H, W, C] with C in (1, 3), got shape {images.shape}")
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
        raise DataError("cannot compute normalisation statistics from an empty training set")
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
        augment: preset name or op list (``robust_paddle.data.augment``); train splits only.
        seed: augmentation seed; a sample's randomness is ``hash(seed, epoch, index, view, strong)``.
        channels, size: decoding options for image paths (size 0: native).
        shape_hw: with size 0, the ``(height, width)`` every decoded file must have ((0, 0): not checked).
        resize_short: evaluation geometry (see :func:`fit_image`).
        strong_augment: the strong view's augmentation, for methods that ask for one (:meth:`load` with
            ``strong=True``).
    """

    kind: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0
    augment: str | tuple = "none"
    seed: int = 0
    channels: int = 3
    size: int = 0
    shape_hw: tuple[int, int] = (0, 0)
    resize_short: int = 0
    strong_augment: str | tuple = "strong"

    def __post_init__(self) -> None:
        from robust_paddle.data.augment import parse_augment

        if self.kind not in ("image", "tabular"):
            raise DataError(f"pipeline kind must be 'image' or 'tabular', got {self.kind!r}")
        ops = parse_augment(self.augment)
        strong = parse_augment(self.strong_augment, field="data.strong_augment")
        if not ops and self.augment != "none":
            object.__setattr__(self, "augment", "none")
        if self.kind == "tabular" and ops:
            raise ConfigError(f"data.augment={self.augment!r} needs image data; this source is tabular "
                              "(use augment: none)")
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise DataError(f"data.mean/std must have the same length and std > 0, got {self.mean}, {self.std}")
        # cached (not fields): parsed ops, built ops per output size, float32 mean / 1/std
        object.__setattr__(self, "_ops", ops)
        object.__setattr__(self, "_strong_ops", strong if self.kind == "image" else ())
        object.__setattr__(self, "_built", {})
        object.__setattr__(self, "_mean", np.asarray(self.mean, dtype=np.float32))
        object.__setattr__(self, "_inv_std", 1.0 / np.asarray(self.std, dtype=np.float32))

    def __getstate__(self) -> dict:
        """Pickled without the built ops (closures): DataLoader workers are started with ``forkserver`` (see
        ``_compat.loader_workers``), so the dataset travels pickled and the ops are rebuilt there."""
        return {**self.__dict__, "_built": {}}

    @property
    def augmented(self) -> bool:
        """Whether training samples are augmented (then views differ)."""
        return bool(self._ops)

    @property
    def strong_augmented(self) -> bool:
        """Whether the strong view (``data.strong_augment``) is augmented (else it is the plain sample)."""
        return bool(self._strong_ops)

    def with_augment(self, augment: str | tuple) -> Pipeline:
        return dataclasses.replace(self, augment=augment)

    def raw(self, item: np.ndarray | str, *, native: bool = False) -> np.ndarray:
        """Stored sample -> float32 in scaled units (HWC image or [D] vector), no randomness; image files in
        the evaluation geometry, or as decoded when ``native`` (for ``random_resized_crop``)."""
        return self._read(item, native=native).astype(np.float32) * np.float32(self.scale)

    def _read(self, item: np.ndarray | str, *, native: bool = False) -> np.ndarray:
        if not isinstance(item, str):
            return np.asarray(item)
        arr = load_image(item, channels=self.channels, size=0 if native else self.size,
                         resize_short=self.resize_short)
        if not self.size and self.shape_hw[0] and arr.shape[:2] != tuple(self.shape_hw):
            (h, w), (eh, ew) = arr.shape[:2], self.shape_hw
            raise DataError(f"{item}: image is {w}x{h} (width x height), the other images are {ew}x{eh}; set "
                            "data.image_size to a side length to resize every image to a square of that side")
        return arr

    def _ops_for(self, strong: bool, hw: tuple[int, int], channels: int) -> tuple[list, list]:
        from robust_paddle.data.augment import build_ops

        key = (strong, hw, channels)
        if key not in self._built:
            self._built[key] = build_ops(self._strong_ops if strong else self._ops, hw=hw, channels=channels)
        return self._built[key]

    def load(self, item: np.ndarray | str, *, index: int, epoch: int = 0, view: int = 0,
             strong: bool = False) -> np.ndarray:
        """Read/decode, augment (train pipelines) and normalise one stored sample: CHW / [D] float32.

        The ops see 8-bit pixels where the data has them (uint8 arrays; decoded image files, which are in
        [0, 1], are quantised to 8 bits when the ops include colour ops -- exact for 8-bit files), else the
        scaled float image.
        """
        from robust_paddle.data.augment import PHOTOMETRIC

        ops = self._strong_ops if strong else self._ops
        if self.kind == "image" and ops:
            arr = self._read(item, native=isinstance(item, str) and ops[0][0] == "random_resized_crop")
            if arr.dtype != np.uint8:
                arr = arr.astype(np.float32) * np.float32(self.scale)
                if isinstance(item, str) and any(name in PHOTOMETRIC for name, _ in ops):
                    arr = np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
            return self(arr, index=index, epoch=epoch, view=view, strong=strong)
        return self(self.raw(item), index=index, epoch=epoch, view=view, strong=strong)

    def load_batch(self, items: np.ndarray, *, strong: bool = False) -> np.ndarray:
        """Normalise stored array rows at once, for a pipeline without augmentation (``strong`` names which
        ops would apply): [B, H, W, C] -> [B, C, H, W] / [B, D] -> [B, D] float32, equal element for element
        to stacking :meth:`load` of each row (same float32 operations, vectorised over the batch).

        Raises:
            DataError: the pipeline augments (then samples differ per index and epoch), or the channels do not
                match mean/std.
        """
        if self._strong_ops if strong else self._ops:
            raise DataError("load_batch: this pipeline augments; load samples one by one")
        items = np.asarray(items)
        mean, inv_std = self._mean, self._inv_std
        if self.kind == "tabular":
            return ((items.astype(np.float32) * np.float32(self.scale) - mean) * inv_std).astype(np.float32)
        if items.shape[-1] != mean.shape[0]:
            raise DataError(f"image has {items.shape[-1]} channels but mean/std have {mean.shape[0]} values")
        x = (items.astype(np.float32) * np.float32(self.scale) - mean) * inv_std  # raw(), then __call__
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)

    def __call__(self, raw: np.ndarray, *, index: int, epoch: int = 0, view: int = 0,
                 strong: bool = False) -> np.ndarray:
        """Augment (when enabled) and normalise one sample: ``raw`` is what :meth:`raw` returns (scaled float)
        or, for images, 8-bit pixels (uint8, scaled by 1/255 here). Returns CHW / [D] float32."""
        from robust_paddle.data.augment import apply_ops

        mean, inv_std = self._mean, self._inv_std
        if self.kind == "tabular":
            return ((raw.astype(np.float32) - mean) * inv_std).astype(np.float32)
        if raw.shape[-1] != mean.shape[0]:
            raise DataError(f"image has {raw.shape[-1]} channels but mean/std have {mean.shape[0]} values")
        k = np.float32(1.0 / 255.0) if raw.dtype == np.uint8 else np.float32(1.0)
        ops = self._strong_ops if strong else self._ops
        if not ops:
            x = (raw.astype(np.float32) * k - mean) * inv_std
            return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        hw = (self.size, self.size) if self.size else tuple(raw.shape[:2])
        pre, post = self._ops_for(strong, hw, raw.shape[2])
        rng = random.Random(sample_hash(self.seed, epoch, index, view, int(strong)))
        raw = apply_ops(raw, pre, channels=raw.shape[2], rng=rng)
        x = (raw.astype(np.float32) * k - mean) * inv_std
        x = apply_ops(x, post, channels=raw.shape[2], rng=rng) if post else x
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
