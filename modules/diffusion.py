"""The diffusion steps of one batch, in the order diffusers' Stable Diffusion pipelines run them.

The operations mirror `StableDiffusionPipeline.__call__` so that, given the same latents, the pixels are the same;
what differs is that noise comes from per-image generators (see modules.rng) and that each step reports to the
job's state, which can stop the loop.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from modules import controlnet, guidance, prompt_encoding, prompt_parser, rng, sd_samplers
from modules.runtime.state import GenerationState
from modules.sd_models import LoadedModel

# torchsde's Brownian interval reports float round-off at the last step (DPM++ SDE); the samples are unaffected.
warnings.filterwarnings("ignore", message="Should have tb<=t1", module="torchsde")


@dataclass
class PromptConditioning:
    """The text embeddings of a batch for classifier-free guidance, per sampling step: rows are the negative
    prompts, then the prompts; each row is a schedule of (end step, encoding) from prompt editing and alternation.

    A batch without editing has one encoding per row: `at` then returns the same tensor every step.
    """

    end_steps: list[list[int]]
    encodings: list[list[prompt_encoding.TextEncoding]]
    _by_indices: dict = field(default_factory=dict, repr=False)

    def at(self, step_index: int) -> torch.Tensor:
        """The (rows, tokens, dim) embeddings for sampling step `step_index` (0-based, one per model evaluation)."""
        return self._rows(step_index, "context")

    def pooled_at(self, step_index: int) -> torch.Tensor:
        """SDXL's (rows, pooled dim) pooled embeddings for sampling step `step_index`."""
        return self._rows(step_index, "pooled")

    def _rows(self, step_index: int, part: str) -> torch.Tensor:
        indices = tuple(prompt_parser.schedule_index(ends, step_index) for ends in self.end_steps)
        if (indices, part) not in self._by_indices:
            rows = [getattr(row[index], part) for row, index in zip(self.encodings, indices)]
            self._by_indices[indices, part] = torch.cat(rows)
        return self._by_indices[indices, part]


def encode_prompts(
    model: LoadedModel,
    prompts: list[str],
    negative_prompts: list[str],
    clip_skip: int,
    emphasis: str,
    steps: int,
    first_pass_steps: int | None = None,
) -> PromptConditioning:
    """Each prompt's schedule over `steps` (modules.prompt_parser), each distinct text encoded once (cached by the
    model), every embedding padded with empty chunks to the longest one's length.

    SDXL encodes an empty negative prompt as zeros (embedding and pooled), as the webui and diffusers do."""
    schedules = [prompt_parser.prompt_schedule(text, steps, first_pass_steps) for text in negative_prompts + prompts]
    encodings = [
        [prompt_encoding.text_encoding(model, text, clip_skip, emphasis) for _, text in schedule]
        for schedule in schedules
    ]
    if model.family.zero_empty_negative:
        for row, schedule in zip(encodings[: len(negative_prompts)], schedules):
            row[:] = [zeros_if_empty(encoding, text) for encoding, (_, text) in zip(row, schedule)]
    tokens = max(encoding.hidden.shape[1] for row in encodings for encoding in row)
    padded = [
        [dataclasses.replace(e, hidden=prompt_encoding.pad_to_chunks(model, e.hidden, tokens, clip_skip)) for e in row]
        for row in encodings
    ]
    return PromptConditioning([[end for end, _ in schedule] for schedule in schedules], padded)


def zeros_if_empty(encoding: prompt_encoding.TextEncoding, text: str) -> prompt_encoding.TextEncoding:
    if text:
        return encoding
    return prompt_encoding.TextEncoding(
        *(
            None if part is None else torch.zeros_like(part)
            for part in (encoding.hidden, encoding.pooled, encoding.tail)
        )
    )


@dataclass
class RefinerSwitch:
    """An SDXL refiner taking over sampling: from the first step whose timestep t has (999 - t) / 1000 >=
    `switch_at` (the webui's default rule), its UNet samples with its own encodings of the prompts; the latents, the
    scheduler and the per-image step noise go on. `taken_over` says whether it did (then it decodes the images)."""

    model: LoadedModel
    conditioning: PromptConditioning
    switch_at: float
    taken_over: bool = False

    def step(self, timesteps) -> int | None:
        for index, timestep in enumerate(timesteps):
            if (999 - round(float(timestep))) / 1000 >= self.switch_at:
                return index
        return None


def refiner_switch(
    refiner: LoadedModel | None, prompts, negative_prompts, clip_skip, emphasis, steps, switch_at, first_pass_steps=None
) -> RefinerSwitch | None:
    if refiner is None:
        return None
    conditioning = encode_prompts(refiner, prompts, negative_prompts, clip_skip, emphasis, steps, first_pass_steps)
    return RefinerSwitch(refiner, conditioning, switch_at)


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
    refiner: RefinerSwitch | None = None,
    guidance_settings: guidance.GuidanceSettings | None = None,
    controls: list | None = None,
) -> torch.Tensor:
    """The sampling loop. Per-image step noise comes from generators seeded from each image's seed; the text
    embeddings of each step come from `conditioning` (prompt editing changes them between steps).

    `cfg_scales` has one value per image; a batch whose values are all equal uses a plain scalar, the exact
    arithmetic of diffusers' pipeline. `image_conditioning`: an inpainting UNet's extra input channels, appended to
    the scaled latents as diffusers' inpainting pipeline does. `after_step(latents, step_index)`: the latents to go
    on from (inpainting keeps the unmasked area on the init image's path). `refiner`: a model that takes over.
    `guidance_settings`: how the predictions combine (modules.guidance); None or plain CFG: the arithmetic above.
    `controls`: ControlNet units acting in this pass (modules.controlnet); none acts after a refiner takes over.
    """
    family = model.family
    unet, sampling_model = family.denoiser(model.pipeline), model
    generators = rng.step_generators(step_seeds)
    if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE draws Brownian-tree noise, one tree per image
        scheduler.noise_sampler_seed = [generator.initial_seed() for generator in generators]
    extra = step_kwargs(scheduler, generators, eta)
    if len(set(cfg_scales)) == 1:
        cfg_scale = cfg_scales[0]
    else:
        cfg_scale = torch.tensor(cfg_scales, device=model.device, dtype=latents.dtype).view(-1, 1, 1, 1)
    state.sampling_steps = len(timesteps)
    distilled = None if guidance_settings is None else guidance_settings.distilled_cfg_scale
    step_conditioning = family.step_conditioning(model, latents, distilled)  # SDXL: the size; FLUX dev: guidance
    switch_step = refiner.step(timesteps) if refiner is not None else None
    guided = guidance.for_batch(guidance_settings, cfg_scales, len(timesteps), unet)
    prompt_only = samples_prompt_only(family, guidance_settings, cfg_scales)
    if image_conditioning is not None:
        image_conditioning = torch.cat([image_conditioning] * 2).to(latents)
    for step_index, timestep in enumerate(timesteps):
        state.raise_if_stopped()
        if step_index == switch_step:
            sampling_model, family, controls = refiner.model, refiner.model.family, None
            unet, conditioning, refiner.taken_over = family.denoiser(refiner.model.pipeline), refiner.conditioning, True
            step_conditioning = family.step_conditioning(refiner.model, latents, distilled)
        embeddings = conditioning.at(step_index)
        unet_kwargs = family.denoiser_kwargs(step_conditioning, conditioning, step_index)
        if prompt_only:
            text, kwargs = prompt_half(embeddings, unet_kwargs)
            noise_pred = family.predict(unet, scale_model_input(scheduler, latents, timestep), timestep, text, kwargs)
        else:
            model_input = scale_model_input(scheduler, torch.cat([latents] * 2), timestep)
            if image_conditioning is not None:
                model_input = torch.cat([model_input, image_conditioning], dim=1)
            residuals = {}
            if controls:
                residuals = controlnet.step_residuals(
                    controls, step_index, len(timesteps), model_input, timestep, embeddings, unet_kwargs, prompt_half
                )
            noise_pred = family.predict(unet, model_input, timestep, embeddings, unet_kwargs | residuals)
            noise_uncond, noise_text = noise_pred.chunk(2)
            if guided is None:
                noise_pred = noise_uncond + cfg_scale * (noise_text - noise_uncond)
            else:
                perturbed = None
                if guided.perturbs:
                    with guided.perturbed(unet):
                        text, kwargs = prompt_half(embeddings, unet_kwargs)
                        perturbed = family.predict(
                            unet,
                            model_input.chunk(2)[1],
                            timestep,
                            text,
                            kwargs | controlnet.prompt_rows(residuals),
                        )
                noise_pred = guided.combine(step_index, timestep, noise_uncond, noise_text, perturbed)
        stepped = scheduler.step(noise_pred, timestep, latents, **extra)
        clean = predicted_clean(scheduler, stepped, latents, noise_pred, family.flow)
        latents = stepped.prev_sample
        if after_step is not None:
            latents = after_step(latents, step_index)
        state.step_done(latents, sampling_model, clean)
    return latents


def samples_prompt_only(family, guidance_settings: guidance.GuidanceSettings | None, cfg_scales) -> bool:
    """CFG 1 is the prompt's prediction: flow models skip the negative prompt's, as diffusers' SD 3 and FLUX do (with
    plain CFG; the other methods combine both predictions)."""
    plain = guidance_settings is None or guidance_settings.is_plain_cfg
    return plain and family.flow and all(scale == 1 for scale in cfg_scales)


def scale_model_input(scheduler, latents: torch.Tensor, timestep) -> torch.Tensor:
    """The latents as the denoiser takes them at `timestep` (flow-matching schedulers take them as they are)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return latents if scale is None else scale(latents, timestep)


def predicted_clean(scheduler, stepped, latents=None, prediction=None, flow: bool = False) -> torch.Tensor | None:
    """The sampler's prediction of the clean latents at this step: what its step reports (Euler, Heun, LMS, DPM2,
    DPM++ SDE, DDIM: `pred_original_sample`; LCM: `denoised`), or what a multistep solver that predicts the clean
    sample keeps (DPM++ 2M, UniPC); for a flow model's Euler, x - sigma * v; None where the sampler predicts none
    (PLMS)."""
    for name in ("pred_original_sample", "denoised"):
        value = getattr(stepped, name, None)
        if value is not None:
            return value
    if flow and prediction is not None and hasattr(scheduler, "sigmas") and scheduler.step_index is not None:
        sigma = scheduler.sigmas[scheduler.step_index - 1]  # the step just taken
        return latents - sigma.to(latents) * prediction
    config = scheduler.config
    predicts_clean = str(config.get("algorithm_type", "")).endswith("dpmsolver++") or config.get("predict_x0", False)
    outputs = getattr(scheduler, "model_outputs", None)
    return outputs[-1] if predicts_clean and outputs and outputs[-1] is not None else None


def prompt_half(embeddings: torch.Tensor, denoiser_kwargs: dict) -> tuple[torch.Tensor, dict]:
    """The denoiser's text inputs for the prompts alone (the guided batch's second half), for a perturbed evaluation."""
    return embeddings.chunk(2)[1], {name: second_half(value) for name, value in denoiser_kwargs.items()}


def second_half(value):
    """The prompts' rows of a per-row input (the negative prompts' come first); other inputs as they are."""
    if isinstance(value, dict):
        return {name: second_half(rows) for name, rows in value.items()}
    if value is None or len(value) == 1:  # one value for every row (FLUX's distilled guidance)
        return value
    return value.chunk(2)[1]


def txt2img_latents(model: LoadedModel, scheduler, noise: torch.Tensor, steps: int):
    """Timesteps and starting latents for text-to-image: pure noise scaled for the scheduler."""
    scheduler.set_timesteps(steps, device=model.device, **model.family.schedule_kwargs(scheduler, noise.shape, steps))
    latents = noise.to(model.device, model.dtype) * getattr(scheduler, "init_noise_sigma", 1.0)
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
    scheduler.set_timesteps(
        steps, device=model.device, **model.family.schedule_kwargs(scheduler, init_latents.shape, steps)
    )
    init_timestep = min(int(steps * denoising_strength) if run_steps is None else run_steps, steps)
    start = max(steps - init_timestep, 0) * scheduler.order
    timesteps = scheduler.timesteps[start:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    if len(timesteps) == 0:
        return timesteps, init_latents
    noise = noise.to(model.device, model.dtype)
    latent_timestep = timesteps[:1].repeat(init_latents.shape[0])
    return timesteps, sd_samplers.add_noise(scheduler, init_latents, noise, latent_timestep)


def encode_images(model: LoadedModel, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    """VAE latents of the init images (the distribution's mode, so no randomness enters here)."""
    return encode_pixels(model, image_pixels(model, images, width, height))


def image_pixels(model: LoadedModel, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    """Images as the VAE takes them: (B, 3, height, width) in -1..1."""
    pixels = model.pipeline.image_processor.preprocess(images, height=height, width=width)
    return pixels.to(model.device, model.dtype)


def encode_pixels(model: LoadedModel, pixels: torch.Tensor) -> torch.Tensor:
    vae = model.pipeline.vae  # float32 where the model's is float16 and the VAE overflows in it (modules.sd_models)
    return model.family.to_latents(model, vae.encode(pixels.to(model.device, vae.dtype)).latent_dist.mode())


def is_inpainting_model(model: LoadedModel) -> bool:
    """A 9-channel UNet: latents, mask, masked-image latents (the webui's and diffusers' inpainting models)."""
    return model.family.denoiser(model.pipeline).config.in_channels == latent_channels(model) * 2 + 1


def latent_channels(model: LoadedModel) -> int:
    return model.family.latent_channels(model)


def decode_latents(model: LoadedModel, latents: torch.Tensor) -> list[Image.Image]:
    pixels = model.pipeline.vae.decode(model.family.from_latents(model, latents), return_dict=False)[0]
    return model.pipeline.image_processor.postprocess(pixels, output_type="pil")


def latents_to_rgb_preview(latents: torch.Tensor) -> Image.Image:
    """A cheap preview of the first image's latents (the first three channels, normalised), for progress UIs."""
    channels = latents[0, :3].float().cpu()
    channels = (channels - channels.min()) / (channels.max() - channels.min() + 1e-8)
    return Image.fromarray((channels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
