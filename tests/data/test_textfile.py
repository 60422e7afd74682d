"""The one text-file reader: BOM, CRLF, blank lines, file:line errors, non-UTF-8 bytes; and its users."""

from __future__ import annotations

import numpy as np
import pytest

from robust_paddle.config import ConfigError, load_yaml
from robust_paddle.data.noise import load_noisy_label_file
from robust_paddle.data.sources import read_file_list
from robust_paddle.data.textfile import iter_text_lines, read_text, read_text_lines
from robust_paddle.errors import DataError

BOM = b"\xef\xbb\xbf"


def _write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("data", [
    b"a 1\nb 2\n", b"a 1\r\nb 2\r\n", BOM + b"a 1\r\nb 2\r\n\r\n", BOM + b"a 1\nb 2", b"\na 1\n  \n\t\nb 2\n\n",
])
def test_lines_are_the_same_whatever_the_editor(tmp_path, data):
    lines = read_text_lines(_write(tmp_path / "f.txt", data))
    assert [t for _, t in lines] == ["a 1", "b 2"]
    assert lines[0][1][0] == "a"  # no BOM glued to the first value


def test_line_numbers_count_skipped_blank_lines(tmp_path):
    p = _write(tmp_path / "f.txt", BOM + b"\r\nx\r\n\r\ny\r\n")
    assert read_text_lines(p) == [(2, "x"), (4, "y")]
    assert list(iter_text_lines(p, keep_blank=True)) == [(1, ""), (2, "x"), (3, ""), (4, "y")]


def test_non_utf8_byte_names_file_line_and_column(tmp_path):
    p = _write(tmp_path / "f.txt", b"ok 1\n\nbad\xff 2\n")
    with pytest.raises(DataError, match=r"f\.txt:3: byte 0xff at column 4 is not UTF-8"):
        read_text_lines(p)
    with pytest.raises(DataError, match=r"f\.txt:3: byte 0xff at column 4 is not UTF-8"):
        read_text(p)


def test_latin1_accent_column_counts_characters(tmp_path):
    p = _write(tmp_path / "f.txt", "é".encode() + b" caf\xe9\n")  # first char is valid 2-byte UTF-8
    with pytest.raises(DataError, match=r"f\.txt:1: byte 0xe9 at column 6"):
        read_text_lines(p)


def test_utf16_file_is_named(tmp_path):
    p = _write(tmp_path / "f.txt", "a 1\r\n".encode("utf-16"))
    with pytest.raises(DataError, match=r"f\.txt:1: the file is UTF-16; save it as UTF-8"):
        read_text_lines(p)
    with pytest.raises(DataError, match="UTF-16"):
        read_text(p)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=r"^noise.file: .*nope.txt does not exist$"):
        read_text_lines(str(tmp_path / "nope.txt"), what="noise.file")
    with pytest.raises(DataError, match="is a folder"):
        read_text(str(tmp_path))


def test_read_text_strips_bom_and_crlf(tmp_path):
    assert read_text(_write(tmp_path / "f.yaml", BOM + b"a: 1\r\nb: [x]\r\n")) == "a: 1\nb: [x]\n"


# ------------------------------------------------------------------------------------------------ users
def test_config_from_windows_editor_and_non_utf8_config(tmp_path):
    good = _write(tmp_path / "c.yaml", BOM + b"seed: 3\r\ntrain:\r\n  epochs: 2\r\n")
    assert load_yaml(good) == {"seed": 3, "train": {"epochs": 2}}
    bad = _write(tmp_path / "bad.yaml", b"seed: 3\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"^config: .*bad\.yaml:2: byte 0xe9 at column 6 is not UTF-8"):
        load_yaml(bad)


def test_file_list_with_bom_crlf_and_final_empty_line(tmp_path):
    (tmp_path / "img").mkdir()
    for n in ("0000.png", "0001.png"):
        (tmp_path / "img" / n).write_bytes(b"x")
    lst = _write(tmp_path / "train.txt", BOM + b"img/0000.png 0\r\nimg/0001.png 1\r\n\r\n")
    split = read_file_list(lst, str(tmp_path))
    assert split.data == [str(tmp_path / "img" / "0000.png"), str(tmp_path / "img" / "0001.png")]
    assert split.labels.tolist() == [0, 1]
    bad = _write(tmp_path / "bad.txt", b"img/0000.png 0\r\n\r\nimg/0001.png x\r\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: label 'x' is not an integer"):
        read_file_list(bad, str(tmp_path))


def test_noisy_label_file_with_bom_crlf_and_trailing_empty_line(tmp_path):
    p = _write(tmp_path / "noisy.txt", BOM + b"0\r\n2\r\n1\r\n\r\n")
    np.testing.assert_array_equal(load_noisy_label_file(p, n=3, num_classes=3), [0, 2, 1])
    bad = _write(tmp_path / "bad.txt", b"0\n\n1.5\n")
    with pytest.raises(DataError, match=r"bad\.txt:3: '1\.5' is not an integer label"):
        load_noisy_label_file(bad, n=2)


def test_transition_csv_with_bom_and_crlf(tmp_path):
    from robust_paddle.methods.forward_correction import load_transition

    p = _write(tmp_path / "t.csv", BOM + b"0.9,0.1\r\n0.2,0.8\r\n\r\n")
    np.testing.assert_allclose(load_transition(p, 2), [[0.9, 0.1], [0.2, 0.8]])
    bad = _write(tmp_path / "bad.csv", b"0.9,0.1\n0.2,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:2: '0\.2,x' is not comma-separated numbers"):
        load_transition(bad, 2)
