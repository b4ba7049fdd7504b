"""Saving images like the webui: `<outdir>/<date>/<NNNNN>-<seed>.png` with the infotext in a `parameters` chunk
(JPEG and WebP: in the EXIF UserComment, UTF-16 with the "UNICODE" prefix, where the webui writes it).

Writes are atomic (a temp file in the same folder, then a hard link to the final name, which fails instead of
overwriting) so no reader ever sees a half-written PNG and no existing file is replaced. A process killed mid-write
leaves at most a hidden `.tmp-<pid>-...` file, which numbering ignores and the next save into that folder removes
once its process is gone. A folder that cannot be written (full, read-only, not permitted) is an OSError naming it.
"""

from __future__ import annotations

import datetime
import io
import math
import os
import re
import secrets
from pathlib import Path

from PIL import Image, PngImagePlugin

_NUMBERED = re.compile(r"^(\d{5})-")
_TEMP_FILE = re.compile(r"^\.tmp-(\d+)-[0-9a-f]+")


SAVE_FORMATS = ("png", "jpg", "jpeg", "webp")  # the webui's samples_format values
_PIL_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
EXIF_IFD, USER_COMMENT = 0x8769, 0x9286
_UNICODE_PREFIX = b"UNICODE\0"


def image_bytes(image: Image.Image, infotext: str | None, file_format: str = "png") -> bytes:
    """The image file's bytes in `file_format` (SAVE_FORMATS) with the infotext where the webui puts it."""
    file_format = file_format.lower()
    if file_format == "png":
        return png_bytes(image, infotext)
    exif = Image.Exif()
    if infotext:
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = _UNICODE_PREFIX + infotext.encode("utf-16-be")
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=_PIL_FORMATS[file_format], exif=exif, quality=95)
    return buffer.getvalue()


def exif_infotext(image: Image.Image) -> str | None:
    """The infotext of a JPEG/WebP saved like the webui (EXIF UserComment), or None."""
    comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(comment, bytes) and comment.startswith(_UNICODE_PREFIX):
        return comment[len(_UNICODE_PREFIX) :].decode("utf-16-be", errors="replace")
    return comment if isinstance(comment, str) and comment else None


def png_bytes(image: Image.Image, infotext: str | None, compress_level: int | None = None) -> bytes:
    """PNG bytes with the infotext as the `parameters` text chunk (no timestamp: same image, same bytes).
    `compress_level` 1 for images shown once (live previews): faster, larger; None (zlib's default) for the rest."""
    metadata = PngImagePlugin.PngInfo()
    if infotext:
        metadata.add_text("parameters", infotext)
    buffer = io.BytesIO()
    options = {} if compress_level is None else {"compress_level": compress_level}
    image.save(buffer, format="PNG", pnginfo=metadata, **options)
    return buffer.getvalue()


def open_image(source: Image.Image | bytes | str | os.PathLike, field: str = "image") -> Image.Image:
    """An image from a PIL image (returned as is), image-file bytes, or a path; read fully, so no file stays open.

    TypeError for anything else, ValueError when it cannot be read; both name `field`.
    """
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{field}: expected a PIL image, image file bytes or a path, got {type(source).__name__}")
    try:
        with Image.open(source) as image:
            image.load()
            return image.copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"{field}: not a readable image ({' '.join(str(error).split())})") from None


def read_infotext(
    source: Image.Image | bytes | str | os.PathLike, field: str = "image", missing_ok: bool = False
) -> str:
    """The generation parameters stored in an image (the webui's PNG Info), from anything `open_image` takes.

    ValueError if it has none, unless `missing_ok` (then "").
    """
    image = open_image(source, field)
    text = image.info.get("parameters") or exif_infotext(image)
    if not text and not missing_ok:
        raise ValueError(f"{field}: the image has no generation parameters (no 'parameters' PNG text chunk)")
    return text or ""


def next_image_number(folder: Path) -> int:
    numbers = [int(match.group(1)) for name in os.listdir(folder) if (match := _NUMBERED.match(name))]
    return max(numbers, default=-1) + 1


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftover_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files of writers that died mid-save (their pid no longer runs); returns what it removed.

    Assumes the folder is written by processes of this machine (pids are per machine)."""
    removed = []
    for name in os.listdir(folder):
        match = _TEMP_FILE.match(name)
        if match and int(match.group(1)) != os.getpid() and not process_exists(int(match.group(1))):
            (folder / name).unlink(missing_ok=True)
            removed.append(folder / name)
    return removed


def write_temp_file(folder: Path, suffix: str, data: bytes) -> Path:
    """`data` in a new hidden file in `folder` (the same file system as the final name), flushed to disk.

    os.open with mode 0o666 (not mkstemp's 0o600) so the file gets the usual umask-based permissions.
    """
    temp_path = folder / f".tmp-{os.getpid()}-{secrets.token_hex(8)}{suffix}"
    descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
    return temp_path


def write_new_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically; FileExistsError if `path` exists (never overwrites)."""
    temp_path = write_temp_file(path.parent, path.suffix, data)
    try:
        os.link(temp_path, path)
    finally:
        os.unlink(temp_path)


def replace_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, replacing it: for files derived from others (a sweep's grid, its seeds)."""
    temp_path = write_temp_file(path.parent, path.suffix, data)
    try:
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def save_image(
    image: Image.Image,
    outdir: str | os.PathLike,
    basename_suffix: str,
    infotext: str | None,
    today: datetime.date | None = None,
    file_format: str = "png",
) -> Path:
    """Save under `outdir/<YYYY-MM-DD>/` as the next free `<NNNNN>-<suffix>.<file_format>`; returns the path."""
    folder = Path(outdir) / (today or datetime.date.today()).isoformat()
    data = image_bytes(image, infotext, file_format)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        remove_leftover_temp_files(folder)
        number = next_image_number(folder)
        while True:
            path = folder / f"{number:05d}-{basename_suffix}.{file_format.lower()}"
            try:
                write_new_file(path, data)
                return path
            except FileExistsError:  # another writer took this number: take the next one
                number += 1
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(error.errno, f"cannot save images in {folder}: {reason}") from error


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """Images in rows of `columns` (default: as square as possible), all cells the size of the first image."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    grid = Image.new("RGB", (columns * width, rows * height), "black")
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid
