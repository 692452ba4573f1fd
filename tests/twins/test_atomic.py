"""twins.atomic.atomic_write: the one way a file is replaced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from twins.atomic import atomic_write


def test_bytes_text_and_writer(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    assert atomic_write(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    atomic_write(target, "é")
    assert target.read_bytes() == "é".encode()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"by writer"))
    assert target.read_bytes() == b"by writer"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temporary file left


def test_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")

    def half(tmp: Path) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_missing_directory_is_an_oserror_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic_write(tmp_path / "no" / "f.txt", "x")
    assert os.listdir(tmp_path) == []
