"""The reproducibility loop: image -> infotext -> the same image again, and short fingerprints of images.

Opening images, reading their infotext and rebuilding the processing object live in the engine (modules.images,
modules.replay); this module runs them from the forms a notebook has at hand (a path, PNG bytes, a PIL image).
"""

from __future__ import annotations

import hashlib

from PIL import Image

from modules import generation_fields, images, infotext
from modules.images import read_infotext
from modules.processing import Processed, process_images
from modules.replay import processing_from_infotext

__all__ = ["png_hash", "read_infotext", "replay"]


def replay(
    png_or_path, init_images: list | None = None, strict: bool = False, control_images: list | None = None, **fields
) -> Processed:
    """Generate again from an image's infotext. img2img images need their `init_images`, ControlNet images their
    units' `control_images` (in order; the infotext cannot hold them); `fields` change anything
    else (e.g. sd_model_checkpoint to run on a model given by path, or do_not_save_samples=False to save).

    What may keep the new image from being the same (infotext keys Serena does not honour, other kernels than the
    image records) is a ReplayWarning; `strict=True` makes it a ValueError instead."""
    text = read_infotext(png_or_path)
    img2img_key = generation_fields.declaration_of("denoising_strength").infotext.key
    if init_images is None and img2img_key in infotext.parse_infotext(text):
        raise ValueError("init_images: this image was made by img2img; pass its init image to replay it")
    return process_images(
        processing_from_infotext(text, init_images, strict=strict, control_images=control_images, **fields)
    )


def png_hash(image_list: list[Image.Image] | Image.Image, length: int = 16) -> str:
    """A short sha256 over the PNG bytes (infotext included) the engine would save: equal hashes, equal files."""
    digest = hashlib.sha256()
    for image in [image_list] if isinstance(image_list, Image.Image) else image_list:
        digest.update(images.png_bytes(image, image.info.get("parameters")))
    return digest.hexdigest()[:length]
