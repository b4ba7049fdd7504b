"""Live previews: the image being sampled, made from its latents cheaply enough to show every few steps.

`live_preview` chooses for every face. The map and the small decode below are latent-sized (one pixel per latent
pixel), so a face upscales either the same way:
- a fitted linear map (RGB = weights @ latent channels + bias, pixel by pixel): next to free; the default model's
  is committed beside its weights (fitted by training/default_model/fit_preview_map.py);
- for a model without one, a full VAE decode, box-downscaled to latent size: exact but costs a decode.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules import diffusion
from modules.default_model import DEFAULT_MODEL_DIR, DEFAULT_PREVIEW_MAP
from modules.sd_models import LoadedModel

# Checkpoint folders whose own VAE has a fitted map.
FITTED_MAPS = {DEFAULT_MODEL_DIR: DEFAULT_PREVIEW_MAP}
# Latents up to this side (the project's models: 8 and 16) preview through a full VAE decode: true colours at a
# small cost (bench/preview_cost.py); larger ones through the fitted map where the model has one.
FULL_DECODE_MAX_LATENT_SIDE = 16


@dataclass(frozen=True)
class LatentRGBMap:
    """RGB in 0..1 = weights @ latent channels + bias, for latents as the UNet sees them (VAE-scaled)."""

    weights: tuple[tuple[float, ...], ...]  # rows R, G, B; one weight per latent channel
    bias: tuple[float, float, float]

    @classmethod
    def load(cls, path: Path) -> LatentRGBMap:
        record = json.loads(Path(path).read_text())
        return cls(tuple(tuple(row) for row in record["weights"]), tuple(record["bias"]))

    def save(self, path: Path, **notes) -> None:
        """Write the map as JSON; `notes` (how it was fitted, its error) are kept alongside for readers."""
        record = {"weights": [list(row) for row in self.weights], "bias": list(self.bias)} | notes
        Path(path).write_text(json.dumps(record, indent=2) + "\n")

    def rgb(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) in 0..1 from (B, C, h, w) latents."""
        weights = torch.tensor(self.weights, dtype=torch.float32)
        bias = torch.tensor(self.bias, dtype=torch.float32).view(1, 3, 1, 1)
        pixels = torch.einsum("rc,bchw->brhw", weights, latents.detach().float().cpu()) + bias
        return pixels.clamp(0, 1)


def live_preview(
    model: LoadedModel, latents: torch.Tensor, rgb_map: LatentRGBMap | None = None, decode_large: bool = True
) -> Image.Image:
    """The live preview every face shows (the widget form, the API's progress): small latents decoded at full size;
    larger ones through `rgb_map` or the model's fitted map; without a map, decoded (`decode_large`) or, where a
    decode would run beside the job in another thread (the API's request), the first three latent channels."""
    if rgb_map is None and max(latents.shape[-2:]) <= FULL_DECODE_MAX_LATENT_SIDE:
        return decoded_image(model, latents)
    rgb_map = rgb_map or fitted_map(model)
    if rgb_map is None and not decode_large:
        return diffusion.latents_to_rgb_preview(latents)
    return preview_image(model, latents, rgb_map)


def preview_image(model: LoadedModel, latents: torch.Tensor, rgb_map: LatentRGBMap | None = None) -> Image.Image:
    """The first image of a batch being sampled: through `rgb_map`, else the model's fitted map, else decoded."""
    rgb_map = rgb_map or fitted_map(model)
    if rgb_map is None:
        return decoded_preview(model, latents)
    pixels = rgb_map.rgb(latents[:1])[0]
    return Image.fromarray((pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def fitted_map(model: LoadedModel) -> LatentRGBMap | None:
    """The committed map of the model's checkpoint, if it has one and decodes with its own VAE (a map fits one
    VAE's latent space: an `sd_vae` override gets a full decode)."""
    path = FITTED_MAPS.get(Path(model.checkpoint.path).resolve())
    own_vae = model.networks.get("checkpoint_vae", model.pipeline.vae)
    if path is None or own_vae is not model.pipeline.vae:
        return None
    return load_map(path)


@functools.cache
def load_map(path: Path) -> LatentRGBMap:
    return LatentRGBMap.load(path)


def decoded_image(model: LoadedModel, latents: torch.Tensor) -> Image.Image:
    """The first image of the batch decoded by the VAE, at full size: true colours, at a decode's cost."""
    with torch.inference_mode():
        return diffusion.decode_latents(model, latents[:1])[0]


def decoded_preview(model: LoadedModel, latents: torch.Tensor) -> Image.Image:
    """The first image decoded by the VAE, downscaled to latent size."""
    return to_latent_size(decoded_image(model, latents), latents)


def to_latent_size(image: Image.Image, latents: torch.Tensor) -> Image.Image:
    """Box-averaged down to one pixel per latent pixel: what a fitted map is fitted against."""
    height, width = latents.shape[-2:]
    return image.resize((width, height), Image.Resampling.BOX)
