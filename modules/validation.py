"""Checks on every field of a processing object, run before any model work.

Each check raises ValueError (bad value) or TypeError (wrong type) naming the field and what is allowed.
"""

from __future__ import annotations

import numbers

from PIL import Image

from modules import rng, sd_samplers

MAX_SIZE = 4096
MAX_BATCH_SIZE = 64
MAX_N_ITER = 1000
MAX_STEPS = 1000
RESIZE_MODES = {0: "Just resize", 1: "Crop and resize", 2: "Resize and fill", 3: "Just resize (latent upscale)"}


def require_type(field: str, value, expected: type | tuple, description: str):
    # bool is an int subclass; True is never a valid step count or seed.
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        raise TypeError(f"{field}: expected {description}, got bool {value!r}")
    if not isinstance(value, expected):
        raise TypeError(f"{field}: expected {description}, got {type(value).__name__} {value!r}")


def require_int(field: str, value, low: int, high: int):
    require_type(field, value, numbers.Integral, "an integer")
    if not low <= value <= high:
        raise ValueError(f"{field}: {value} is out of range; allowed {low}..{high}")


def require_number(field: str, value, low: float, high: float):
    require_type(field, value, numbers.Real, "a number")
    if not low <= value <= high:  # also rejects NaN
        raise ValueError(f"{field}: {value} is out of range; allowed {low}..{high}")


def require_seed(field: str, value):
    require_type(field, value, numbers.Integral, "an integer")
    if not -1 <= value <= rng.MAX_SEED:
        raise ValueError(f"{field}: {value} is out of range; allowed -1 (random) or 0..{rng.MAX_SEED}")


def require_size(field: str, value, multiple: int = 8):
    require_type(field, value, numbers.Integral, "an integer")
    if not multiple <= value <= MAX_SIZE or value % multiple:
        raise ValueError(
            f"{field}: {value} is not allowed; allowed multiples of {multiple} from {multiple} to {MAX_SIZE}"
        )


def require_per_image(field: str, value, count: int, check) -> None:
    """A value, or a list with one value per image (batch_size x n_iter), each passing `check(field, item)`."""
    if not isinstance(value, list):
        check(field, value)
        return
    if len(value) != count:
        raise ValueError(f"{field}: a list must have one value per image ({count}), got {len(value)}")
    for index, item in enumerate(value):
        check(f"{field}[{index}]", item)


def require_prompt(field: str, value, count: int):
    if isinstance(value, str):
        return
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if len(value) != count:
            raise ValueError(f"{field}: a list must have one prompt per image ({count}), got {len(value)}")
        return
    raise TypeError(f"{field}: expected a string or a list of strings, got {type(value).__name__}")


def check_processing(p, available_styles: dict) -> None:
    """All field checks for StableDiffusionProcessing and its subclasses."""
    require_int("batch_size", p.batch_size, 1, MAX_BATCH_SIZE)
    require_int("n_iter", p.n_iter, 1, MAX_N_ITER)
    count = p.batch_size * p.n_iter
    require_prompt("prompt", p.prompt, count)
    require_prompt("negative_prompt", p.negative_prompt, count)
    require_type("styles", p.styles, (list, tuple), "a list of style names")
    unknown_styles = [name for name in p.styles if name not in available_styles]
    if unknown_styles:
        raise ValueError(
            f"styles: unknown style {unknown_styles[0]!r}; available: {', '.join(available_styles) or 'none'}"
        )
    require_per_image("seed", p.seed, count, require_seed)
    require_per_image("subseed", p.subseed, count, require_seed)
    require_number("subseed_strength", p.subseed_strength, 0.0, 1.0)
    for field in ("seed_resize_from_h", "seed_resize_from_w"):
        value = getattr(p, field)
        require_type(field, value, numbers.Integral, "an integer")
        if value > 0:
            require_size(field, value)
        elif value not in (0, -1):
            raise ValueError(f"{field}: {value} is not allowed; allowed -1 or 0 (off) or a size")
    require_type("sampler_name", p.sampler_name, str, "a sampler name")
    spec = sd_samplers.find_sampler(p.sampler_name)
    require_type("scheduler", p.scheduler, str, "a schedule type")
    sd_samplers.check_schedule_type(spec.name, p.scheduler)
    require_int("steps", p.steps, 1, MAX_STEPS)
    require_per_image("cfg_scale", p.cfg_scale, count, lambda name, value: require_number(name, value, 0.0, 50.0))
    for field in ("width", "height"):
        if getattr(p, field) is not None:
            require_size(field, getattr(p, field))
    if p.eta is not None:
        require_number("eta", p.eta, 0.0, 1.0)
    require_int("clip_skip", p.clip_skip, 1, 12)
    if p.sd_model_checkpoint is not None:
        require_type("sd_model_checkpoint", p.sd_model_checkpoint, str, "a checkpoint name or path")
    for field in ("do_not_save_samples", "do_not_save_grid", "exact"):
        require_type(field, getattr(p, field), bool, "true or false")
    for field in ("outpath_samples", "outpath_grids"):
        require_type(field, getattr(p, field), str, "a folder path")
    require_type("extra_generation_params", p.extra_generation_params, dict, "a dict")


def check_img2img(p) -> None:
    require_type("init_images", p.init_images, (list, tuple), "a list of PIL images")
    if not p.init_images:
        raise ValueError("init_images: at least one image is required for img2img")
    if len(p.init_images) not in (1, p.batch_size):
        raise ValueError(f"init_images: give 1 image or batch_size ({p.batch_size}) images, got {len(p.init_images)}")
    for index, image in enumerate(p.init_images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"init_images[{index}]: expected a PIL image, got {type(image).__name__}")
        if not (1 <= image.width <= MAX_SIZE and 1 <= image.height <= MAX_SIZE):
            raise ValueError(f"init_images[{index}]: {image.width}x{image.height} is too large; max {MAX_SIZE}")
    require_number("denoising_strength", p.denoising_strength, 0.0, 1.0)
    require_type("resize_mode", p.resize_mode, int, "an integer")
    if p.resize_mode not in RESIZE_MODES:
        allowed = ", ".join(f"{key} ({name})" for key, name in RESIZE_MODES.items())
        raise ValueError(f"resize_mode: {p.resize_mode} is not allowed; allowed {allowed}")
