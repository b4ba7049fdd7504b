"""The diffusion steps of one batch, in the order diffusers' Stable Diffusion pipelines run them.

The operations mirror `StableDiffusionPipeline.__call__` so that, given the same latents, the pixels are the same;
what differs is that noise comes from per-image generators (see modules.rng) and that each step reports to the
job's state, which can stop the loop.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from modules import prompt_encoding, prompt_parser, rng
from modules.runtime.state import GenerationState
from modules.sd_models import LoadedModel

# torchsde's Brownian interval reports float round-off at the last step (DPM++ SDE); the samples are unaffected.
warnings.filterwarnings("ignore", message="Should have tb<=t1", module="torchsde")


@dataclass
class PromptConditioning:
    """The text embeddings of a batch for classifier-free guidance, per sampling step: rows are the negative
    prompts, then the prompts; each row is a schedule of (end step, embedding) from prompt editing and alternation.

    A batch without editing has one embedding per row: `at` then returns the same tensor every step.
    """

    end_steps: list[list[int]]
    embeddings: list[list[torch.Tensor]]
    _by_indices: dict = field(default_factory=dict, repr=False)

    def at(self, step_index: int) -> torch.Tensor:
        """The (rows, tokens, dim) embeddings for sampling step `step_index` (0-based, one per model evaluation)."""
        indices = tuple(prompt_parser.schedule_index(ends, step_index) for ends in self.end_steps)
        if indices not in self._by_indices:
            self._by_indices[indices] = torch.cat([row[index] for row, index in zip(self.embeddings, indices)])
        return self._by_indices[indices]


def encode_prompts(
    model: LoadedModel,
    prompts: list[str],
    negative_prompts: list[str],
    clip_skip: int,
    emphasis: str,
    steps: int,
) -> PromptConditioning:
    """Each prompt's schedule over `steps` (modules.prompt_parser), each distinct text encoded once (cached by the
    model), every embedding padded with empty chunks to the longest one's length."""
    schedules = [prompt_parser.prompt_schedule(text, steps) for text in negative_prompts + prompts]
    embeddings = [
        [prompt_encoding.encode_text(model, text, clip_skip, emphasis) for _, text in schedule]
        for schedule in schedules
    ]
    tokens = max(embedding.shape[1] for row in embeddings for embedding in row)
    padded = [[prompt_encoding.pad_to_chunks(model, e, tokens, clip_skip) for e in row] for row in embeddings]
    return PromptConditioning([[end for end, _ in schedule] for schedule in schedules], padded)


def initial_noise(latent_shape, seeds, subseeds, subseed_strength, seed_resize_from) -> torch.Tensor:
    return torch.stack(
        [
            rng.image_noise(latent_shape, seed, subseed, subseed_strength, seed_resize_from)
            for seed, subseed in zip(seeds, subseeds)
        ]
    )


def step_kwargs(scheduler, generators: list[torch.Generator], eta: float | None) -> dict:
    accepted = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "generator" in accepted:
        kwargs["generator"] = generators
    if "eta" in accepted and eta is not None:
        kwargs["eta"] = eta
    return kwargs


def denoise(
    model: LoadedModel,
    scheduler,
    latents,
    timesteps,
    conditioning: PromptConditioning,
    cfg_scales: list[float],
    step_seeds: list[int],
    eta: float | None,
    state: GenerationState,
    image_conditioning: torch.Tensor | None = None,
    after_step=None,
) -> torch.Tensor:
    """The sampling loop. Per-image step noise comes from generators seeded from each image's seed; the text
    embeddings of each step come from `conditioning` (prompt editing changes them between steps).

    `cfg_scales` has one value per image; a batch whose values are all equal uses a plain scalar, the exact
    arithmetic of diffusers' pipeline. `image_conditioning`: an inpainting UNet's extra input channels, appended to
    the scaled latents as diffusers' inpainting pipeline does. `after_step(latents, step_index)`: the latents to go
    on from (inpainting keeps the unmasked area on the init image's path).
    """
    unet = model.pipeline.unet
    generators = rng.step_generators(step_seeds)
    if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE draws Brownian-tree noise, one tree per image
        scheduler.noise_sampler_seed = [generator.initial_seed() for generator in generators]
    extra = step_kwargs(scheduler, generators, eta)
    if len(set(cfg_scales)) == 1:
        cfg_scale = cfg_scales[0]
    else:
        cfg_scale = torch.tensor(cfg_scales, device=model.device, dtype=latents.dtype).view(-1, 1, 1, 1)
    state.sampling_steps = len(timesteps)
    if image_conditioning is not None:
        image_conditioning = torch.cat([image_conditioning] * 2).to(latents)
    for step_index, timestep in enumerate(timesteps):
        state.raise_if_stopped()
        model_input = scheduler.scale_model_input(torch.cat([latents] * 2), timestep)
        if image_conditioning is not None:
            model_input = torch.cat([model_input, image_conditioning], dim=1)
        embeddings = conditioning.at(step_index)
        noise_pred = unet(model_input, timestep, encoder_hidden_states=embeddings, return_dict=False)[0]
        noise_uncond, noise_text = noise_pred.chunk(2)
        noise_pred = noise_uncond + cfg_scale * (noise_text - noise_uncond)
        latents = scheduler.step(noise_pred, timestep, latents, **extra, return_dict=False)[0]
        if after_step is not None:
            latents = after_step(latents, step_index)
        state.step_done(latents)
    return latents


def txt2img_latents(model: LoadedModel, scheduler, noise: torch.Tensor, steps: int):
    """Timesteps and starting latents for text-to-image: pure noise scaled for the scheduler."""
    scheduler.set_timesteps(steps, device=model.device)
    latents = noise.to(model.device, model.dtype) * scheduler.init_noise_sigma
    return scheduler.timesteps, latents


def img2img_latents(
    model: LoadedModel,
    scheduler,
    init_latents: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    denoising_strength: float,
    run_steps: int | None = None,
):
    """Timesteps and starting latents for image-to-image: the image's latents noised to the strength's timestep.

    As in diffusers, `denoising_strength` of `steps` are run (strength 0 runs none and returns the image);
    `run_steps` runs that many of the schedule's last steps instead (the webui's hires second pass).
    """
    scheduler.set_timesteps(steps, device=model.device)
    init_timestep = min(int(steps * denoising_strength) if run_steps is None else run_steps, steps)
    start = max(steps - init_timestep, 0) * scheduler.order
    timesteps = scheduler.timesteps[start:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    if len(timesteps) == 0:
        return timesteps, init_latents
    noise = noise.to(model.device, model.dtype)
    latent_timestep = timesteps[:1].repeat(init_latents.shape[0])
    return timesteps, scheduler.add_noise(init_latents, noise, latent_timestep)


def encode_images(model: LoadedModel, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    """VAE latents of the init images (the distribution's mode, so no randomness enters here)."""
    return encode_pixels(model, image_pixels(model, images, width, height))


def image_pixels(model: LoadedModel, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    """Images as the VAE takes them: (B, 3, height, width) in -1..1."""
    pixels = model.pipeline.image_processor.preprocess(images, height=height, width=width)
    return pixels.to(model.device, model.dtype)


def encode_pixels(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    latents = model.pipeline.vae.encode(pixels.to(model.device, model.dtype)).latent_dist.mode()
    return latents * model.pipeline.vae.config.scaling_factor


def is_inpainting_model(model: LoadedModel) -> bool:
    """A 9-channel UNet: latents, mask, masked-image latents (the webui's and diffusers' inpainting models)."""
    return model.pipeline.unet.config.in_channels == latent_channels(model) * 2 + 1


def latent_channels(model: LoadedModel) -> int:
    return model.pipeline.vae.config.latent_channels


def decode_latents(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    vae = model.pipeline.vae
    pixels = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return model.pipeline.image_processor.postprocess(pixels, output_type="pil")


def latents_to_rgb_preview(latents: torch.Tensor) -> Image.Image:
    """A cheap preview of the first image's latents (the first three channels, normalised), for progress UIs."""
    channels = latents[0, :3].float().cpu()
    channels = (channels - channels.min()) / (channels.max() - channels.min() + 1e-8)
    return Image.fromarray((channels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
