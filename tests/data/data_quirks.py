"""Fixture generator: files with each quirk users' data has, with the numpy ground truth of what they hold.

Each writer returns the path it wrote; the ``*_truth`` values are what the one decoder must return.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

BOM = b"\xef\xbb\xbf"
RNG_SEED = 1234


def rng(seed: int = RNG_SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


def save(im: Image.Image, path: str, fmt: str | None = None, **kw) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    im.save(path, format=fmt, **kw)
    return path


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --------------------------------------------------------------------------- one image per Pillow mode
def mode_cases(h: int = 5, w: int = 6) -> dict[str, tuple[Image.Image | bytes, np.ndarray]]:
    """``{case: (image or encoded bytes, expected [H, W, C] float32 with C = the mode's colour channels)}``.

    Expected values are computed with numpy from the arrays written, not with Pillow conversions.
    """
    g = rng()
    out: dict[str, tuple[Image.Image | bytes, np.ndarray]] = {}
    bits = g.random((h, w)) > 0.5
    out["1"] = (encode(Image.fromarray(bits)), bits.astype(np.float32)[..., None])
    grey = g.integers(0, 256, (h, w), dtype=np.uint8)
    out["L"] = (encode(Image.fromarray(grey)), (grey / 255.0)[..., None])
    alpha = g.integers(0, 256, (h, w), dtype=np.uint8)
    a = alpha[..., None] / 255.0
    out["LA"] = (encode(Image.fromarray(np.stack([grey, alpha], 2), "LA")), (grey[..., None] / 255.0) * a + 1 - a)
    palette = g.integers(0, 256, (4, 3), dtype=np.uint8)
    idx = g.integers(0, 4, (h, w), dtype=np.uint8)
    p = Image.fromarray(idx, "P")
    p.putpalette(palette.reshape(-1).tolist())
    out["P"] = (encode(p), palette[idx] / 255.0)
    pt = p.copy()
    pt.info["transparency"] = 2  # palette entry 2 fully transparent (PNG tRNS)
    rgb_p = palette[idx] / 255.0
    out["P_transparency"] = (encode(pt, transparency=2), np.where((idx == 2)[..., None], 1.0, rgb_p))
    pa = Image.merge("PA", (Image.fromarray(idx, "L"), Image.fromarray(alpha, "L")))
    pa.putpalette(palette.reshape(-1).tolist())
    out["PA"] = (pa, rgb_p * a + 1 - a)
    rgb = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out["RGB"] = (encode(Image.fromarray(rgb)), rgb / 255.0)
    out["RGBA"] = (encode(Image.fromarray(np.concatenate([rgb, alpha[..., None]], 2), "RGBA")),
                   rgb / 255.0 * a + 1 - a)
    cmyk = g.integers(0, 256, (h, w, 4), dtype=np.uint8).astype(np.float64)
    cmyk_rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255.0 / 255.0  # Pillow's CMYK -> RGB
    out["CMYK"] = (encode(Image.fromarray(cmyk.astype(np.uint8), "CMYK"), "TIFF"), cmyk_rgb)
    u16 = g.integers(0, 65536, (h, w)).astype(np.uint16)
    out["I;16"] = (encode(Image.fromarray(u16)), (u16 / 65535.0)[..., None])
    out["I;16B"] = (encode(Image.fromarray(u16.astype(">u2")), "TIFF"), (u16 / 65535.0)[..., None])
    i32 = g.integers(0, 65536, (h, w)).astype(np.int32)
    out["I"] = (encode(Image.fromarray(i32), "TIFF"), (i32 / 65535.0)[..., None])
    f32 = (g.standard_normal((h, w)) * 3).astype(np.float32)
    out["F"] = (encode(Image.fromarray(f32), "TIFF"), f32[..., None])
    return out


def brightness_pair_16bit(folder: str, *, n: int = 20, size: int = 8) -> dict[str, list[str]]:
    """Two classes of 16-bit grey PNGs differing only in brightness (values near 2,000 vs near 50,000)."""
    g = rng(7)
    out: dict[str, list[str]] = {"dark": [], "bright": []}
    for cls, level in (("dark", 2000), ("bright", 50000)):
        for i in range(n):
            arr = (level + g.integers(-500, 500, (size, size))).astype(np.uint16)
            out[cls].append(save(Image.fromarray(arr), os.path.join(folder, cls, f"{i:04d}.png")))
    return out


# ------------------------------------------------------------------------------------------ bad files
def write_bad_files(folder: str) -> dict[str, str]:
    """Unreadable files: zero bytes, random bytes, a text file named .png, a truncated PNG."""
    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"{k}.png") for k in ("zero", "random", "text", "truncated")}
    open(paths["zero"], "wb").close()
    with open(paths["random"], "wb") as fh:
        fh.write(rng(3).integers(0, 256, 300, dtype=np.uint8).tobytes())
    with open(paths["text"], "w", encoding="utf-8") as fh:
        fh.write("this is not an image\n")
    png = encode(Image.fromarray(rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    with open(paths["truncated"], "wb") as fh:
        fh.write(png[: len(png) // 2])
    return paths


def colour_folder(folder: str, *, n: int = 6, size: int = 8, grey_first: bool = True) -> dict[str, list[str]]:
    """Two colour classes (red-ish vs blue-ish); with ``grey_first`` the file that sorts first is greyscale."""
    g = rng(5)
    out: dict[str, list[str]] = {"blue": [], "red": []}
    for cls, ch in (("blue", 2), ("red", 0)):
        for i in range(n):
            arr = g.integers(0, 60, (size, size, 3), dtype=np.uint8)
            arr[..., ch] = 200
            out[cls].append(save(Image.fromarray(arr), os.path.join(folder, cls, f"{i + 1:04d}.png")))
    grey = save(Image.fromarray(g.integers(0, 256, (size, size), dtype=np.uint8)),
                os.path.join(folder, "blue", "0000.png"))
    if grey_first:
        out["blue"].insert(0, grey)
    else:
        os.remove(grey)
    return out


def write_lines(path: str, lines: list[str], *, bom: bool = True, crlf: bool = True, final_empty: bool = True) -> str:
    """A text file as a Windows editor saves it: BOM, CRLF line ends, a final empty line."""
    end = "\r\n" if crlf else "\n"
    data = end.join(lines) + end + (end if final_empty else "")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh:
        fh.write((BOM if bom else b"") + data.encode("utf-8"))
    return path
