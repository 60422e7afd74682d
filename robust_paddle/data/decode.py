"""The one image decoder: every file or request body becomes ``[H, W, C]`` float32 the same way, in training,
the label-issue report, export parity checks, ``check-data`` and the HTTP server.

Rules (Pillow mode -> values; ``channels`` is what the model takes, 1 or 3):

==========================  ==============================================================================
mode                        decoded values
==========================  ==========================================================================
``1``                       0 or 1
``L``, ``P`` (no alpha)     8-bit value / 255 (palette entries expanded first)
``RGB``, ``RGBX``, ``CMYK``,  8-bit value / 255 per channel (``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` converted
``YCbCr``, ``LAB``, ``HSV``   to RGB by Pillow)
``I;16``, ``I;16L``,        16-bit value / 65535 (never through an 8-bit conversion, which clips)
``I;16B``, ``I;16N``
``I`` (32-bit int)          value / 65535 (Pillow opens 16-bit PNGs as ``I`` too); values outside 0..65535
                            are an error
``F`` (32-bit float)        kept as stored (no scaling)
``LA``, ``PA``, ``RGBA``,   alpha rule: composited over a white background, ``v * a + (1 - a)`` with ``a``
``RGBa``, ``P`` with         the alpha / 255 (how browsers and viewers show a transparent image on a page);
transparency                 the alpha channel is then dropped
==========================  ==========================================================================

Then the channel rule: a grey image given to a 3-channel model is repeated on the 3 channels; a colour image
given to a 1-channel model becomes ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` (computed in float, so no
8-bit rounding). Then, when ``size`` differs from the image, each channel is resized with bilinear filtering in
float (Pillow mode ``F``). The EXIF orientation tag of JPEG, TIFF and WebP files is applied first (phone photos); animated or multi-page
files give their first frame. 16-bit-per-channel colour files (48-bit PNG) are reduced to 8 bits by Pillow
itself.

Everything Pillow may raise on a bad file (truncated, not an image, too many pixels) becomes one
:class:`~robust_paddle.errors.DataError` naming the file (or the request position) and the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from robust_paddle.errors import DataError

__all__ = ["DECODE_ERRORS", "GREY_MODES", "ImageInfo", "decode_image", "failure_reason", "mode_channels",
           "probe_image"]

#: Pillow modes with one colour channel (an alpha channel aside)
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "I;16S", "F")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I;16S")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: what Pillow's format plugins raise on broken files (they are not consistent about it)
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError,
                  KeyError, struct.error, Image.DecompressionBombError, Image.DecompressionBombWarning,
                  MemoryError, ZeroDivisionError)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says: ``mode`` (Pillow), ``width``/``height`` in pixels, ``channels``
    (1 for grey modes, else 3; alpha not counted) and ``format`` (``PNG``, ``JPEG`` ...)."""

    mode: str
    width: int
    height: int
    channels: int
    format: str


def mode_channels(mode: str) -> int:
    """Colour channels of a Pillow mode: 1 for :data:`GREY_MODES`, 3 otherwise (``P`` counts as colour)."""
    return 1 if mode in GREY_MODES else 3


def _name(source, name: str | None) -> str:
    if name is not None:
        return name
    return source if isinstance(source, str) else "image"


def _open(source: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source)


def failure_reason(e: BaseException) -> str:
    """One short line saying why Pillow (or the OS) could not read an image."""
    if isinstance(e, UnidentifiedImageError):
        return "not an image Pillow can read (empty, truncated or another file type)"
    if isinstance(e, FileNotFoundError):
        return "file not found"
    text = str(e).split("\n")[0].strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


#: EXIF orientation -> the transpose that shows the image upright (as ``ImageOps.exif_transpose``)
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
#: formats whose EXIF block is read with the header (a PNG eXIf chunk after the pixels is not consulted, so the
#: header probe and the decoder always agree without decoding PNG pixels twice)
_EXIF_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP")


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag read from the header (1 = as stored); a broken EXIF block counts as 1."""
    if im.format not in _EXIF_FORMATS and "exif" not in im.info:
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - any EXIF parsing failure means "no orientation", as in exif_transpose
        return 1
    return value if value in _TRANSPOSE else 1


def probe_image(source: str | bytes, *, name: str | None = None) -> ImageInfo:
    """Read only the header of an image (no pixel decoding): mode, size after EXIF orientation, channels.

    Raises:
        DataError: ``"<name>: cannot read image: <reason>"``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(source) as im:
                w, h = im.size
                if _orientation(im) in (5, 6, 7, 8):
                    w, h = h, w
                return ImageInfo(im.mode, int(w), int(h), mode_channels(im.mode), str(im.format or ""))
    except DECODE_ERRORS as e:
        raise DataError(f"{_name(source, name)}: cannot read image: {failure_reason(e)}") from None


def _to_float(im: Image.Image, where: str) -> np.ndarray:
    """Pillow image -> [H, W, C] float32 in [0, 1] (``F``: as stored), C in {1, 3}, alpha composited."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("LA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.float32)[:, :, None]
    if mode in SIXTEEN_BIT_MODES:
        arr = np.asarray(im.convert("I") if mode == "I;16S" else im).astype(np.float32)
        return (arr * np.float32(1.0 / 65535.0))[:, :, None]
    if mode == "I":
        arr = np.asarray(im)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise DataError(f"{where}: 32-bit integer pixels range {lo}..{hi}, outside 0..65535; save the image "
                            "as 8-bit, 16-bit or float (mode F)")
        return (arr.astype(np.float32) * np.float32(1.0 / 65535.0))[:, :, None]
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{where}: the float image holds NaN or Inf; pixels must be finite")
        return arr[:, :, None]
    if mode in ("L", "RGB"):
        arr = np.asarray(im, dtype=np.float32) * np.float32(1.0 / 255.0)
        return arr[:, :, None] if arr.ndim == 2 else arr
    if mode in ("LA", "RGBA"):
        arr = np.asarray(im, dtype=np.float32) * np.float32(1.0 / 255.0)
        colour, alpha = arr[:, :, :-1], arr[:, :, -1:]
        return colour * alpha + (np.float32(1.0) - alpha)
    # any other mode Pillow may add: its own RGB conversion
    return np.asarray(im.convert("RGB"), dtype=np.float32) * np.float32(1.0 / 255.0)


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(arr[:, :, c]), mode="F")
                        .resize((width, height), Image.BILINEAR)) for c in range(arr.shape[2])]
    return np.stack(chans, axis=2).astype(np.float32, copy=False)


def decode_image(source: str | bytes | Image.Image, *, channels: int, size: int | tuple[int, int] = 0,
                 name: str | None = None) -> np.ndarray:
    """Decode an image file or encoded bytes by the rules in the module docstring.

    Args:
        source: a file path, the encoded bytes (PNG, JPEG, TIFF, BMP, GIF, WebP ... anything Pillow reads) or
            an opened Pillow image (left open).
        channels: 1 or 3, the channels the model takes.
        size: ``(height, width)`` or a square side to resize to; 0 keeps the image's own size.
        name: how errors name the image (default: the path, or ``"image"`` for bytes).

    Returns:
        [H, W, channels] float32; values in [0, 1] except for float (``F``) images, kept as stored.

    Raises:
        DataError: ``"<name>: cannot read image: <reason>"`` (unreadable, empty, truncated, not an image,
            a decompression bomb) or ``"<name>: 32-bit integer pixels ..."``.
    """
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    where = _name(source, name)
    im = source if isinstance(source, Image.Image) else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = im or _open(source)
            orientation = _orientation(im)
            im.load()
        except DECODE_ERRORS as e:
            if im is not None and im is not source:
                im.close()
            raise DataError(f"{where}: cannot read image: {failure_reason(e)}") from None
    with contextlib.nullcontext(im) if im is source else im:
        if orientation != 1:
            im = im.transpose(_TRANSPOSE[orientation])
        arr = _to_float(im, where)
    if channels == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif channels == 1 and arr.shape[2] == 3:
        arr = (arr @ _LUMA)[:, :, None]
    if size:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if arr.shape[:2] != (h, w):
            arr = _resize(arr, h, w)
    return np.ascontiguousarray(arr, dtype=np.float32)
