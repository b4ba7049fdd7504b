"""Hires fix with the webui's semantics: a txt2img first pass, upscaled (in latent space or as an image), then
denoised again at the larger size as img2img.

`target` is the webui's `calculate_target_resolution` (pure); `second_pass` runs one batch's second pass. The second
pass's noise is drawn like the first's, from the images' own seeds at the new latent size (the webui makes a new
ImageRNG with the same seeds); its steps follow the webui's img2img with explicit steps: `hr_second_pass_steps` (or
`steps`) steps are run, the last ones of a schedule of steps / denoising_strength.
"""

from __future__ import annotations

from dataclasses import dataclass

from modules.field_types import MAX_SIZE


@dataclass(frozen=True)
class HiresTarget:
    """The second pass's size: `width` x `height` pixels after cutting `truncate_x`/`truncate_y` latent pixels (an
    `hr_resize` of another aspect ratio than the first pass is reached by scaling to cover it, then cropping)."""

    width: int
    height: int
    upscale_width: int
    upscale_height: int
    truncate_x: int
    truncate_y: int
    resize_x: int  # the hr_resize the job used (legacy firstphase sizes become one)
    resize_y: int


def target(width: int, height: int, hr_scale: float, resize_x: int, resize_y: int, factor: int = 8) -> HiresTarget:
    """The hires size for a first pass of width x height with a VAE of scale `factor` (the webui's: 8); ValueError
    naming the field when it is out of range."""
    truncate_x = truncate_y = 0
    if resize_x == 0 and resize_y == 0:
        upscale_width, upscale_height = int(width * hr_scale), int(height * hr_scale)
        field = "hr_scale"
    elif resize_y == 0:
        upscale_width, upscale_height = resize_x, resize_x * height // width
        field = "hr_resize_x"
    elif resize_x == 0:
        upscale_width, upscale_height = resize_y * width // height, resize_y
        field = "hr_resize_y"
    else:
        if width / height < resize_x / resize_y:
            upscale_width, upscale_height = resize_x, resize_x * height // width
        else:
            upscale_width, upscale_height = resize_y * width // height, resize_y
        truncate_x, truncate_y = (upscale_width - resize_x) // factor, (upscale_height - resize_y) // factor
        field = "hr_resize_x"
    final_width = (upscale_width // factor - truncate_x) * factor
    final_height = (upscale_height // factor - truncate_y) * factor
    if not (factor <= final_width <= MAX_SIZE and factor <= final_height <= MAX_SIZE):
        raise ValueError(
            f"{field}: the hires size {upscale_width}x{upscale_height} from a {width}x{height} first pass is out of "
            f"range; allowed {factor}..{MAX_SIZE} per side"
        )
    return HiresTarget(
        final_width, final_height, upscale_width, upscale_height, truncate_x, truncate_y, resize_x, resize_y
    )


def job_sizes(p, native_size: int, factor: int = 8) -> tuple[int, int, HiresTarget | None]:
    """The first pass's size and the hires target of a txt2img job. Legacy `firstphase_width`/`firstphase_height`
    make width x height the hires resize and the first phase the first pass."""
    width, height = p.width or native_size, p.height or native_size
    if not getattr(p, "enable_hr", False):
        return width, height, None
    resize_x, resize_y = p.hr_resize_x, p.hr_resize_y
    if p.firstphase_width or p.firstphase_height:
        resize_x, resize_y = width, height
        width, height = p.firstphase_width or width, p.firstphase_height or height
    return width, height, target(width, height, p.hr_scale, resize_x, resize_y, factor)


# The longest schedule a second pass makes (the webui's rule gives steps / strength: unbounded as the strength nears 0).
MAX_SCHEDULE_STEPS = 100_000


def second_pass_steps(steps: int, denoising_strength: float) -> tuple[int, int]:
    """(schedule length, steps run) for the second pass, as the webui's img2img with explicit steps; a strength so
    small that the schedule would pass MAX_SCHEDULE_STEPS runs the last steps of that many."""
    if denoising_strength == 0:
        return steps, 0
    return int(min(steps / min(denoising_strength, 0.999), MAX_SCHEDULE_STEPS)), steps


def truncate(latents, hires_target: HiresTarget):
    """Cut the latents to the hires size (centred), as the webui does for an hr_resize of another aspect ratio."""
    cut_y, cut_x = hires_target.truncate_y, hires_target.truncate_x
    if cut_x == 0 and cut_y == 0:
        return latents
    height, width = latents.shape[-2:]
    return latents[:, :, cut_y // 2 : height - (cut_y + 1) // 2, cut_x // 2 : width - (cut_x + 1) // 2]


def second_pass(p, model, job, indices, latents, state, timings, refiner_model=None):
    """One batch's second pass: upscale the first pass's latents to the hires size and denoise them again.

    `model` is the second pass's (hr_checkpoint_name, or the first pass's); `job` the ImageJob (seeds, prompts);
    `refiner_model` takes over within this pass. Returns the latents and the model that made them last.
    """
    from modules import controlnet, diffusion, extra_networks, guidance, masking, sd_samplers, upscalers

    hires_target: HiresTarget = job.hires
    factor = model.vae_scale_factor
    upscale_size = (hires_target.upscale_height // factor, hires_target.upscale_width // factor)
    image_conditioning = None
    with timings.phase("upscale"):
        if upscalers.is_latent(p.hr_upscaler):
            latents = upscalers.upscale_latents(latents, *upscale_size, p.hr_upscaler)
            pixels = None
        else:
            first_pass = diffusion.decode_latents(model, latents)
            width, height = upscale_size[1] * factor, upscale_size[0] * factor
            upscaled = [
                upscalers.upscale_image(image, hires_target.upscale_width, hires_target.upscale_height, p.hr_upscaler)
                for image in first_pass
            ]
            pixels = diffusion.image_pixels(model, upscaled, width, height)
            latents = diffusion.encode_pixels(model, pixels)
        if diffusion.is_inpainting_model(model):
            encode = lambda images: diffusion.encode_pixels(model, images)  # noqa: E731
            if pixels is None and p.inpainting_mask_weight < 1.0:
                pixels = model.pipeline.image_processor.preprocess(diffusion.decode_latents(model, latents))
            if pixels is None:
                height, width = latents.shape[-2:]
                image_conditioning = masking.txt2img_conditioning(
                    encode, latents.shape[0], height * factor, width * factor, latents
                )
            else:
                image_conditioning = masking.inpainting_conditioning(
                    encode, pixels.to(latents), None, latents.shape[-2:], p.inpainting_mask_weight, True
                )
            image_conditioning = truncate(image_conditioning, hires_target)
        latents = truncate(latents, hires_target)
    seeds = job.values("seed", indices)
    shape = (diffusion.latent_channels(model), *latents.shape[-2:])
    subseeds = job.values("subseed", indices)
    noise = diffusion.initial_noise(shape, seeds, subseeds, p.subseed_strength, job.seed_resize_from)
    scheduler = sd_samplers.create_scheduler(
        p.hr_sampler_name or p.sampler_name, p.hr_scheduler or p.scheduler, model.pipeline.scheduler.config
    )
    total_steps, run_steps = second_pass_steps(p.hr_second_pass_steps or p.steps, p.denoising_strength)
    with timings.phase("encode_prompt"):
        prompts = [extra_networks.strip_tags(job.hires_prompts[0][i]) for i in indices]
        negative_prompts = [job.hires_prompts[1][i] for i in indices]
        # Prompt editing goes on from the first pass's timeline over the second pass's requested steps, as the
        # webui's hires conditioning (its hires_steps); the step index counts the steps run.
        schedule = (p.hr_second_pass_steps or p.steps, p.steps)
        conditioning = diffusion.encode_prompts(model, prompts, negative_prompts, p.clip_skip, p.emphasis, *schedule)
        refiner = diffusion.refiner_switch(
            refiner_model,
            prompts,
            negative_prompts,
            p.clip_skip,
            p.emphasis,
            schedule[0],
            p.refiner_switch_at,
            schedule[1],
        )
    timesteps, latents = diffusion.img2img_latents(
        model, scheduler, latents.to(model.device, model.dtype), noise, total_steps, p.denoising_strength, run_steps
    )
    with timings.phase("sample"):
        latents = diffusion.denoise(
            model,
            scheduler,
            latents,
            timesteps,
            conditioning,
            job.values("cfg_scale", indices),
            [seed + p.eta_noise_seed_delta for seed in seeds],  # step noise only, as the webui's ENSD
            p.eta,
            state,
            image_conditioning=image_conditioning,
            refiner=refiner,
            guidance_settings=guidance.GuidanceSettings.of(p),
            controls=controlnet.prepare(p.controlnet_units, model, hires_target.width, hires_target.height, True),
        )
    return latents, refiner.model if refiner is not None and refiner.taken_over else model
