"""From an infotext back to a processing object: the reproducibility loop (image -> parameters -> same image).

Which key sets which field, and how its text is read, is each field's declaration (modules.generation_fields). Keys
no declaration reads are named in a ReplayWarning (an error with `strict`) and left out of the new image, except
those that describe an image without changing it (`INERT_KEYS`), which are written again.
"""

from __future__ import annotations

import dataclasses
import warnings

from modules import determinism, devices, extra_networks, generation_fields, infotext, sd_models
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img

# Keys that describe an image without having changed its pixels: kept verbatim, no warning.
INERT_KEYS = {"Version"}


class ReplayWarning(UserWarning):
    """A replay that may not give the recorded image: keys Serena does not honour, or other kernels."""


def unread_parameters(parameters: dict) -> dict:
    """The parsed infotext's pairs that no field declaration reads and the engine does not write (a webui's
    "Lora hashes", "Version", ...)."""
    engine = set(generation_fields.ENGINE_INFOTEXT_KEYS)
    return {
        key: value
        for key, value in parameters.items()
        if key not in engine and not generation_fields.reads_infotext_key(key)
    }


def replay_caveats(parameters: dict) -> list[str]:
    """Why replaying these parameters here may give another image; empty when nothing stands in the way."""
    caveats = []
    ignored = [key for key in unread_parameters(parameters) if key not in INERT_KEYS]
    if ignored:
        caveats.append(f"infotext keys Serena does not honour: {', '.join(ignored)} (the new image may differ)")
    recorded = parameters.get(determinism.KERNELS_KEY)
    here = determinism.infotext_value(devices.default_device())
    if recorded != here:
        caveats.append(
            f"the image records kernels {recorded or determinism.PORTABLE_DESCRIPTION!r}, this machine runs "
            f"{here or determinism.PORTABLE_DESCRIPTION!r}: bytes may differ"
        )
    return caveats


def model_caveat(parameters: dict, checkpoint) -> str | None:
    """Why the checkpoint a replay runs on may not be the one the image records: its "Model hash" differs."""
    recorded = parameters.get("Model hash", "").strip().lower()
    if not recorded or checkpoint.shorthash.startswith(recorded) or recorded.startswith(checkpoint.shorthash):
        return None
    return (
        f"the image records model hash {recorded} ({parameters.get('Model', 'unnamed')}), the model given is "
        f"{checkpoint.title}: the new image may differ"
    )


def caller_checkpoint(fields: dict) -> tuple[bool, object]:
    """(whether the caller names a checkpoint, which): the field itself or an override_settings entry."""
    if "sd_model_checkpoint" in fields:
        return True, fields["sd_model_checkpoint"]
    overrides = fields.get("override_settings") or {}
    return "sd_model_checkpoint" in overrides, overrides.get("sd_model_checkpoint")


def with_control_images(units: list, control_images: list | None) -> list:
    """The recorded units with their images, which the infotext cannot hold."""
    models = ", ".join(f"ControlNet {index}: {unit.model}" for index, unit in enumerate(units))
    if not control_images or len(control_images) != len(units):
        given = len(control_images or [])
        raise ValueError(
            f"control_images: the image was made with {len(units)} ControlNet unit(s) ({models}), whose control "
            f"images are not in the infotext; give {len(units)} (one per unit, in order), got {given}"
        )
    return [dataclasses.replace(unit, image=image) for unit, image in zip(units, control_images)]


def processing_from_infotext(
    text: str, init_images: list | None = None, strict: bool = False, control_images: list | None = None, **fields
):
    """A txt2img processing (img2img when `init_images` are given) that regenerates the image `text` describes.

    Saving is off; pass `fields` to change anything (e.g. outpath_samples, do_not_save_samples=False): the caller's
    fields win over the infotext's, which are then not read (a "Model" not installed here does not matter when
    `sd_model_checkpoint` names the model). LoRAs and embeddings come back through the prompt; a recorded "Lora
    hashes"/"TI hashes" entry whose file is missing here or has another hash is a ValueError. What may make the new
    image differ (keys not honoured, other kernels, a model whose hash is not the recorded "Model hash") is a
    ReplayWarning, or a ValueError with `strict`.

    An image made with ControlNet records its units ("ControlNet 0", ...) but not their images: `control_images`
    gives them, one per unit in order (a ValueError says how many and which models when they are missing).
    """
    parameters = infotext.parse_infotext(text)
    extra_networks.check_recorded_hashes(parameters)
    mode = "txt2img" if init_images is None else "img2img"
    given = set(fields)
    named, checkpoint_name = caller_checkpoint(fields)
    if named:
        given.add("sd_model_checkpoint")
    values = generation_fields.values_from_infotext(parameters, mode, given)
    if "controlnet_units" in values:
        values["controlnet_units"] = with_control_images(values["controlnet_units"], control_images)
    elif control_images:
        raise ValueError("control_images: the infotext records no ControlNet unit; leave them out")
    checkpoint = sd_models.resolve_checkpoint(checkpoint_name if named else values.get("sd_model_checkpoint"))
    caveats = replay_caveats(parameters)
    if model_differs := model_caveat(parameters, checkpoint):
        caveats.append(model_differs)
    for caveat in caveats:
        if strict:
            raise ValueError(f"infotext: {caveat}; a strict replay refuses it")
        warnings.warn(f"replay: {caveat}", ReplayWarning, stacklevel=2)
    inert = {key: value for key, value in unread_parameters(parameters).items() if key in INERT_KEYS}
    values = values | {
        "extra_generation_params": inert,
        "do_not_save_samples": True,
        "do_not_save_grid": True,
    }
    if init_images is not None:
        return StableDiffusionProcessingImg2Img(init_images=list(init_images), **(values | fields))
    return StableDiffusionProcessingTxt2Img(**(values | fields))
