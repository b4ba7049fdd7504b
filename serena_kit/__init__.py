"""Serena in a notebook: one-line generation helpers, a widget form, parameter sweeps, and the replay loop.

Nothing here generates on its own: every helper builds a StableDiffusionProcessing object and runs it through
`process_images` -> `ProcessingRunner`, exactly as the CLI and the API do.
"""

from __future__ import annotations

import os

from PIL import Image

from modules import sd_models
from modules.infotext import parse_infotext
from modules.processing import (
    Processed,
    StableDiffusionProcessing,
    StableDiffusionProcessingImg2Img,
    StableDiffusionProcessingTxt2Img,
    process_images,
)
from modules.runtime.runner import ProcessingRequest, ProcessingRunner
from modules.runtime.state import GenerationState
from serena_kit.reproduce import png_hash, read_infotext, replay
from serena_kit.sweeps import Axis, SweepCell, SweepResult, sweep

# The widget form needs the notebook extra (ipywidgets): imported on first use, so that the plain install's
# `import serena_kit` and CLI work without it.
_FROM_WIDGETS = ("GenerationForm", "request_from_widgets")

__all__ = [
    "Axis",
    "GenerationForm",
    "GenerationState",
    "Processed",
    "ProcessingRequest",
    "ProcessingRunner",
    "StableDiffusionProcessing",
    "StableDiffusionProcessingImg2Img",
    "StableDiffusionProcessingTxt2Img",
    "SweepCell",
    "SweepResult",
    "img2img",
    "load_model",
    "parse_infotext",
    "png_hash",
    "process_images",
    "read_infotext",
    "replay",
    "request_from_widgets",
    "sweep",
    "txt2img",
]


def __getattr__(name: str):
    if name in _FROM_WIDGETS:
        from serena_kit import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'serena_kit' has no attribute {name!r}")


def txt2img(prompt: str, **params) -> Processed:
    """Generate from a prompt; `params` are processing fields with the webui's names (seed, steps, cfg_scale, ...)."""
    return process_images(StableDiffusionProcessingTxt2Img(prompt=prompt, **params))


def img2img(image: Image.Image | list[Image.Image], prompt: str, **params) -> Processed:
    """Generate from an init image (or one per batch position) and a prompt; `params` as for txt2img."""
    init_images = list(image) if isinstance(image, (list, tuple)) else [image]
    return process_images(StableDiffusionProcessingImg2Img(init_images=init_images, prompt=prompt, **params))


def load_model(path_or_default: str | os.PathLike | None = None, **options) -> sd_models.LoadedModel:
    """Load a checkpoint (None or "default": the embedded default model) ahead of generating; `options` are
    `device`, `dtype` and `allow_pickle`. Generations name their model with `sd_model_checkpoint`."""
    return sd_models.load_model(path_or_default, **options)
