"""The one image decoder: every Pillow mode against numpy ground truth, channels, resizing, bad files, and
training and the server decoding the same file to identical arrays."""

from __future__ import annotations

import numpy as np
import pytest
from data_quirks import encode, mode_cases, write_bad_files
from PIL import Image

from robust_paddle.data.decode import decode_image, probe_image
from robust_paddle.errors import DataError

CASES = mode_cases()
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_mode_decodes_to_ground_truth(case):
    src, truth = CASES[case]
    c = truth.shape[2]
    out = decode_image(src, channels=c)
    assert out.dtype == np.float32 and out.shape == truth.shape
    tol = 1.5 / 255 if case == "CMYK" else 1e-6
    np.testing.assert_allclose(out, truth, atol=tol, rtol=0)
    # the other channel count: grey repeated, colour -> ITU-R 601-2 luma
    other = decode_image(src, channels=4 - c if c == 3 else 3)
    expected = (truth @ LUMA)[..., None] if c == 3 else np.repeat(truth, 3, axis=2)
    np.testing.assert_allclose(other, expected, atol=tol, rtol=0)


def test_sixteen_bit_is_not_clipped_and_classes_stay_apart():
    lo, hi = np.full((4, 4), 2000, np.uint16), np.full((4, 4), 50000, np.uint16)
    a = decode_image(encode(Image.fromarray(lo)), channels=1)
    b = decode_image(encode(Image.fromarray(hi)), channels=1)
    np.testing.assert_allclose(a, 2000 / 65535, rtol=1e-6)
    np.testing.assert_allclose(b, 50000 / 65535, rtol=1e-6)
    # resizing keeps the 16-bit scale (bilinear of a constant image is the constant)
    np.testing.assert_allclose(decode_image(encode(Image.fromarray(hi)), channels=3, size=7), 50000 / 65535,
                               rtol=1e-6)


def test_resize_matches_float_bilinear_per_channel():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    out = decode_image(encode(Image.fromarray(rgb)), channels=3, size=(4, 5))
    assert out.shape == (4, 5, 3)
    ref = np.stack([np.asarray(Image.fromarray((rgb[..., c] / 255.0).astype(np.float32), "F")
                               .resize((5, 4), Image.BILINEAR)) for c in range(3)], 2)
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_int32_outside_16_bit_range_is_an_error():
    data = encode(Image.fromarray(np.array([[0, 70000]], np.int32)), "TIFF")
    with pytest.raises(DataError, match=r"^x\.tif: 32-bit integer pixels range 0\.\.70000, outside 0\.\.65535"):
        decode_image(data, channels=1, name="x.tif")


def test_exif_orientation_is_applied():
    arr = np.zeros((2, 4, 3), np.uint8)
    arr[0, 0] = 255
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(im, "JPEG", exif=exif.tobytes(), quality=100)
    info = probe_image(data)
    assert (info.width, info.height, info.mode, info.channels, info.format) == (2, 4, "RGB", 3, "JPEG")
    assert decode_image(data, channels=3).shape == (4, 2, 3)


@pytest.mark.parametrize("kind", ["zero", "random", "text", "truncated"])
def test_bad_files_give_one_line_naming_the_file(tmp_path, kind):
    path = write_bad_files(str(tmp_path))[kind]
    with pytest.raises(DataError, match=rf"^{path}: cannot read image: [^\n]+$"):
        decode_image(path, channels=3)
    if kind != "truncated":  # a truncated file still has a readable header
        with pytest.raises(DataError, match=rf"^{path}: cannot read image"):
            probe_image(path)
    with pytest.raises(DataError, match=r"^missing\.png: cannot read image: file not found$"):
        decode_image("missing.png", channels=1)


def test_probe_reads_mode_and_size(tmp_path):
    p = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((3, 7), np.uint16)).save(p)
    info = probe_image(p)
    assert (info.mode, info.width, info.height, info.channels, info.format) == ("I;16", 7, 3, 1, "PNG")


@pytest.mark.parametrize("case", ["I;16", "RGBA", "P_transparency", "CMYK", "L"])
def test_training_and_server_decode_the_same_file_identically(tmp_path, case):
    from robust_paddle.data.transforms import Pipeline
    from robust_paddle.deploy.predictor import ModelInfo, preprocess_images

    src, _ = CASES[case]
    path = tmp_path / "img.bin"
    path.write_bytes(src)
    for channels in (1, 3):
        mean, std = (0.2,) * channels, (0.5,) * channels
        pipe = Pipeline("image", mean, std, channels=channels, size=4)
        train_x = pipe(pipe.raw(str(path)), index=0)
        info = ModelInfo(model_dir=str(tmp_path), input_name="x", input_shape=(channels, 4, 4), kind="image",
                         output_name="y", softmax=False, mean=mean, std=std, class_names=["a", "b"],
                         model_version="v", source={})
        served = preprocess_images([path.read_bytes()], info)[0]
        np.testing.assert_array_equal(train_x, served)
