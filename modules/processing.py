"""Generation requests with the webui's field names and defaults, their result, and the engine that runs them.

Callers build a StableDiffusionProcessing (txt2img or img2img) and call `process_images(p)`, which hands the job
and `process_images_inner` to the execution boundary `ProcessingRunner`. The engine never changes the caller's
object: overrides are applied to a copy, and everything it decides (seeds, sizes) is reported in the returned
Processed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field

import torch
from PIL import Image

from modules import (
    determinism,
    diffusion,
    generation_fields,
    images,
    infotext,
    rng,
    sd_models,
    sd_samplers,
    styles,
    validation,
)
from modules.generation_fields import declared
from modules.runtime.runner import ProcessingRequest, ProcessingRunner
from modules.runtime.state import GenerationState, Interrupted, Skipped
from modules.runtime.timings import PhaseTimings


@dataclass
class StableDiffusionProcessing:
    """One generation job. Defaults, allowed values and infotext keys of every field: its declaration in
    modules.generation_fields. `width`/`height` None mean the model's native size; `seed` -1 means random.

    `prompt`, `negative_prompt`, `seed`, `subseed` and `cfg_scale` also take a list with one value per image
    (batch_size x n_iter): that is how a sweep runs cells that differ only in these as one batch. Sampler and schedule
    type are kept under the webui's own names ("k_euler_a" becomes "Euler a"; "DPM++ 2M Karras" becomes "DPM++ 2M"
    with scheduler "Karras").
    """

    prompt: str | list[str] = declared("prompt")
    negative_prompt: str | list[str] = declared("negative_prompt")
    styles: list[str] = declared("styles")
    seed: int | list[int] = declared("seed")
    subseed: int | list[int] = declared("subseed")
    subseed_strength: float = declared("subseed_strength")
    seed_resize_from_h: int = declared("seed_resize_from_h")
    seed_resize_from_w: int = declared("seed_resize_from_w")
    sampler_name: str = declared("sampler_name")
    scheduler: str = declared("scheduler")
    batch_size: int = declared("batch_size")
    n_iter: int = declared("n_iter")
    steps: int = declared("steps")
    cfg_scale: float | list[float] = declared("cfg_scale")
    width: int | None = declared("width")
    height: int | None = declared("height")
    eta: float | None = declared("eta")
    eta_noise_seed_delta: int = declared("eta_noise_seed_delta")
    clip_skip: int = declared("clip_skip")
    sd_model_checkpoint: str | None = declared("sd_model_checkpoint")
    do_not_save_samples: bool = declared("do_not_save_samples")
    do_not_save_grid: bool = declared("do_not_save_grid")
    samples_format: str = declared("samples_format")
    override_settings: dict = declared("override_settings")
    outpath_samples: str = declared("outpath_samples")
    outpath_grids: str = declared("outpath_grids")
    exact: bool = declared("exact")  # one image at a time: bytes independent of batch size
    extra_generation_params: dict = declared("extra_generation_params")
    state: GenerationState = field(default_factory=GenerationState, compare=False, repr=False)

    def __post_init__(self):
        self.sampler_name, self.scheduler = sd_samplers.canonical_names(self.sampler_name, self.scheduler)

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field; loads no model."""
        generation_fields.declaration_of("override_settings").check(self.override_settings)
        options = generation_fields.webui_options()
        unknown = sorted(set(self.override_settings) - set(options))
        if unknown:
            raise ValueError(f"override_settings: unknown option {unknown[0]!r}; supported: {', '.join(options)}")
        effective = self.effective()
        validation.check_processing(effective, styles.load_styles())
        checkpoint = sd_models.resolve_checkpoint(effective.sd_model_checkpoint)
        if checkpoint.is_pickle and not sd_models.model_cache.holds(checkpoint):
            raise ValueError(
                f"sd_model_checkpoint: {checkpoint.path.name} is a pickle checkpoint, which can run code when "
                "loaded; load it explicitly with load_model(path, allow_pickle=True) or convert it to .safetensors"
            )

    def effective(self) -> StableDiffusionProcessing:
        """The job as the engine runs it: a copy with override_settings applied to the fields they set."""
        return dataclasses.replace(
            self, override_settings={}, **generation_fields.fields_from_settings(self.override_settings)
        )


@dataclass
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    outpath_samples: str = declared("outpath_samples", "txt2img")
    outpath_grids: str = declared("outpath_grids", "txt2img")


@dataclass
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = declared("init_images")
    denoising_strength: float = declared("denoising_strength")
    resize_mode: int = declared("resize_mode")
    initial_noise_multiplier: float = declared("initial_noise_multiplier")
    outpath_samples: str = declared("outpath_samples", "img2img")
    outpath_grids: str = declared("outpath_grids", "img2img")


def all_values_name(name: str) -> str:
    """Where a result keeps a per-image field's value for every image: seed -> all_seeds."""
    return f"all_{name}s"


@dataclass
class Processed:
    """The result of a job, with the webui's field names. `images[index_of_first_image:]` are the samples; a grid,
    when made, comes first.

    A field named like a processing field reports that field's value; per-image fields (`seed`, `prompt`, ...) report
    the first image's, and `all_seeds`, `all_prompts`, ... every image's.
    """

    images: list[Image.Image] = field(metadata={"in_info": False})
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
    all_cfg_scales: list[float]
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
    paths: list[str] = field(default_factory=list, metadata={"in_info": False})  # saved files: samples, then grid
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    kernels: dict = field(default_factory=dict)  # what besides the job decides the bytes (determinism.job_kernels)

    @classmethod
    def of_job(
        cls, p: StableDiffusionProcessing, per_image: dict[str, list], first: dict | None = None, **result
    ) -> Processed:
        """A result of the (effective) job `p`: `per_image` holds each per-image field's values for the images kept,
        `first` the values reported when none was kept; `result` the rest (images, infotexts, width, ...)."""
        reported = {f.name for f in dataclasses.fields(cls)} & {f.name for f in dataclasses.fields(p)}
        values = {name: copy.copy(getattr(p, name)) for name in generation_fields.by_name() if name in reported}
        for name, kept in per_image.items():
            values[name] = kept[0] if kept else (first or {})[name]
            values[all_values_name(name)] = list(kept)
        return cls(**(values | result))

    def for_samples(self, positions: list[int]) -> Processed:
        """This result for some of its samples (positions among the samples, the grid not counted): a sweep gives
        each cell of a batch its own result this way."""
        first = self.index_of_first_image
        samples, infotexts = self.images[first:], self.infotexts[first:]
        per_image = {}
        for name in generation_fields.per_image_names():
            values = getattr(self, all_values_name(name))
            per_image[name] = values[positions[0]]
            per_image[all_values_name(name)] = [values[position] for position in positions]
        samples_saved = len(self.paths) >= len(samples)  # paths hold the samples (when saved), then the grid
        return dataclasses.replace(
            self,
            images=[samples[position] for position in positions],
            infotexts=[infotexts[position] for position in positions],
            index_of_first_image=0,
            batch_size=len(positions),
            paths=[self.paths[position] for position in positions] if samples_saved else [],
            **per_image,
        )

    @property
    def info(self) -> str:
        """The first image's infotext (the webui's `Processed.info`)."""
        return self.infotexts[0] if self.infotexts else ""

    def js(self) -> str:
        """The webui's info JSON: every field but the images and the file paths."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("in_info", True)}
        return json.dumps(data, ensure_ascii=False)


@dataclass
class ImageJob:
    """What the engine decided for a job before sampling: the size, and each image's value of every per-image field
    (seeds drawn for -1, styles applied to the prompts)."""

    width: int
    height: int
    per_image: dict[str, list]
    seed_resize_from: tuple[int, int] | None  # latent (h, w), or None

    def values(self, name: str, indices) -> list:
        return [self.per_image[name][index] for index in indices]

    def image_values(self, index: int) -> dict:
        return {name: values[index] for name, values in self.per_image.items()}

    def batches(self, batch_size: int) -> list[range]:
        count = len(self.per_image["seed"])
        return [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


def per_image_seeds(seed: int | list[int], count: int) -> list[int]:
    """A list gives each image its seed (-1 entries drawn at random); one seed gives image i seed + i."""
    if isinstance(seed, list):
        return [rng.resolve_seed(value) for value in seed]
    return rng.image_seeds(rng.resolve_seed(seed), count)


def plan_job(p: StableDiffusionProcessing, model: sd_models.LoadedModel) -> ImageJob:
    count = p.batch_size * p.n_iter
    per_image = {
        name: value if isinstance(value := getattr(p, name), list) else [value] * count
        for name in generation_fields.per_image_names()
    }
    available = styles.load_styles() if p.styles else {}
    styled = [
        styles.apply_styles(prompt, negative, p.styles, available)
        for prompt, negative in zip(per_image["prompt"], per_image["negative_prompt"])
    ]
    per_image |= {
        "prompt": [prompt for prompt, _ in styled],
        "negative_prompt": [negative for _, negative in styled],
        "seed": per_image_seeds(p.seed, count),
        "subseed": per_image_seeds(p.subseed, count),
    }
    resize_from = None
    if p.seed_resize_from_h > 0 and p.seed_resize_from_w > 0:
        factor = model.vae_scale_factor
        resize_from = (p.seed_resize_from_h // factor, p.seed_resize_from_w // factor)
    return ImageJob(
        width=p.width or model.native_size,
        height=p.height or model.native_size,
        per_image=per_image,
        seed_resize_from=resize_from,
    )


def image_values(p: StableDiffusionProcessing, job: ImageJob, index: int, model: sd_models.LoadedModel) -> dict:
    """Every field's value as the engine used it for image `index`: the image's own per-image values, the size
    made, and the checkpoint loaded."""
    values = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    resolved = {"width": job.width, "height": job.height, "sd_model_checkpoint": model.checkpoint}
    return values | job.image_values(index) | resolved


def generation_parameters(
    p: StableDiffusionProcessing, job: ImageJob, index: int, model: sd_models.LoadedModel
) -> dict:
    """The infotext's key/value line for image `index`: the fields' pairs in the webui's key order, the fast path's
    options, then extra_generation_params."""
    fast_path = model.fast_path.infotext_value() if model.fast_path else None
    pairs = generation_fields.infotext_pairs(image_values(p, job, index, model))
    kernels = {determinism.KERNELS_KEY: determinism.infotext_value(model.device)}
    return pairs | {generation_fields.FAST_PATH_KEY: fast_path} | kernels | dict(p.extra_generation_params)


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
    seeds = job.values("seed", indices)
    latent_shape = (
        model.pipeline.unet.config.in_channels,
        job.height // model.vae_scale_factor,
        job.width // model.vae_scale_factor,
    )
    with timings.phase("encode_prompt"):
        embeddings = diffusion.encode_prompts(
            model, job.values("prompt", indices), job.values("negative_prompt", indices), p.clip_skip
        )
    noise = diffusion.initial_noise(
        latent_shape, seeds, job.values("subseed", indices), p.subseed_strength, job.seed_resize_from
    )
    scheduler = sd_samplers.create_scheduler(p.sampler_name, p.scheduler, model.pipeline.scheduler.config)
    if isinstance(p, StableDiffusionProcessingImg2Img):
        with timings.phase("encode_image"):
            init_images = [p.init_images[i % len(p.init_images)] for i in indices]  # position in its batch
            init_latents = encode_init_images(p, model, init_images, job)
        if p.initial_noise_multiplier != 1:  # as in the webui: the noise added to the init latents, not step noise
            noise = noise * p.initial_noise_multiplier
        timesteps, latents = diffusion.img2img_latents(
            model, scheduler, init_latents, noise, p.steps, p.denoising_strength
        )
    else:
        timesteps, latents = diffusion.txt2img_latents(model, scheduler, noise, p.steps)
    with timings.phase("sample"):
        try:
            latents = diffusion.denoise(
                model,
                scheduler,
                latents,
                timesteps,
                embeddings,
                job.values("cfg_scale", indices),
                [seed + p.eta_noise_seed_delta for seed in seeds],  # step noise only, as the webui's ENSD
                p.eta,
                p.state,
            )
        except Interrupted:
            if not p.state.keep_interrupted_batch or p.state.current_latent is None:
                raise
            latents = p.state.current_latent  # decoded like a finished batch; the job stops after it
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
    p = p.effective()
    state = p.state
    timings = PhaseTimings()
    with timings.phase("load_model"):
        model = sd_models.model_cache.get(sd_models.resolve_checkpoint(p.sd_model_checkpoint))
    job = plan_job(p, model)
    batch_size = 1 if p.exact else p.batch_size
    batches = job.batches(batch_size)
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
                    values = job.image_values(index)
                    parameters = generation_parameters(p, job, index, model)
                    text = infotext.create_infotext(values["prompt"], values["negative_prompt"], parameters)
                    if not p.do_not_save_samples and not state.interrupted:  # the webui saves no cut-short image
                        with timings.phase("save"):
                            path = images.save_image(
                                image, p.outpath_samples, str(values["seed"]), text, file_format=p.samples_format
                            )
                            paths.append(str(path))
                    image.info["parameters"] = text
                    samples.append(image)
                    infotexts.append(text)
                    kept_indices.append(index)
                if state.interrupted:  # the batch sampled when the interrupt came, kept for the webui's API
                    break
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
            paths.append(str(images.save_image(grid, p.outpath_grids, "grid", grid_text, file_format=p.samples_format)))
        output_images.insert(0, grid)
        infotexts.insert(0, grid_text)
        index_of_first_image = 1

    return Processed.of_job(
        p,
        per_image={name: job.values(name, kept_indices) for name in job.per_image},
        first=job.image_values(0),  # reported when no image was kept
        images=output_images,
        width=job.width,
        height=job.height,
        infotexts=infotexts,
        index_of_first_image=index_of_first_image,
        sd_model_name=model.checkpoint.name,
        sd_model_hash=model.checkpoint.shorthash,
        job_timestamp=state.job_timestamp,
        paths=paths,
        interrupted=state.interrupted,
        timings=dict(timings),
        kernels=determinism.job_kernels(model.device),
    )
