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
    attention_maps,
    control_units,
    controlnet,
    determinism,
    diffusion,
    extra_networks,
    families,
    generation_fields,
    guidance,
    hires,
    images,
    infotext,
    lora,
    masking,
    resize_modes,
    rng,
    sd_models,
    sd_modules,
    sd_samplers,
    sd_vae,
    styles,
    textual_inversion,
    trajectory,
    validation,
)
from modules.field_types import named
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
    distilled_cfg_scale: float = declared("distilled_cfg_scale")
    guidance: str = declared("guidance")
    guidance_rescale: float = declared("guidance_rescale")
    guidance_start: float = declared("guidance_start")
    guidance_end: float = declared("guidance_end")
    apg_eta: float = declared("apg_eta")
    apg_norm_threshold: float = declared("apg_norm_threshold")
    apg_momentum: float = declared("apg_momentum")
    zero_init_steps: int = declared("zero_init_steps")
    perturbed_scale: float = declared("perturbed_scale")
    perturbed_layers: str = declared("perturbed_layers")
    width: int | None = declared("width")
    height: int | None = declared("height")
    eta: float | None = declared("eta")
    denoising_strength: float = declared("denoising_strength")
    inpainting_mask_weight: float = declared("inpainting_mask_weight")
    eta_noise_seed_delta: int = declared("eta_noise_seed_delta")
    clip_skip: int = declared("clip_skip")
    emphasis: str = declared("emphasis")
    sd_model_checkpoint: str | None = declared("sd_model_checkpoint")
    sd_vae: str = declared("sd_vae")
    additional_modules: list = declared("additional_modules")
    refiner_checkpoint: str | None = declared("refiner_checkpoint")
    refiner_switch_at: float = declared("refiner_switch_at")
    do_not_save_samples: bool = declared("do_not_save_samples")
    do_not_save_grid: bool = declared("do_not_save_grid")
    samples_format: str = declared("samples_format")
    override_settings: dict = declared("override_settings")
    outpath_samples: str = declared("outpath_samples")
    outpath_grids: str = declared("outpath_grids")
    exact: bool = declared("exact")  # one image at a time: bytes independent of batch size
    extra_generation_params: dict = declared("extra_generation_params")
    controlnet_units: list = declared("controlnet_units")
    state: GenerationState = field(default_factory=GenerationState, compare=False, repr=False)
    # Cross-attention maps to capture (modules.attention_maps; True: the defaults); they do not change the image.
    attention: attention_maps.AttentionCapture | bool | None = field(default=None, compare=False, repr=False)
    # The denoising trajectory to keep (modules.trajectory; True: the defaults); it does not change the image.
    trajectory: trajectory.TrajectoryCapture | bool | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        self.sampler_name, self.scheduler = sd_samplers.canonical_names(self.sampler_name, self.scheduler)
        if self.refiner_checkpoint in ("", "None", "none"):  # what the webui's clients send for "no refiner"
            self.refiner_checkpoint = None
        self.controlnet_units = control_units.as_units("controlnet_units", self.controlnet_units)

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first bad field; loads no model."""
        generation_fields.declaration_of("override_settings").check(self.override_settings)
        options = generation_fields.webui_options()
        unknown = sorted(set(self.override_settings) - set(options))
        if unknown:
            raise ValueError(f"override_settings: unknown option {unknown[0]!r}; supported: {', '.join(options)}")
        effective = self.effective()
        validation.check_processing(effective, styles.load_styles())
        prompts = effective.prompt if isinstance(effective.prompt, list) else [effective.prompt]
        available_loras = extra_networks.list_loras()
        for prompt in prompts:  # extra-network tags: well formed, and every LoRA named is here
            for tag in extra_networks.parse_lora_tags(prompt)[1]:
                extra_networks.find_lora(tag.name, available_loras)
        sd_vae.resolve(effective.sd_vae)
        if effective.refiner_checkpoint is not None:
            sd_models.resolve_checkpoint(effective.refiner_checkpoint, field="refiner_checkpoint")
        checkpoint = sd_models.resolve_checkpoint(
            effective.sd_model_checkpoint, modules=sd_modules.resolve(effective.additional_modules)
        )
        if checkpoint.architecture in families.FLOW_ARCHITECTURES:  # read from its folder or keys, not loaded
            sd_samplers.check_flow_sampler(effective.sampler_name, effective.scheduler)
            if getattr(effective, "enable_hr", False) and effective.hr_sampler_name:
                with named("hr_sampler_name"):
                    sd_samplers.check_flow_sampler(
                        effective.hr_sampler_name, effective.hr_scheduler or effective.scheduler
                    )
        check_controlnet_units(effective, checkpoint)
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


def check_controlnet_units(p: StableDiffusionProcessing, checkpoint) -> None:
    """Every active unit's model is here, and the model is of a family ControlNet runs on."""
    active = [(index, unit) for index, unit in enumerate(p.controlnet_units) if unit.active]
    if not active:
        return
    if checkpoint.architecture in families.FLOW_ARCHITECTURES:
        raise ValueError(
            f"controlnet_units: ControlNet runs on the UNet families (SD 1.x/2.x, SDXL); {checkpoint.name} is "
            f"{checkpoint.architecture}"
        )
    available = controlnet.list_controlnets()
    for index, unit in active:
        controlnet.find_controlnet(unit.model, f"controlnet_units[{index}].model", available)


@dataclass
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    """txt2img, with the webui's hires fix (`enable_hr`, modules.hires): `denoising_strength` is the second pass's."""

    enable_hr: bool = declared("enable_hr")
    hr_scale: float = declared("hr_scale")
    hr_resize_x: int = declared("hr_resize_x")
    hr_resize_y: int = declared("hr_resize_y")
    hr_upscaler: str = declared("hr_upscaler")
    hr_second_pass_steps: int = declared("hr_second_pass_steps")
    hr_sampler_name: str | None = declared("hr_sampler_name")
    hr_scheduler: str | None = declared("hr_scheduler")
    hr_prompt: str = declared("hr_prompt")
    hr_negative_prompt: str = declared("hr_negative_prompt")
    hr_checkpoint_name: str | None = declared("hr_checkpoint_name")
    firstphase_width: int = declared("firstphase_width")
    firstphase_height: int = declared("firstphase_height")
    outpath_samples: str = declared("outpath_samples", "txt2img")
    outpath_grids: str = declared("outpath_grids", "txt2img")

    def __post_init__(self):
        super().__post_init__()
        # The webui's clients send these for "as the first pass".
        if self.hr_sampler_name == "Use same sampler":
            self.hr_sampler_name = None
        if self.hr_scheduler == "Use same scheduler":
            self.hr_scheduler = None
        if self.hr_checkpoint_name == "Use same checkpoint":
            self.hr_checkpoint_name = None
        if isinstance(self.hr_sampler_name, str):  # "DPM++ 2M Karras" -> "DPM++ 2M" with schedule type Karras
            self.hr_sampler_name, schedule = sd_samplers.canonical_names(
                self.hr_sampler_name, self.hr_scheduler or "Automatic"
            )
            if self.hr_scheduler is None and schedule != "Automatic":
                self.hr_scheduler = schedule
        if isinstance(self.hr_scheduler, str):
            sampler = self.hr_sampler_name or self.sampler_name
            self.hr_scheduler = sd_samplers.canonical_names(sampler, self.hr_scheduler)[1]


@dataclass
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    """img2img, with the webui's inpainting when a `mask` is given (modules.masking)."""

    init_images: list = declared("init_images")
    resize_mode: int = declared("resize_mode")
    mask: Image.Image | None = declared("mask")
    latent_mask: Image.Image | None = declared("latent_mask")
    mask_blur: int | None = declared("mask_blur")
    mask_blur_x: int = declared("mask_blur_x")
    mask_blur_y: int = declared("mask_blur_y")
    inpainting_fill: int = declared("inpainting_fill")
    inpaint_full_res: bool = declared("inpaint_full_res")
    inpaint_full_res_padding: int = declared("inpaint_full_res_padding")
    inpainting_mask_invert: int = declared("inpainting_mask_invert")
    mask_round: bool = declared("mask_round")
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
    # One modules.attention_maps.AttentionMaps per sample when the job asked for them (`attention`).
    attention_maps: list = field(default_factory=list, metadata={"in_info": False})
    # One modules.trajectory.Trajectory per sample when the job asked for it (`trajectory`).
    trajectories: list = field(default_factory=list, metadata={"in_info": False})

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

    width: int  # the first pass's, with hires fix
    height: int
    per_image: dict[str, list]
    seed_resize_from: tuple[int, int] | None  # latent (h, w), or None
    loras: dict[str, extra_networks.NetworkFile] = field(default_factory=dict)  # the LoRA files found, by name
    embeddings: dict[str, extra_networks.NetworkFile] = field(default_factory=dict)  # the embeddings the job uses
    hires: hires.HiresTarget | None = None
    hires_prompts: tuple[list[str], list[str]] | None = None  # the second pass's (prompts, negative prompts)
    vae: sd_vae.VaeFile | None = None  # the VAE override (None: the checkpoint's own)
    controlnet_units: list = field(default_factory=list)  # the active units as the infotext records them

    def values(self, name: str, indices) -> list:
        return [self.per_image[name][index] for index in indices]

    def image_values(self, index: int) -> dict:
        return {name: values[index] for name, values in self.per_image.items()}

    def batches(self, batch_size: int) -> list[range]:
        count = len(self.per_image["seed"])
        return [range(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]

    def lora_tags(self, index: int) -> list[extra_networks.LoraTag]:
        return extra_networks.parse_lora_tags(self.per_image["prompt"][index])[1]

    def network_hashes(self, index: int) -> dict[str, str | None]:
        """The image's "Lora hashes" and "TI hashes" infotext values (None when it used none)."""
        loras = [self.loras[tag.name] for tag in self.lora_tags(index)]
        texts = [self.per_image["prompt"][index], self.per_image["negative_prompt"][index]]
        embeddings = extra_networks.mentioned_embeddings(texts, self.embeddings)
        return {
            extra_networks.LORA_HASHES_KEY: extra_networks.hashes_value(loras),
            extra_networks.TI_HASHES_KEY: extra_networks.hashes_value(embeddings),
        }


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
    width, height, hires_target = hires.job_sizes(p, model.native_size, model.vae_scale_factor)
    hires_prompts = None
    if hires_target is not None:  # empty: the image's own (styled) prompt
        hr_prompt, hr_negative = styles.apply_styles(p.hr_prompt, p.hr_negative_prompt, p.styles, available)
        hires_prompts = (
            [hr_prompt if p.hr_prompt else prompt for prompt in per_image["prompt"]],
            [hr_negative if p.hr_negative_prompt else negative for negative in per_image["negative_prompt"]],
        )
    return ImageJob(
        width=width,
        height=height,
        per_image=per_image,
        seed_resize_from=resize_from,
        loras=extra_networks.list_loras(),
        hires=hires_target,
        hires_prompts=hires_prompts,
        controlnet_units=controlnet.titled(p.controlnet_units),
    )


def image_values(p: StableDiffusionProcessing, job: ImageJob, index: int, model: sd_models.LoadedModel) -> dict:
    """Every field's value as the engine used it for image `index`: the image's own per-image values, the size
    made, and the checkpoint loaded."""
    values = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    resolved = {"width": job.width, "height": job.height, "sd_model_checkpoint": model.checkpoint}
    resolved["sd_vae"] = job.vae
    resolved["additional_modules"] = [path.name for path in model.checkpoint.modules]
    resolved["inpainting_unet"] = diffusion.is_inpainting_model(model)
    resolved["guidance_distilled"] = model.family.guidance_distilled(model)
    resolved["controlnet_units"] = job.controlnet_units
    if job.hires is not None:
        resolved |= {"hr_resize_x": job.hires.resize_x, "hr_resize_y": job.hires.resize_y}
        if p.hr_checkpoint_name is not None:
            resolved["hr_checkpoint_name"] = sd_models.resolve_checkpoint(p.hr_checkpoint_name)
    if p.refiner_checkpoint is not None:
        resolved["refiner_checkpoint"] = sd_models.resolve_checkpoint(p.refiner_checkpoint)
    if getattr(p, "mask", None) is not None:
        blur_x, blur_y = mask_blurs(p)
        resolved["mask_blur"] = blur_x if blur_x == blur_y else None  # the webui's rule
    return values | job.image_values(index) | resolved


def generation_parameters(
    p: StableDiffusionProcessing, job: ImageJob, index: int, model: sd_models.LoadedModel
) -> dict:
    """The infotext's key/value line for image `index`: the fields' pairs in the webui's key order, the fast path's
    options, then extra_generation_params."""
    fast_path = model.fast_path.infotext_value() if model.fast_path else None
    pairs = generation_fields.infotext_pairs(image_values(p, job, index, model))
    kernels = {determinism.KERNELS_KEY: determinism.infotext_value(model.device)}
    networks = job.network_hashes(index)
    return pairs | {generation_fields.FAST_PATH_KEY: fast_path} | kernels | networks | dict(p.extra_generation_params)


def prepare_init_image(image: Image.Image, width: int, height: int, resize_mode: int) -> Image.Image:
    """Fit an init image to the output size with the webui's resize modes (modules.resize_modes)."""
    return resize_modes.resize_image(resize_mode, masking.flatten(image), width, height)


def mask_blurs(p) -> tuple[int, int]:
    """(x, y) mask blur: `mask_blur` sets both, as the webui's setter does."""
    return (p.mask_blur, p.mask_blur) if p.mask_blur is not None else (p.mask_blur_x, p.mask_blur_y)


def sample_batch(
    p: StableDiffusionProcessing,
    model: sd_models.LoadedModel,
    job: ImageJob,
    indices: range,
    timings: PhaseTimings,
    hires_model: sd_models.LoadedModel | None = None,
    refiner_model: sd_models.LoadedModel | None = None,
) -> list[Image.Image]:
    """Encode prompts, make noise, denoise (then the hires pass) and decode one batch of images. A refiner takes
    over in the last pass: the hires pass when there is one (the webui's default), else the only one."""
    seeds = job.values("seed", indices)
    latent_shape = (
        diffusion.latent_channels(model),
        job.height // model.vae_scale_factor,
        job.width // model.vae_scale_factor,
    )
    prompts = [extra_networks.strip_tags(prompt) for prompt in job.values("prompt", indices)]  # LoRA tags out
    negative_prompts = job.values("negative_prompt", indices)
    with timings.phase("encode_prompt"):
        conditioning = diffusion.encode_prompts(model, prompts, negative_prompts, p.clip_skip, p.emphasis, p.steps)
        refiner = None
        if job.hires is None:
            refiner = diffusion.refiner_switch(
                refiner_model, prompts, negative_prompts, p.clip_skip, p.emphasis, p.steps, p.refiner_switch_at
            )
    noise = diffusion.initial_noise(
        latent_shape, seeds, job.values("subseed", indices), p.subseed_strength, job.seed_resize_from
    )
    scheduler = sd_samplers.create_scheduler(p.sampler_name, p.scheduler, model.pipeline.scheduler.config)
    init, blend = None, None
    if isinstance(p, StableDiffusionProcessingImg2Img):
        with timings.phase("encode_image"):
            init_images = [p.init_images[i % len(p.init_images)] for i in indices]  # position in its batch
            init = encode_init_images(p, model, init_images, job, seeds)
        if p.initial_noise_multiplier != 1:  # as in the webui: the noise added to the init latents, not step noise
            noise = noise * p.initial_noise_multiplier
        timesteps, latents = diffusion.img2img_latents(
            model, scheduler, init.latents, noise, p.steps, p.denoising_strength
        )
        if init.inpaint is not None:
            keep, regenerate = init.latent_masks
            blend = masking.LatentBlend(init.latents, noise.to(init.latents), keep, regenerate, scheduler, timesteps)
        image_conditioning = init.image_conditioning
    else:
        timesteps, latents = diffusion.txt2img_latents(model, scheduler, noise, p.steps)
        image_conditioning = txt2img_image_conditioning(model, latents)
    controls = batch_controls(p, model, job, init)
    guidance_settings = guidance.GuidanceSettings.of(p)
    recording = attention_maps.recording(
        p.attention,
        model,
        indices,
        prompts,
        p.emphasis,
        (job.width, job.height),
        latent_shape[1:],
        p.state,
        len(timesteps),
        diffusion.samples_prompt_only(model.family, guidance_settings, job.values("cfg_scale", indices)),
    )
    with timings.phase("sample"):
        try:
            with recording, trajectory.recording(p.trajectory, model, indices, p.state):
                latents = diffusion.denoise(
                    model,
                    scheduler,
                    latents,
                    timesteps,
                    conditioning,
                    job.values("cfg_scale", indices),
                    [seed + p.eta_noise_seed_delta for seed in seeds],  # step noise only, as the webui's ENSD
                    p.eta,
                    p.state,
                    image_conditioning=image_conditioning,
                    after_step=blend,
                    refiner=refiner,
                    guidance_settings=guidance_settings,
                    controls=controls,
                )
            if refiner is not None and refiner.taken_over:
                model = refiner_model  # its VAE decodes, as when the webui switches models
            if job.hires is not None:
                p.state.job_no, p.state.sampling_step = p.state.job_no + 1, 0  # the second pass: the batch's 2nd job
                model = hires_model or model
                latents, model = hires.second_pass(p, model, job, indices, latents, p.state, timings, refiner_model)
        except Interrupted:
            if not p.state.keep_interrupted_batch or p.state.current_latent is None:
                raise
            latents = p.state.current_latent  # decoded like a finished batch; the job stops after it
    with timings.phase("decode"):
        decoded = diffusion.decode_latents(model, latents)
    if init is not None and init.inpaint is not None:
        overlays = init.inpaint.overlays
        decoded = [
            masking.apply_overlay(image, overlays[position % len(overlays)], init.inpaint.paste_to)
            for position, image in enumerate(decoded)
        ]
    return decoded


def batch_controls(p, model: sd_models.LoadedModel, job: ImageJob, init) -> list[controlnet.ControlInput]:
    """The ControlNet units acting in the first pass, their images at the job's size (inpainting's "Only masked":
    cut to the masked area, as the init image is)."""
    crop = init.inpaint.paste_to if init is not None and init.inpaint is not None else None
    whole_size = p.init_images[0].size if crop is not None else None
    return controlnet.prepare(p.controlnet_units, model, job.width, job.height, crop=crop, whole_size=whole_size)


def check_refiner(model: sd_models.LoadedModel, refiner: sd_models.LoadedModel) -> None:
    """A refiner continues the model's latents: the same latent space and UNet inputs."""
    ours, theirs = (
        (diffusion.latent_channels(m), m.vae_scale_factor, m.family.denoiser(m.pipeline).config.in_channels)
        for m in (model, refiner)
    )
    if ours != theirs:
        raise ValueError(
            f"refiner_checkpoint: {refiner.checkpoint.name} cannot continue {model.checkpoint.name}'s sampling: "
            f"latent channels, VAE scale and UNet inputs {theirs} differ from {ours}"
        )


def txt2img_image_conditioning(model: sd_models.LoadedModel, latents):
    """An inpainting UNet's input for txt2img (a grey image under a full mask); None for ordinary UNets."""
    if not diffusion.is_inpainting_model(model):
        return None
    factor = model.vae_scale_factor
    height, width = latents.shape[-2:]
    encode = lambda pixels: diffusion.encode_pixels(model, pixels)  # noqa: E731
    return masking.txt2img_conditioning(encode, latents.shape[0], height * factor, width * factor, latents)


@dataclass
class InitLatents:
    """An img2img batch's starting latents; with a mask, what inpainting made of the init images and the latent
    masks (keep, regenerate); an inpainting UNet's conditioning."""

    latents: torch.Tensor
    inpaint: masking.InpaintImages | None = None
    latent_masks: tuple | None = None
    image_conditioning: torch.Tensor | None = None


def encode_init_images(p, model: sd_models.LoadedModel, init_images: list[Image.Image], job: ImageJob, seeds):
    factor = model.vae_scale_factor
    inpaint = None
    if p.mask is not None:
        blur_x, blur_y = mask_blurs(p)
        inpaint = masking.prepare(
            init_images,
            p.mask,
            job.width,
            job.height,
            0 if p.resize_mode == 3 else p.resize_mode,  # masks are fitted in pixels; the latents then match
            blur_x=blur_x,
            blur_y=blur_y,
            inpainting_fill=p.inpainting_fill,
            full_res=p.inpaint_full_res,
            padding=p.inpaint_full_res_padding,
            invert=bool(p.inpainting_mask_invert),
            round_mask=p.mask_round,
            latent_mask=p.latent_mask,
        )
        pixels = diffusion.image_pixels(model, inpaint.images, job.width, job.height)
        latents = diffusion.encode_pixels(model, pixels)
    elif p.resize_mode != 3:
        prepared = [prepare_init_image(image, job.width, job.height, p.resize_mode) for image in init_images]
        pixels = diffusion.image_pixels(model, prepared, job.width, job.height)
        latents = diffusion.encode_pixels(model, pixels)
    else:  # latent upscale: encode at the image's own size, then resize the latents
        width, height = (
            max(factor, init_images[0].width // factor * factor),
            max(factor, init_images[0].height // factor * factor),
        )
        prepared = [masking.flatten(image).resize((width, height), Image.LANCZOS) for image in init_images]
        pixels = diffusion.image_pixels(model, prepared, width, height)
        latents = torch.nn.functional.interpolate(
            diffusion.encode_pixels(model, pixels),
            size=(job.height // factor, job.width // factor),
            mode="bilinear",
            antialias=False,
        )
        pixels = torch.nn.functional.interpolate(pixels, size=(job.height, job.width), mode="bilinear")
    init = InitLatents(latents, inpaint)
    if inpaint is not None:
        init.latent_masks = masking.latent_masks(
            inpaint.latent_mask, latents.shape, p.mask_round, latents.device, latents.dtype
        )
        init.latents = masking.fill_latents(latents, *init.latent_masks, p.inpainting_fill, seeds)
    if diffusion.is_inpainting_model(model):
        init.image_conditioning = masking.inpainting_conditioning(
            lambda images: diffusion.encode_pixels(model, images),
            pixels,
            inpaint.image_mask if inpaint else None,
            latents.shape[-2:],
            p.inpainting_mask_weight,
            p.mask_round,
        )
    return init


def process_images(p: StableDiffusionProcessing) -> Processed:
    """Run a job through the execution boundary. Every face calls this."""
    return ProcessingRunner(process_images_inner).run(ProcessingRequest(p))


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    """Validate, load the model, then for each batch: prompts -> noise -> sampling -> decode -> infotext -> save."""
    p.validate()
    p = p.effective()
    if p.attention is True:
        p.attention = attention_maps.AttentionCapture()
    elif not p.attention:
        p.attention = None  # False: no capture
    if p.trajectory is True:
        p.trajectory = trajectory.TrajectoryCapture()
    elif not p.trajectory:
        p.trajectory = None
    state = p.state
    timings = PhaseTimings()
    with timings.phase("load_model"):
        model = sd_models.model_cache.get(
            sd_models.resolve_checkpoint(p.sd_model_checkpoint, modules=sd_modules.resolve(p.additional_modules))
        )
    job = plan_job(p, model)
    hires_model = None
    if job.hires is not None and p.hr_checkpoint_name is not None:
        with timings.phase("load_model"):  # both stay loaded (modules.sd_models: the cache keeps two by default)
            hires_model = sd_models.model_cache.get(sd_models.resolve_checkpoint(p.hr_checkpoint_name))
    refiner_model = None
    if p.refiner_checkpoint is not None:
        with timings.phase("load_model"):  # kept like the hires checkpoint
            refiner_model = sd_models.model_cache.get(sd_models.resolve_checkpoint(p.refiner_checkpoint))
        check_refiner(model, refiner_model)
    extra_models = [loaded for loaded in (hires_model, refiner_model) if loaded is not None]
    job.vae = sd_vae.resolve(p.sd_vae)
    with timings.phase("load_model"):
        for loaded in (model, *extra_models):
            sd_vae.apply(loaded, job.vae)
    batch_size = 1 if p.exact else p.batch_size
    # A LoRA applies to a whole UNet call: images asking for other LoRAs than their neighbours get their own batch.
    batches = lora.split_batches(job.batches(batch_size), job.lora_tags)
    passes = 1 if job.hires is None else 2  # progress counts each pass as a job, as the webui does
    with timings.phase("load_networks"), torch.no_grad():
        for name in {tag.name for index in range(len(job.per_image["seed"])) for tag in job.lora_tags(index)}:
            lora.ensure_loaded(model, extra_networks.find_lora(name, job.loras))
        texts = job.per_image["prompt"] + job.per_image["negative_prompt"]
        if job.hires_prompts is not None:
            texts += job.hires_prompts[0] + job.hires_prompts[1]
        job.embeddings = {network.name: network for network in textual_inversion.prepare(model, texts)}
        for loaded in extra_models:
            textual_inversion.prepare(loaded, texts)
    samples: list[Image.Image] = []
    infotexts: list[str] = []
    kept_indices: list[int] = []
    paths: list[str] = []
    state.begin(job_count=len(batches) * passes, sampling_steps=p.steps)
    try:
        with torch.inference_mode(), determinism.generation_kernels(model.device):
            for batch_no, (indices, lora_tags) in enumerate(batches):
                state.begin_batch(batch_no * passes)
                try:
                    with lora.applied(model, lora_tags, job.loras):
                        batch_images = sample_batch(p, model, job, indices, timings, hires_model, refiner_model)
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
        attention_maps=[p.attention.maps[index] for index in kept_indices] if p.attention else [],
        trajectories=[p.trajectory.trajectories[index] for index in kept_indices] if p.trajectory else [],
    )
