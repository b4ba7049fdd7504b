"""Small helpers the tests share."""

import hashlib
import io

import numpy as np


def png_of(image) -> bytes:
    """The bytes the engine would save for `image` (its infotext included)."""
    from modules.images import png_bytes

    return png_bytes(image, image.info.get("parameters"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def max_pixel_difference(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def load_png(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def png_files(folder):
    """{relative path: bytes} of every PNG under `folder`."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.png"))}
