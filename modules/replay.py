"""From an infotext back to a processing object: the reproducibility loop (image -> parameters -> same image)."""

from __future__ import annotations

import warnings

from modules import determinism, devices, infotext, sd_models, sd_samplers
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img

# Infotext keys the engine writes itself (see processing.generation_parameters); every other key is kept verbatim.
_KNOWN_KEYS = {
    "Prompt",
    "Negative prompt",
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Size-1",
    "Size-2",
    "Model hash",
    "Model",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Seed resize from-1",
    "Seed resize from-2",
    "Denoising strength",
    "Clip skip",
    "Eta",
    "Fast path",
    "Kernels",
}
# Keys that describe an image without having changed its pixels: kept verbatim, no warning.
INERT_KEYS = {"Version"}


class ReplayWarning(UserWarning):
    """A replay that may not give the recorded image: keys Serena does not honour, or other CPU kernels."""


def replay_caveats(parameters: dict) -> list[str]:
    """Why replaying these parameters here may give another image; empty when nothing stands in the way."""
    caveats = []
    ignored = [key for key in parameters if key not in _KNOWN_KEYS and key not in INERT_KEYS]
    if ignored:
        caveats.append(f"infotext keys Serena does not honour: {', '.join(ignored)} (the new image may differ)")
    recorded = parameters.get("Kernels")
    here = determinism.infotext_value(devices.default_device())
    if recorded != here:
        caveats.append(
            f"the image records kernels {recorded or determinism.PORTABLE_DESCRIPTION!r}, this machine runs "
            f"{here or determinism.PORTABLE_DESCRIPTION!r}: bytes may differ"
        )
    return caveats


def checkpoint_for(parameters: dict) -> str | None:
    """The checkpoint an infotext names: the default model, or a model of that name in the models folder."""
    name = parameters.get("Model")
    if name in (None, sd_models.DEFAULT_MODEL_NAME):
        return None
    return str(sd_models.resolve_checkpoint(name).path)


def processing_from_infotext(text: str, init_images: list | None = None, strict: bool = False, **fields):
    """A txt2img processing (img2img when `init_images` are given) that regenerates the image `text` describes.

    Saving is off; pass `fields` to change anything (e.g. outpath_samples, do_not_save_samples=False). What may make
    the new image differ (keys not honoured, other CPU kernels) is a ReplayWarning, or a ValueError with `strict`.
    """
    parameters = infotext.parse_infotext(text)
    for caveat in replay_caveats(parameters):
        if strict:
            raise ValueError(f"infotext: {caveat}; a strict replay refuses it")
        warnings.warn(f"replay: {caveat}", ReplayWarning, stacklevel=2)
    sampler, schedule = sd_samplers.split_legacy_sampler_name(parameters.get("Sampler", "Euler a"))
    values: dict = {
        "prompt": parameters["Prompt"],
        "negative_prompt": parameters["Negative prompt"],
        "steps": int(parameters.get("Steps", 20)),
        "sampler_name": sampler,
        "scheduler": parameters.get("Schedule type", schedule),
        "cfg_scale": float(parameters.get("CFG scale", 7.0)),
        "seed": int(parameters.get("Seed", -1)),
        "sd_model_checkpoint": checkpoint_for(parameters),
        "do_not_save_samples": True,
        "do_not_save_grid": True,
    }
    if "Size-1" in parameters:
        values["width"], values["height"] = int(parameters["Size-1"]), int(parameters["Size-2"])
    if "Variation seed" in parameters:
        values["subseed"] = int(parameters["Variation seed"])
        values["subseed_strength"] = float(parameters.get("Variation seed strength", 0))
    if "Seed resize from-1" in parameters:
        values["seed_resize_from_w"] = int(parameters["Seed resize from-1"])
        values["seed_resize_from_h"] = int(parameters["Seed resize from-2"])
    if "Clip skip" in parameters:
        values["clip_skip"] = int(parameters["Clip skip"])
    if "Eta" in parameters:
        values["eta"] = float(parameters["Eta"])
    values["extra_generation_params"] = {key: value for key, value in parameters.items() if key in INERT_KEYS}
    if init_images is not None:
        if "Denoising strength" in parameters:
            values["denoising_strength"] = float(parameters["Denoising strength"])
        return StableDiffusionProcessingImg2Img(init_images=list(init_images), **(values | fields))
    return StableDiffusionProcessingTxt2Img(**(values | fields))
