"""From an infotext back to a processing object: the reproducibility loop (image -> parameters -> same image).

Which key sets which field, and how its text is read, is each field's declaration (modules.generation_fields); keys
no declaration reads are kept verbatim in extra_generation_params, so they are written again.
"""

from __future__ import annotations

from modules import generation_fields, infotext
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img


def unread_parameters(parameters: dict) -> dict:
    """The parsed infotext's pairs that no field declaration reads and the engine does not write (a webui's
    "Lora hashes", "Version", ...): replay keeps them as text, they change nothing."""
    known = generation_fields.infotext_keys_read() | set(generation_fields.ENGINE_INFOTEXT_KEYS)
    return {key: value for key, value in parameters.items() if key not in known}


def processing_from_infotext(text: str, init_images: list | None = None, **fields):
    """A txt2img processing (img2img when `init_images` are given) that regenerates the image `text` describes.

    Saving is off; pass `fields` to change anything (e.g. outpath_samples, do_not_save_samples=False).
    """
    parameters = infotext.parse_infotext(text)
    mode = "txt2img" if init_images is None else "img2img"
    values = generation_fields.values_from_infotext(parameters, mode) | {
        "extra_generation_params": unread_parameters(parameters),
        "do_not_save_samples": True,
        "do_not_save_grid": True,
    }
    if init_images is not None:
        return StableDiffusionProcessingImg2Img(init_images=list(init_images), **(values | fields))
    return StableDiffusionProcessingTxt2Img(**(values | fields))
