"""A write that fails half-way leaves nothing behind: no half-written file, no hidden temp file, the old file intact."""

import errno
import os

import pytest
from PIL import Image

from modules import images


def disk_full_after_writing(monkeypatch):
    """The data is written, then flushing it to disk fails, as when the disk fills."""

    def fsync(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.os, "fsync", fsync)


def test_a_failed_image_save_leaves_no_file(tmp_path, monkeypatch):
    disk_full_after_writing(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        images.save_image(Image.new("RGB", (8, 8)), tmp_path, "7", "p\nSteps: 1, Sampler: Euler, Seed: 7")
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == []


def test_a_failed_replace_keeps_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "grid.png"
    target.write_bytes(b"the old grid")
    disk_full_after_writing(monkeypatch)
    with pytest.raises(OSError):
        images.replace_file(target, b"a new grid that never reaches the disk")
    assert target.read_bytes() == b"the old grid" and os.listdir(tmp_path) == ["grid.png"]


def test_a_failed_rename_removes_the_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "seeds.json"

    def failing_replace(source, destination):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(images.os, "replace", failing_replace)
    with pytest.raises(PermissionError):
        images.replace_file(target, b"[1, 2]")
    assert os.listdir(tmp_path) == []
