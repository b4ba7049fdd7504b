"""Generation requests with the webui's field names and defaults, their result, and the engine that runs them.

Callers build a StableDiffusionProcessing (txt2img or img2img) and call `process_images(p)`, which hands the job
and `process_images_inner` to the execution boundary `ProcessingRunner`. The engine never changes the caller's
object: overrides are applied to a copy, and everything it decides (seeds, sizes) is reported in the returned
Processed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from dataclasses import dataclass, field

import torch
from PIL import Image

from modules import determinism, diffusion, images, infotext, rng, sd_models, sd_samplers, styles, validation
from modules.runtime.runner import ProcessingRequest, ProcessingRunner
from modules.runtime.state import GenerationState, Interrupted, Skipped
from modules.runtime.timings import PhaseTimings

# override_settings keys (the webui's option names) -> processing fields.
OVERRIDABLE_SETTINGS = {
    "sd_model_checkpoint": "sd_model_checkpoint",
    "CLIP_stop_at_last_layers": "clip_skip",
    "eta_ddim": "eta",
    "samples_save": None,  # inverted into do_not_save_samples
    "grid_save": None,  # inverted into do_not_save_grid
}


@dataclass
class StableDiffusionProcessing:
    """One generation job. `width`/`height` None means the model's native size; `seed` -1 means random.

    `prompt`, `negative_prompt`, `seed`, `subseed` and `cfg_scale` also take a list with one value per image
    (batch_size x n_iter): that is how a sweep runs cells that differ only in these as one batch.
    """

    prompt: str | list[str] = ""
    negative_prompt: str | list[str] = ""
    styles: list[str] = field(default_factory=list)
    seed: int | list[int] = -1
    subseed: int | list[int] = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str = "Euler a"
    scheduler: str = "Automatic"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float | list[float] = 7.0
    width: int | None = None
    height: int | None = None
    eta: float | None = None
    clip_skip: int = 1
    sd_model_checkpoint: str | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    override_settings: dict = field(default_factory=dict)
    outpath_samples: str = ""
    outpath_grids: str = ""
    exact: bool = False  # one image at a time: bytes independent of batch size
    extra_generation_params: dict = field(default_factory=dict)
    state: GenerationState = field(default_factory=GenerationState, compare=False, repr=False)

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field; loads no model."""
        validation.require_type("override_settings", self.override_settings, dict, "a dict of webui options")
        unknown = sorted(set(self.override_settings) - set(OVERRIDABLE_SETTINGS))
        if unknown:
            raise ValueError(
                f"override_settings: unknown option {unknown[0]!r}; supported: {', '.join(OVERRIDABLE_SETTINGS)}"
            )
        effective = self.with_overrides()
        validation.check_processing(effective, styles.load_styles())
        checkpoint = sd_models.resolve_checkpoint(effective.sd_model_checkpoint)
        if checkpoint.is_pickle and not sd_models.model_cache.holds(checkpoint):
            raise ValueError(
                f"sd_model_checkpoint: {checkpoint.path.name} is a pickle checkpoint, which can run code when "
                "loaded; load it explicitly with load_model(path, allow_pickle=True) or convert it to .safetensors"
            )

    def with_overrides(self) -> StableDiffusionProcessing:
        """A copy with override_settings applied to the fields they name."""
        changes = {}
        for key, value in self.override_settings.items():
            if key == "samples_save":
                changes["do_not_save_samples"] = not value
            elif key == "grid_save":
                changes["do_not_save_grid"] = not value
            else:
                changes[OVERRIDABLE_SETTINGS[key]] = value
        return dataclasses.replace(self, override_settings={}, **changes)


@dataclass
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    outpath_samples: str = "outputs/txt2img-images"
    outpath_grids: str = "outputs/txt2img-grids"


@dataclass
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = field(default_factory=list)
    denoising_strength: float = 0.75
    resize_mode: int = 0
    outpath_samples: str = "outputs/img2img-images"
    outpath_grids: str = "outputs/img2img-grids"

    def validate(self) -> None:
        super().validate()
        validation.check_img2img(self)


@dataclass
class Processed:
    """The result of a job, with the webui's field names. `images[index_of_first_image:]` are the samples; a grid,
    when made, comes first."""

    images: list[Image.Image]
    prompt: str
    negative_prompt: str
    seed: int
    subseed: int
    subseed_strength: float
    width: int
    height: int
    sampler_name: str
    scheduler: str
    cfg_scale: float
    steps: int
    batch_size: int
    all_prompts: list[str]
    all_negative_prompts: list[str]
    all_seeds: list[int]
    all_subseeds: list[int]
    infotexts: list[str]
    index_of_first_image: int = 0
    styles: list[str] = field(default_factory=list)
    sd_model_name: str = ""
    sd_model_hash: str = ""
    seed_resize_from_w: int = -1
    seed_resize_from_h: int = -1
    denoising_strength: float | None = None
    clip_skip: int = 1
    extra_generation_params: dict = field(default_factory=dict)
    job_timestamp: str = ""
    paths: list[str] = field(default_factory=list)  # saved files: samples then grid
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)  # what besides the job decides the bytes (determinism.job_kernels)

    @property
    def info(self) -> str:
        """The first image's infotext (the webui's `Processed.info`)."""
        return self.infotexts[0] if self.infotexts else ""

    def js(self) -> str:
        """The webui's info JSON."""
        data = {
            name: getattr(self, name)
            for name in (
                "prompt",
                "all_prompts",
                "negative_prompt",
                "all_negative_prompts",
                "seed",
                "all_seeds",
                "subseed",
                "all_subseeds",
                "subseed_strength",
                "width",
                "height",
                "sampler_name",
                "scheduler",
                "cfg_scale",
                "steps",
                "batch_size",
                "sd_model_name",
                "sd_model_hash",
                "seed_resize_from_w",
                "seed_resize_from_h",
                "denoising_strength",
                "extra_generation_params",
                "index_of_first_image",
                "infotexts",
                "styles",
                "job_timestamp",
                "clip_skip",
                "interrupted",
                "timings",
                "kernels",
            )
        }
        return json.dumps(data, ensure_ascii=False)


@dataclass
class ImageJob:
    """What the engine decided for a job before sampling: sizes, per-image prompts and seeds."""

    width: int
    height: int
    prompts: list[str]
    negative_prompts: list[str]
    seeds: list[int]
    subseeds: list[int]
    cfg_scales: list[float]
    seed_resize_from: tuple[int, int] | None  # latent (h, w), or None

    def batches(self, batch_size: int) -> list[range]:
        return [
            range(start, min(start + batch_size, len(self.seeds))) for start in range(0, len(self.seeds), batch_size)
        ]


def per_image_seeds(seed: int | list[int], count: int) -> list[int]:
    """A list gives each image its seed (-1 entries drawn at random); one seed gives image i seed + i."""
    if isinstance(seed, list):
        return [rng.resolve_seed(value) for value in seed]
    return rng.image_seeds(rng.resolve_seed(seed), count)


def plan_job(p: StableDiffusionProcessing, model: sd_models.LoadedModel) -> ImageJob:
    count = p.batch_size * p.n_iter
    prompts = p.prompt if isinstance(p.prompt, list) else [p.prompt] * count
    negatives = p.negative_prompt if isinstance(p.negative_prompt, list) else [p.negative_prompt] * count
    available = styles.load_styles() if p.styles else {}
    styled = [
        styles.apply_styles(prompt, negative, p.styles, available) for prompt, negative in zip(prompts, negatives)
    ]
    resize_from = None
    if p.seed_resize_from_h > 0 and p.seed_resize_from_w > 0:
        factor = model.vae_scale_factor
        resize_from = (p.seed_resize_from_h // factor, p.seed_resize_from_w // factor)
    return ImageJob(
        width=p.width or model.native_size,
        height=p.height or model.native_size,
        prompts=[prompt for prompt, _ in styled],
        negative_prompts=[negative for _, negative in styled],
        seeds=per_image_seeds(p.seed, count),
        subseeds=per_image_seeds(p.subseed, count),
        cfg_scales=p.cfg_scale if isinstance(p.cfg_scale, list) else [p.cfg_scale] * count,
        seed_resize_from=resize_from,
    )


def generation_parameters(
    p: StableDiffusionProcessing, job: ImageJob, index: int, model: sd_models.LoadedModel
) -> dict:
    """The infotext's key/value line for image `index`, in the webui's key order."""
    variation = p.subseed_strength > 0
    resized = job.seed_resize_from is not None
    parameters = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler if p.scheduler != "Automatic" else None,
        "CFG scale": job.cfg_scales[index],
        "Seed": job.seeds[index],
        "Size": f"{job.width}x{job.height}",
        "Model hash": model.checkpoint.shorthash,
        "Model": model.checkpoint.name,
        "Variation seed": job.subseeds[index] if variation else None,
        "Variation seed strength": p.subseed_strength if variation else None,
        "Seed resize from": f"{p.seed_resize_from_w}x{p.seed_resize_from_h}" if resized else None,
        "Denoising strength": getattr(p, "denoising_strength", None),
        "Clip skip": p.clip_skip if p.clip_skip > 1 else None,
        "Eta": p.eta,
        "Fast path": model.fast_path.infotext_value() if model.fast_path else None,
        "Kernels": determinism.infotext_value(model.device),
    }
    return parameters | dict(p.extra_generation_params)


def prepare_init_image(image: Image.Image, width: int, height: int, resize_mode: int) -> Image.Image:
    """Fit an init image to the output size with the webui's resize modes."""
    image = image.convert("RGB")
    if resize_mode in (0, 3):
        return image.resize((width, height), Image.LANCZOS)
    scale = (max if resize_mode == 1 else min)(width / image.width, height / image.height)
    resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    if resize_mode == 2:  # fill the borders with a stretched copy of the image
        canvas.paste(resized.resize((width, height), Image.LANCZOS))
    canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
    return canvas


def sample_batch(
    p: StableDiffusionProcessing, model: sd_models.LoadedModel, job: ImageJob, indices: range, timings: PhaseTimings
) -> list[Image.Image]:
    """Encode prompts, make noise, denoise and decode one batch of images."""
    seeds = [job.seeds[i] for i in indices]
    latent_shape = (
        model.pipeline.unet.config.in_channels,
        job.height // model.vae_scale_factor,
        job.width // model.vae_scale_factor,
    )
    with timings.phase("encode_prompt"):
        embeddings = diffusion.encode_prompts(
            model, [job.prompts[i] for i in indices], [job.negative_prompts[i] for i in indices], p.clip_skip
        )
    noise = diffusion.initial_noise(
        latent_shape, seeds, [job.subseeds[i] for i in indices], p.subseed_strength, job.seed_resize_from
    )
    scheduler = sd_samplers.create_scheduler(p.sampler_name, p.scheduler, model.pipeline.scheduler.config)
    if isinstance(p, StableDiffusionProcessingImg2Img):
        with timings.phase("encode_image"):
            init_images = [p.init_images[i % len(p.init_images)] for i in indices]  # position in its batch
            init_latents = encode_init_images(p, model, init_images, job)
        timesteps, latents = diffusion.img2img_latents(
            model, scheduler, init_latents, noise, p.steps, p.denoising_strength
        )
    else:
        timesteps, latents = diffusion.txt2img_latents(model, scheduler, noise, p.steps)
    with timings.phase("sample"):
        latents = diffusion.denoise(
            model,
            scheduler,
            latents,
            timesteps,
            embeddings,
            [job.cfg_scales[i] for i in indices],
            seeds,
            p.eta,
            p.state,
        )
    with timings.phase("decode"):
        return diffusion.decode_latents(model, latents)


def encode_init_images(p, model: sd_models.LoadedModel, init_images: list[Image.Image], job: ImageJob):
    if p.resize_mode != 3:
        prepared = [prepare_init_image(image, job.width, job.height, p.resize_mode) for image in init_images]
        return diffusion.encode_images(model, prepared, job.width, job.height)
    # Latent upscale: encode at the image's own size, then resize the latents.
    factor = model.vae_scale_factor
    width, height = (
        max(factor, init_images[0].width // factor * factor),
        max(factor, init_images[0].height // factor * factor),
    )
    prepared = [image.convert("RGB").resize((width, height), Image.LANCZOS) for image in init_images]
    latents = diffusion.encode_images(model, prepared, width, height)
    return torch.nn.functional.interpolate(
        latents, size=(job.height // factor, job.width // factor), mode="bilinear", antialias=False
    )


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a job through the execution boundary. Every face calls this."""
    return ProcessingRunner(process_images_inner).run(ProcessingRequest(p))


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    """Validate, load the model, then for each batch: prompts -> noise -> sampling -> decode -> infotext -> save."""
    p.validate()
    p = p.with_overrides()
    state = p.state
    timings = PhaseTimings()
    with timings.phase("load_model"):
        model = sd_models.model_cache.get(sd_models.resolve_checkpoint(p.sd_model_checkpoint))
    job = plan_job(p, model)
    batch_size = 1 if p.exact else p.batch_size
    batches = job.batches(batch_size)
    job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
    samples: list[Image.Image] = []
    infotexts: list[str] = []
    kept_indices: list[int] = []
    paths: list[str] = []
    state.begin(job_count=len(batches), sampling_steps=p.steps)
    try:
        with torch.inference_mode(), determinism.generation_kernels(model.device):
            for batch_no, indices in enumerate(batches):
                state.begin_batch(batch_no)
                try:
                    batch_images = sample_batch(p, model, job, indices, timings)
                except Skipped:
                    continue
                for index, image in zip(indices, batch_images):
                    text = infotext.create_infotext(
                        job.prompts[index], job.negative_prompts[index], generation_parameters(p, job, index, model)
                    )
                    if not p.do_not_save_samples:
                        with timings.phase("save"):
                            paths.append(str(images.save_image(image, p.outpath_samples, str(job.seeds[index]), text)))
                    image.info["parameters"] = text
                    samples.append(image)
                    infotexts.append(text)
                    kept_indices.append(index)
    except Interrupted:
        pass
    finally:
        state.end()

    output_images, index_of_first_image = list(samples), 0
    if len(samples) > 1 and not p.do_not_save_grid:
        grid = images.image_grid(samples, p.batch_size)
        grid_text = infotexts[0]
        grid.info["parameters"] = grid_text
        with timings.phase("save"):
            paths.append(str(images.save_image(grid, p.outpath_grids, "grid", grid_text)))
        output_images.insert(0, grid)
        infotexts.insert(0, grid_text)
        index_of_first_image = 1

    first = kept_indices[0] if kept_indices else 0
    return Processed(
        images=output_images,
        prompt=job.prompts[first],
        negative_prompt=job.negative_prompts[first],
        seed=job.seeds[0],
        subseed=job.subseeds[0],
        subseed_strength=p.subseed_strength,
        width=job.width,
        height=job.height,
        sampler_name=p.sampler_name,
        scheduler=p.scheduler,
        cfg_scale=job.cfg_scales[first],
        steps=p.steps,
        batch_size=p.batch_size,
        all_prompts=[job.prompts[i] for i in kept_indices],
        all_negative_prompts=[job.negative_prompts[i] for i in kept_indices],
        all_seeds=[job.seeds[i] for i in kept_indices],
        all_subseeds=[job.subseeds[i] for i in kept_indices],
        infotexts=infotexts,
        index_of_first_image=index_of_first_image,
        styles=list(p.styles),
        sd_model_name=model.checkpoint.name,
        sd_model_hash=model.checkpoint.shorthash,
        seed_resize_from_w=p.seed_resize_from_w,
        seed_resize_from_h=p.seed_resize_from_h,
        denoising_strength=getattr(p, "denoising_strength", None),
        clip_skip=p.clip_skip,
        extra_generation_params=dict(p.extra_generation_params),
        job_timestamp=job_timestamp,
        paths=paths,
        interrupted=state.interrupted,
        timings=dict(timings),
        kernels=determinism.job_kernels(model.device),
    )
