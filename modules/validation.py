"""Checks on every field of a processing object, run before any model work.

Each field's own check comes from its declaration (modules.generation_fields); then the checks that involve several
fields or the files a job names. Each raises ValueError (bad value) or TypeError (wrong type) naming the field and
what is allowed.
"""

from __future__ import annotations

from modules import generation_fields, hires, sd_samplers
from modules.field_types import named


def check_processing(p, available_styles: dict) -> None:
    """All checks for a StableDiffusionProcessing (txt2img or img2img)."""
    for declaration in generation_fields.declarations_of(p):
        declaration.check(getattr(p, declaration.name))
    count = p.batch_size * p.n_iter
    for name in generation_fields.per_image_names():
        values = getattr(p, name)
        if isinstance(values, list) and len(values) != count:
            raise ValueError(f"{name}: a list must have one value per image ({count}), got {len(values)}")
    unknown_styles = [name for name in p.styles if name not in available_styles]
    if unknown_styles:
        raise ValueError(
            f"styles: unknown style {unknown_styles[0]!r}; available: {', '.join(available_styles) or 'none'}"
        )
    sd_samplers.check_schedule_type(sd_samplers.find_sampler(p.sampler_name).name, p.scheduler)
    if p.guidance_start >= p.guidance_end:
        raise ValueError(
            f"guidance_start: {p.guidance_start} is not allowed; allowed values below guidance_end ({p.guidance_end})"
        )
    init_images = getattr(p, "init_images", None)
    if init_images is not None and len(init_images) not in (1, p.batch_size):
        raise ValueError(f"init_images: give 1 image or batch_size ({p.batch_size}) images, got {len(init_images)}")
    if getattr(p, "enable_hr", False):
        hr_sampler = p.hr_sampler_name or p.sampler_name
        with named("hr_scheduler"):
            sd_samplers.check_schedule_type(sd_samplers.find_sampler(hr_sampler).name, p.hr_scheduler or p.scheduler)
        if p.width is not None and p.height is not None:  # else the engine checks with the model's native size
            hires.job_sizes(p, native_size=p.width)
