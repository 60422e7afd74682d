"""Training augmentation built from ``paddle.vision.transforms``, seeded per sample.

``data.augment`` is a preset name or a list of ops, e.g.::

    augment: imagenet
    augment: [{name: random_resized_crop, scale: [0.3, 1.0]}, {name: hflip}, {name: rand_augment, magnitude: 7}]

Presets: ``none``; ``cifar`` = pad-crop (4 px) + horizontal flip (``flip_crop`` is the same, ``flip`` and
``crop`` its halves); ``imagenet`` = RandomResizedCrop + flip + ColorJitter(0.4, 0.4, 0.4); ``strong`` =
pad-crop + flip + RandAugment(2, 10) + RandomErasing(0.5) (FixMatch's strong view, arXiv 2001.07685).

Determinism: the image operations are ``paddle.vision.transforms.functional`` (OpenCV backend on HWC
numpy arrays); their random parameters are drawn here, with the same distributions as the corresponding
``paddle.vision.transforms`` classes, from a private ``random.Random`` seeded by the hash of
``(seed, epoch, index, view)``. paddle's classes draw from the process-global ``random``/``numpy.random``
generators, which the single-process DataLoader's prefetch thread would share with the training loop; a
private generator keeps a sample's augmentation a pure function of that tuple (identical for 0, 1 or 2
workers and after an exact resume) without touching the global state.

``rand_augment`` is written here because paddle 2.6 has no RandAugment; it composes paddle's functional ops
(affine, rotate, brightness, contrast) with four point operations (saturation, posterize, solarize,
autocontrast) and OpenCV's histogram equalisation (Cubuk et al., "RandAugment", arXiv 1909.13719).
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from robust_paddle.errors import ConfigError, DataError

PRESETS: dict[str, tuple[tuple[str, dict], ...]] = {
    "none": (),
    "flip": (("hflip", {}),),
    "crop": (("pad_crop", {}),),
    "flip_crop": (("pad_crop", {}), ("hflip", {})),
    "cifar": (("pad_crop", {}), ("hflip", {})),
    "imagenet": (("random_resized_crop", {}), ("hflip", {}),
                 ("color_jitter", {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4})),
    "strong": (("pad_crop", {}), ("hflip", {}), ("rand_augment", {"num_ops": 2, "magnitude": 10}),
               ("random_erasing", {"prob": 0.5})),
}
PHOTOMETRIC = frozenset({"color_jitter", "rand_augment"})  # need 8-bit pixels
AFTER_NORMALISE = frozenset({"random_erasing"})  # applied to the normalised image (erased = mean colour)


def _fix_channels(out: Any, channels: int) -> np.ndarray:
    out = np.asarray(out)
    return out[:, :, None] if out.ndim == 2 and channels == 1 else out


def _F():
    import cv2
    import paddle.vision.transforms.functional as F

    # One OpenCV thread per process: the DataLoader's workers already parallelise across samples (and an OpenCV
    # pool's threads would compete with them for the same cores).
    cv2.setNumThreads(0)
    return F


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not value[0] <= value[1]:
        raise DataError(f"{name} must be [low, high] with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _prob(p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise DataError(f"prob must be in [0, 1], got {p!r}")
    return float(p)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend an RGB uint8 image with its grey version: ``factor`` 0 = grey, 1 = unchanged (PIL's
    ``ImageEnhance.Color``). Written here because paddle 2.6's OpenCV ``adjust_saturation`` ignores its
    factor's value and draws one from ``numpy.random`` (non-deterministic, and a global draw)."""
    f = np.float32(factor)
    x = img.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(x * f + grey[..., None] * (1 - f), 0, 255).astype(img.dtype)


# ------------------------------------------------------------------------------------------ op builders
# Each builder takes the output size ``hw``, the channel count and the op's YAML parameters, and returns
# ``fn(img HWC, rng: random.Random) -> img``.
def _pad_crop(hw: tuple[int, int], channels: int, *, padding: int = 4) -> Callable:
    """paddle's RandomCrop(hw, padding): zero padding, then a uniformly placed ``hw`` window."""
    pad = int(padding)

    def fn(img: np.ndarray, rng: random.Random) -> np.ndarray:
        img = _fix_channels(_F().pad(img, pad), channels) if pad else img
        h, w = img.shape[:2]
        top, left = rng.randint(0, h - hw[0]), rng.randint(0, w - hw[1])
        return img[top:top + hw[0], left:left + hw[1]]
    return fn


def _random_resized_crop(hw: tuple[int, int], channels: int, *, scale: Sequence[float] = (0.08, 1.0),
                         ratio: Sequence[float] = (3 / 4, 4 / 3)) -> Callable:
    """paddle's RandomResizedCrop(hw, scale, ratio): 10 tries of a random area/aspect crop, else the centre
    crop at the nearest allowed aspect; resized to ``hw`` (bilinear)."""
    scale, ratio = _pair(scale, "scale"), _pair(ratio, "ratio")
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def fn(img: np.ndarray, rng: random.Random) -> np.ndarray:
        height, width = img.shape[:2]
        area = height * width
        for _ in range(10):
            target = rng.uniform(*scale) * area
            aspect = math.exp(rng.uniform(*log_ratio))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                i, j = rng.randint(0, height - h), rng.randint(0, width - w)
                break
        else:
            in_ratio = width / height
            w, h = (width, int(round(width / ratio[0]))) if in_ratio < ratio[0] else (
                (int(round(height * ratio[1])), height) if in_ratio > ratio[1] else (width, height))
            i, j = (height - h) // 2, (width - w) // 2
        return _fix_channels(_F().resize(img[i:i + h, j:j + w], hw), channels)
    return fn


def _hflip(hw: tuple[int, int], channels: int, *, prob: float = 0.5) -> Callable:
    p = _prob(prob)
    return lambda img, rng: _fix_channels(_F().hflip(img), channels) if rng.random() < p else img


def _vflip(hw: tuple[int, int], channels: int, *, prob: float = 0.5) -> Callable:
    p = _prob(prob)
    return lambda img, rng: _fix_channels(_F().vflip(img), channels) if rng.random() < p else img


def _color_jitter(hw: tuple[int, int], channels: int, *, brightness: float = 0.4, contrast: float = 0.4,
                  saturation: float = 0.4, hue: float = 0.0) -> Callable:
    """paddle's ColorJitter: brightness/contrast/saturation factors in [1-v, 1+v], hue shift in [-h, h],
    applied in a random order. Grey images skip saturation and hue (they have neither)."""
    for name, v, hi in (("brightness", brightness, None), ("contrast", contrast, None),
                        ("saturation", saturation, None), ("hue", hue, 0.5)):
        if float(v) < 0 or (hi is not None and float(v) > hi):
            raise DataError(f"{name} must be >= 0{f' and <= {hi}' if hi else ''}, got {v!r}")
    F = _F()
    parts = [(F.adjust_brightness, float(brightness), 1.0), (F.adjust_contrast, float(contrast), 1.0)]
    if channels == 3:
        parts += [(adjust_saturation, float(saturation), 1.0), (F.adjust_hue, float(hue), 0.0)]
    parts = [p for p in parts if p[1] > 0]

    def fn(img: np.ndarray, rng: random.Random) -> np.ndarray:
        order = list(range(len(parts)))
        rng.shuffle(order)
        for k in order:
            op, v, center = parts[k]
            img = _fix_channels(op(img, rng.uniform(max(0.0, center - v) if center else -v, center + v)), channels)
        return img
    return fn


def _rotation(hw: tuple[int, int], channels: int, *, degrees: float = 15.0) -> Callable:
    d = abs(float(degrees))
    return lambda img, rng: _fix_channels(_F().rotate(img, rng.uniform(-d, d)), channels)


def _affine(hw: tuple[int, int], channels: int, *, degrees: float = 0.0, translate: Sequence[float] | None = None,
            scale: Sequence[float] | None = None, shear: float = 0.0) -> Callable:
    """paddle's RandomAffine: angle in [-degrees, degrees], shifts up to ``translate`` x size, a scale
    factor in ``scale``, x-shear in [-shear, shear] degrees."""
    d, sh = abs(float(degrees)), abs(float(shear))
    tr = (0.0, 0.0) if translate is None else tuple(float(t) for t in translate)
    sc = (1.0, 1.0) if scale is None else _pair(scale, "scale")

    def fn(img: np.ndarray, rng: random.Random) -> np.ndarray:
        h, w = img.shape[:2]
        shift = (int(rng.uniform(-tr[0] * w, tr[0] * w)), int(rng.uniform(-tr[1] * h, tr[1] * h)))
        out = _F().affine(img, rng.uniform(-d, d), shift, rng.uniform(*sc), (rng.uniform(-sh, sh), 0.0))
        return _fix_channels(out, channels)
    return fn


def _random_erasing(hw: tuple[int, int], channels: int, *, prob: float = 0.5, scale: Sequence[float] = (0.02, 0.33),
                    ratio: Sequence[float] = (0.3, 3.3)) -> Callable:
    """paddle's RandomErasing on the normalised image (erased pixels = 0 = the mean colour)."""
    p, scale, ratio = _prob(prob), _pair(scale, "scale"), _pair(ratio, "ratio")
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def fn(img: np.ndarray, rng: random.Random) -> np.ndarray:
        if rng.random() >= p:
            return img
        h, w, c = img.shape
        for _ in range(10):
            area = rng.uniform(*scale) * h * w
            aspect = math.exp(rng.uniform(*log_ratio))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:
                top, left = rng.randint(0, h - eh), rng.randint(0, w - ew)
                return _F().erase(img, top, left, eh, ew, np.zeros((1, 1, c), img.dtype))
        return img
    return fn


class RandAugment:
    """RandAugment (Cubuk et al., arXiv 1909.13719): ``num_ops`` ops drawn uniformly, each at ``magnitude``
    (0..30 scale, 10 = the paper's ImageNet setting) with a random sign. Input/output: HWC uint8."""

    OPS = ("identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize", "contrast",
           "brightness", "shear_x", "shear_y", "translate_x", "translate_y")

    def __init__(self, channels: int, *, num_ops: int = 2, magnitude: float = 10.0) -> None:
        if int(num_ops) < 1 or not 0 <= float(magnitude) <= 30:
            raise DataError(f"rand_augment: num_ops must be >= 1 and magnitude in [0, 30], got {num_ops}, {magnitude}")
        self.channels, self.num_ops, self.m = channels, int(num_ops), float(magnitude) / 30.0

    def _one(self, img: np.ndarray, op: str, sign: float) -> np.ndarray:
        import cv2
        import paddle.vision.transforms.functional as F

        m, h, w = self.m, img.shape[0], img.shape[1]
        if op == "autocontrast":
            lo = img.min(axis=(0, 1), keepdims=True).astype(np.float32)
            hi = img.max(axis=(0, 1), keepdims=True).astype(np.float32)
            out = (img - lo) * (255.0 / np.maximum(hi - lo, 1.0))
            return np.where(hi > lo, out, img).clip(0, 255).astype(np.uint8)
        if op == "equalize":
            return np.stack([cv2.equalizeHist(np.ascontiguousarray(img[:, :, c])) for c in range(img.shape[2])], 2)
        if op == "rotate":
            return F.rotate(img, sign * 30.0 * m)
        if op == "solarize":
            t = 256 - int(256 * m)
            return np.where(img >= t, 255 - img, img).astype(np.uint8)
        if op == "color":
            return adjust_saturation(img, 1.0 + sign * 0.9 * m) if self.channels == 3 else img
        if op == "posterize":
            mask = np.uint8((0xFF << (8 - max(1, 8 - int(4 * m)))) & 0xFF)
            return img & mask
        if op == "contrast":
            return F.adjust_contrast(img, 1.0 + sign * 0.9 * m)
        if op == "brightness":
            return F.adjust_brightness(img, 1.0 + sign * 0.9 * m)
        if op in ("shear_x", "shear_y"):
            s = sign * 17.0 * m  # degrees; 0.3 rad at magnitude 30
            return F.affine(img, 0.0, (0, 0), 1.0, (s, 0.0) if op == "shear_x" else (0.0, s))
        if op in ("translate_x", "translate_y"):
            t = int(round(sign * 0.45 * m * (w if op == "translate_x" else h)))
            return F.affine(img, 0.0, (t, 0) if op == "translate_x" else (0, t), 1.0, (0.0, 0.0))
        return img

    def __call__(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        for _ in range(self.num_ops):
            op = self.OPS[rng.randrange(len(self.OPS))]
            sign = 1.0 if rng.random() < 0.5 else -1.0
            img = _fix_channels(self._one(img, op, sign), self.channels)
        return img


def _rand_augment(hw: tuple[int, int], channels: int, *, num_ops: int = 2, magnitude: float = 10.0) -> Callable:
    return RandAugment(channels, num_ops=num_ops, magnitude=magnitude)


OPS: dict[str, Callable[..., Callable]] = {
    "pad_crop": _pad_crop,
    "random_resized_crop": _random_resized_crop,
    "hflip": _hflip,
    "vflip": _vflip,
    "color_jitter": _color_jitter,
    "rotation": _rotation,
    "affine": _affine,
    "rand_augment": _rand_augment,
    "random_erasing": _random_erasing,
}


# ------------------------------------------------------------------------------------------------ parsing
def parse_augment(spec: str | Sequence[dict] | tuple, *, field: str = "data.augment") -> tuple[tuple[str, tuple], ...]:
    """A preset name or a list of ``{name: op, **params}`` -> canonical ``((op, ((key, value), ...)), ...)``.

    Raises:
        ConfigError: unknown preset, op or op parameter (names ``field[i]`` and lists what is allowed).
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ConfigError(f"{field}: {spec!r} is not a preset; choose one of: {', '.join(PRESETS)}, "
                              f"or give a list of ops ({', '.join(OPS)})")
        items: Sequence[Any] = [{"name": n, **p} for n, p in PRESETS[spec]]
    elif isinstance(spec, (list, tuple)):
        items = [dict(op[1], name=op[0]) if isinstance(op, tuple) else op for op in spec]
    else:
        raise ConfigError(f"{field}: expected a preset name or a list of ops, got {spec!r}")
    out = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: each op is a mapping with a 'name' ({', '.join(OPS)}), got {item!r}")
        name = item["name"]
        if name not in OPS:
            raise ConfigError(f"{where}: unknown op {name!r}; choose one of: {', '.join(OPS)}")
        params = {k: v for k, v in item.items() if k != "name"}
        allowed = [p for p in inspect.signature(OPS[name]).parameters if p not in ("hw", "channels")]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: not a parameter of {name!r}; allowed: {', '.join(allowed) or '(none)'}")
        if name == "random_resized_crop" and i != 0:
            raise ConfigError(f"{where}: random_resized_crop must be the first op (it crops the decoded image)")
        out.append((name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))))
    return tuple(out)


def describe(ops: tuple[tuple[str, tuple], ...]) -> list[dict]:
    """Canonical ops -> the YAML form ``[{name: op, **params}]``."""
    return [{"name": n, **{k: list(v) if isinstance(v, tuple) else v for k, v in p}} for n, p in ops]


def build_ops(ops: tuple[tuple[str, tuple], ...], *, hw: tuple[int, int], channels: int) -> tuple[list, list]:
    """Instantiate parsed ops for output size ``hw``: ``(before_normalise, after_normalise)`` callables.

    Raises:
        ConfigError: an op parameter paddle rejects (names the op).
    """
    pre, post = [], []
    for i, (name, params) in enumerate(ops):
        try:
            fn = OPS[name](hw, channels, **dict(params))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"data.augment[{i}] ({name}): {e}") from None
        (post if name in AFTER_NORMALISE else pre).append((name, fn))
    return pre, post


def apply_ops(img: np.ndarray, ops: list, *, channels: int, rng: random.Random) -> np.ndarray:
    """Run built ops in order on an HWC array with the sample's generator ``rng``.

    Raises:
        ConfigError: a photometric op on float pixels (names the op).
    """
    for name, fn in ops:
        if name in PHOTOMETRIC and img.dtype != np.uint8:
            raise ConfigError(f"data.augment: {name} needs 8-bit images, but this dataset stores {img.dtype} "
                              "pixels; use geometric ops only (pad_crop, hflip, rotation, affine, random_erasing ...)")
        img = fn(img, rng)
    return img
