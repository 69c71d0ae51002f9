"""Atomic writes: complete files with ordinary permissions, and nothing left behind when writing fails."""

import os
import stat

import pytest

from installation.storage import atomic_write, atomic_write_bytes


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"hello")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").read_bytes() == b"hello"
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", broken)
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
