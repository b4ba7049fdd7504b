import datetime
import os

import pytest
from PIL import Image

from modules import images


def test_saved_png_carries_the_infotext_and_no_timestamp(tmp_path):
    image = Image.new("RGB", (16, 16), "red")
    path = images.save_image(image, tmp_path, "42", "a prompt\nSteps: 1", today=datetime.date(2026, 1, 2))
    assert path == tmp_path / "2026-01-02" / "00000-42.png"
    assert Image.open(path).info["parameters"] == "a prompt\nSteps: 1"
    assert path.read_bytes() == images.png_bytes(image, "a prompt\nSteps: 1")


def test_numbers_continue_and_never_overwrite(tmp_path):
    image = Image.new("RGB", (8, 8))
    day = datetime.date(2026, 1, 2)
    first = images.save_image(image, tmp_path, "1", None, today=day)
    (tmp_path / "2026-01-02" / "00007-9.png").write_bytes(b"someone else's file")
    second = images.save_image(image, tmp_path, "2", None, today=day)
    assert first.name == "00000-1.png" and second.name == "00008-2.png"
    assert (tmp_path / "2026-01-02" / "00007-9.png").read_bytes() == b"someone else's file"


def test_write_new_file_refuses_an_existing_name_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        images.write_new_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_a_taken_number_moves_to_the_next(tmp_path, monkeypatch):
    """A concurrent writer taking our number between listing and linking makes us take the next one."""
    monkeypatch.setattr(images, "next_image_number", lambda folder: 0)
    day = datetime.date(2026, 1, 2)
    images.save_image(Image.new("RGB", (8, 8)), tmp_path, "1", None, today=day)
    second = images.save_image(Image.new("RGB", (8, 8), "white"), tmp_path, "1", None, today=day)
    assert second.name == "00001-1.png"
    assert Image.open(tmp_path / "2026-01-02" / "00000-1.png").getpixel((0, 0)) == (0, 0, 0)


def test_grid_places_images_in_rows():
    cells = [Image.new("RGB", (4, 4), colour) for colour in ("red", "green", "blue")]
    grid = images.image_grid(cells, 2)
    assert grid.size == (8, 8)
    assert grid.getpixel((5, 1)) == (0, 128, 0) and grid.getpixel((1, 5)) == (0, 0, 255)
    assert images.image_grid(cells * 3).size == (12, 12)


def test_saved_files_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = images.save_image(Image.new("RGB", (8, 8)), tmp_path, "1", None)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("file_format, pil_format", [("jpg", "JPEG"), ("webp", "WEBP")])
def test_jpeg_and_webp_carry_the_infotext_in_the_exif_comment_as_the_webui_writes_it(tmp_path, file_format, pil_format):
    text = "a cat, ünïcode\nSteps: 3, Seed: 1"
    path = images.save_image(Image.new("RGB", (16, 16), (10, 20, 30)), tmp_path, "1", text, file_format=file_format)
    assert path.name.endswith(f"-1.{file_format}")
    with Image.open(path) as saved:
        assert saved.format == pil_format
        comment = saved.getexif().get_ifd(images.EXIF_IFD)[images.USER_COMMENT]
    assert comment == b"UNICODE\0" + text.encode("utf-16-be")  # piexif's UserComment "unicode" layout
    assert images.read_infotext(path) == text
