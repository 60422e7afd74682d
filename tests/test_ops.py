"""ops.atomic_write: all or nothing."""

import os

import pytest

from robust_paddle.ops import atomic_write


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "a.txt"
    with atomic_write(str(p)) as fh:
        fh.write("one\n")
    with atomic_write(str(p), "wb") as fh:
        fh.write(b"two\n")
    assert p.read_bytes() == b"two\n" and os.listdir(tmp_path) == ["a.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(str(p)) as fh:
        fh.write("new")
        raise RuntimeError("boom")
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_missing_folder_is_an_oserror(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_write(str(tmp_path / "no" / "a.txt")):
        pass
