"""Serena in a notebook: one-line generation helpers, a widget form, parameter sweeps, and the replay loop.

Nothing here generates on its own: every helper builds a StableDiffusionProcessing object and runs it through
`process_images` -> `ProcessingRunner`, exactly as the CLI and the API do.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

import modules  # noqa: F401  (portable CPU kernels, before anything below loads torch)

if TYPE_CHECKING:
    from PIL import Image

    from modules import sd_models
    from modules.processing import Processed

# Where each public name lives. Imported on first use, so that the CLI (`serena --help`) starts without loading
# torch, and the widget form without the notebook extra until it is asked for.
_PUBLIC = {
    "AttentionCapture": "modules.attention_maps",
    "Axis": "modules.sweeps.axes",
    "attention_grid": "serena_kit.attention",
    "attention_overlay": "serena_kit.attention",
    "bench": "serena_kit.benchmarks",
    "ControlNetUnit": "modules.control_units",
    "load_bench_runs": "serena_kit.benchmarks",
    "GenerationForm": "serena_kit.widgets",
    "GenerationState": "modules.runtime.state",
    "Processed": "modules.processing",
    "ProcessingRequest": "modules.runtime.runner",
    "ProcessingRunner": "modules.runtime.runner",
    "StableDiffusionProcessing": "modules.processing",
    "StableDiffusionProcessingImg2Img": "modules.processing",
    "StableDiffusionProcessingTxt2Img": "modules.processing",
    "SweepCell": "modules.sweeps.run",
    "SweepForm": "serena_kit.sweep_form",
    "SweepResult": "serena_kit.sweeps",
    "list_embeddings": "modules.extra_networks",
    "list_controlnets": "modules.controlnet",
    "list_loras": "modules.extra_networks",
    "parse_infotext": "modules.infotext",
    "png_hash": "serena_kit.reproduce",
    "process_images": "modules.processing",
    "read_infotext": "serena_kit.reproduce",
    "replay": "serena_kit.reproduce",
    "request_from_widgets": "serena_kit.widgets",
    "side_by_side": "modules.grids",
    "sweep": "serena_kit.sweeps",
    "TrajectoryCapture": "modules.trajectory",
    "upscale_for_display": "modules.grids",
}

__all__ = sorted([*_PUBLIC, "img2img", "load_model", "outpaint", "txt2img"])


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'serena_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def txt2img(prompt: str, **params) -> Processed:
    """Generate from a prompt; `params` are processing fields with the webui's names (seed, steps, cfg_scale, ...)."""
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    return process_images(StableDiffusionProcessingTxt2Img(prompt=prompt, **params))


def img2img(image: Image.Image | list[Image.Image], prompt: str, **params) -> Processed:
    """Generate from an init image (or one per batch position) and a prompt; `params` as for txt2img, plus
    img2img's (`mask=` inpaints: white is repainted). Images may be given as PIL images, file bytes or paths."""
    from modules import images
    from modules.processing import StableDiffusionProcessingImg2Img, process_images

    init_images = list(image) if isinstance(image, (list, tuple)) else [image]
    init_images = [images.open_image(item, "init_images") for item in init_images]
    for name in ("mask", "latent_mask"):
        if params.get(name) is not None:
            params[name] = images.open_image(params[name], name)
    return process_images(StableDiffusionProcessingImg2Img(init_images=init_images, prompt=prompt, **params))


def outpaint(
    image: Image.Image, prompt: str, *, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0, **params
) -> Processed:
    """Extend `image` by the given pixels on each side: the webui's "resize and fill" onto the larger canvas (the
    image's edge pixels stretched over the new border), then inpainting of the border only (a mask over it).
    `params` as for img2img; sides should keep the size a multiple of 8."""
    from modules import images, outpainting

    image = images.open_image(image, "image")
    canvas, mask = outpainting.canvas_and_mask(image, left=left, right=right, top=top, bottom=bottom)
    defaults = {"inpainting_fill": 1, "inpaint_full_res": False, "denoising_strength": 0.9}
    values = defaults | params | {"width": canvas.width, "height": canvas.height, "mask": mask}
    return img2img(canvas, prompt, **values)


def load_model(path_or_default: str | os.PathLike | None = None, **options) -> sd_models.LoadedModel:
    """Load a checkpoint (None or "default": the embedded default model) ahead of generating; `options` are
    `device`, `dtype` and `allow_pickle`. Generations name their model with `sd_model_checkpoint`."""
    from modules import sd_models

    return sd_models.load_model(path_or_default, **options)
