"""A sweep's axes: which fields can vary, how an axis's value changes a processing object, and how cells are
labelled (the fields' declared labels: "CFG scale: 7").

An axis is `(name, values)`. The name is any processing field that changes the image ("cfg_scale", "steps", "seed",
"denoising_strength", ...), a field's short name ("sampler" for sampler_name, "model" for sd_model_checkpoint, as on
the CLI), "prompt_sr": the webui's Prompt S/R, whose first value is the text to search for and every value the
text to put in its place in prompt and negative prompt, "lora:NAME": that LoRA's weight, added to the prompt as
the tag `<lora:NAME:weight>` (so it works wherever a prompt does: API, CLI, Ray workers, infotext replay), or
"controlnet.weight" / "controlnet.guidance_start" / "controlnet.guidance_end" / "controlnet.model": that part of the
job's first ControlNet unit ("controlnet[1].weight": of its second).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from modules import extra_networks, generation_fields, rng
from modules.field_types import Seed
from modules.processing import StableDiffusionProcessing, StableDiffusionProcessingTxt2Img

PROMPT_SR = "prompt_sr"
LORA_PREFIX = "lora:"  # "lora:ring" sweeps the weight of LoRA "ring"
CONTROLNET_PARTS = ("weight", "guidance_start", "guidance_end", "model")
CONTROLNET_AXIS = re.compile(rf"controlnet(?:\[(\d+)\])?\.({'|'.join(CONTROLNET_PARTS)})")


@dataclass(frozen=True)
class Axis:
    """One swept parameter: `name` as the caller wrote it, `field` the processing field it sets."""

    name: str
    field: str
    values: tuple

    def changes(self, p: StableDiffusionProcessing, value) -> dict:
        """The processing-field changes that put this axis at `value`."""
        if self.field.startswith(LORA_PREFIX):
            tag = f" <{self.field}:{value:g}>"
            return {"prompt": [text + tag for text in p.prompt] if isinstance(p.prompt, list) else p.prompt + tag}
        if unit_part := CONTROLNET_AXIS.fullmatch(self.field):
            index, part = int(unit_part[1] or 0), unit_part[2]
            units = list(p.controlnet_units)
            units[index] = dataclasses.replace(units[index], **{part: value})
            return {"controlnet_units": units}
        if self.field != PROMPT_SR:
            return {self.field: value}
        search = self.values[0]
        return {
            "prompt": p.prompt.replace(search, value),
            "negative_prompt": p.negative_prompt.replace(search, value),
        }

    def label(self, value) -> str:
        if self.field == PROMPT_SR:
            return str(value)  # the webui labels Prompt S/R cells with the replacement text alone
        if self.field.startswith(LORA_PREFIX):
            return f"LoRA {self.field[len(LORA_PREFIX) :]}: {value:g}"
        if unit_part := CONTROLNET_AXIS.fullmatch(self.field):
            from modules.control_units import display_name

            shown = value if unit_part[2] == "model" else f"{value:g}"
            return f"ControlNet {unit_part[1] or 0} {display_name(unit_part[2])}: {shown}"
        declaration = generation_fields.declaration_of(self.field)
        return f"{declaration.label}: {declaration.display(value)}"


def sweepable_fields(base: StableDiffusionProcessing) -> dict[str, str]:
    """{axis name: field} for every field of `base` a sweep can vary: short names ("sampler") first, then fields."""
    sweepable = [declaration for declaration in generation_fields.declarations_of(base) if declaration.sweepable]
    aliases = {d.short_name: d.name for d in sweepable if d.short_name != d.name}
    return aliases | {d.name: d.name for d in sweepable}


def seed_fields() -> list[str]:
    """The fields whose -1 means a random seed."""
    return [declaration.name for declaration in generation_fields.FIELDS if isinstance(declaration.kind, Seed)]


def draw_seed(key: str) -> int:
    """A fresh random seed for the -1 at `key` ("seed", "x[2]", ...); an output directory remembers its draws."""
    return rng.resolve_seed(-1)


def parse_axis(
    position: str, spec, base: StableDiffusionProcessing, draw: Callable[[str], int] = draw_seed
) -> Axis | None:
    """`(name, values)` (or an Axis) -> Axis, with a ValueError naming the axis for what cannot be swept."""
    if spec is None or isinstance(spec, Axis):
        return spec
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)):
        raise TypeError(f"{position}: expected (parameter name, list of values), got {spec!r}")
    name, values = spec
    values = list(values) if isinstance(values, Iterable) and not isinstance(values, (str, bytes)) else []
    values = [value.item() if isinstance(value, np.generic) else value for value in values]  # numpy -> Python
    if not values:
        raise ValueError(f"{position}: {name!r} needs a non-empty list of values, got {spec[1]!r}")
    if name.startswith(LORA_PREFIX):
        return lora_axis(position, name, values)
    if unit_part := CONTROLNET_AXIS.fullmatch(name):
        return controlnet_axis(position, name, int(unit_part[1] or 0), unit_part[2], values, base)
    fields = sweepable_fields(base)
    if name != PROMPT_SR and name not in fields:
        parts = [f"controlnet.{part}" for part in CONTROLNET_PARTS]
        valid = ", ".join([PROMPT_SR, LORA_PREFIX + "NAME", *parts, *fields])
        raise ValueError(f"{position}: {name!r} cannot be swept; valid: {valid}")
    target = fields.get(name, name)
    if target == PROMPT_SR:
        check_prompt_search(position, base, values)
    if target in seed_fields():  # a random seed in an axis is drawn once, so its cells can be compared
        values = [draw(f"{position}[{index}]") if value == -1 else value for index, value in enumerate(values)]
    return Axis(name, target, tuple(values))


def lora_axis(position: str, name: str, values: list) -> Axis:
    try:
        extra_networks.find_lora(name[len(LORA_PREFIX) :])
    except ValueError as error:
        raise ValueError(f"{position}: {str(error).removeprefix('prompt: ')}") from None
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        raise TypeError(f"{position}: {name} values are LoRA weights (numbers), got {values!r}")
    return Axis(name, name, tuple(values))


def controlnet_axis(position: str, name: str, index: int, part: str, values: list, base) -> Axis:
    """An axis over one part of the base job's unit `index`: each value checked as the unit checks it."""
    from modules.control_units import check_unit

    units = base.controlnet_units
    if index >= len(units):
        raise ValueError(f"{position}: {name} needs ControlNet unit {index} in the base job, which has {len(units)}")
    for value in values:
        if part == "model":
            from modules.controlnet import find_controlnet

            find_controlnet(value, f"{position}: {name}")
        else:
            check_unit(f"{position}: {name.rpartition('.')[0]}", dataclasses.replace(units[index], **{part: value}))
    return Axis(name, name, tuple(values))


def check_prompt_search(position: str, base: StableDiffusionProcessing, values) -> None:
    if not all(isinstance(value, str) for value in values):
        raise TypeError(f"{position}: prompt_sr values must be strings, got {list(values)!r}")
    if not isinstance(base.prompt, str) or not isinstance(base.negative_prompt, str):
        raise TypeError(f"{position}: prompt_sr needs a single prompt string, not a list")
    if values[0] not in base.prompt and values[0] not in base.negative_prompt:
        raise ValueError(f"{position}: prompt_sr search text {values[0]!r} is not in the prompt or negative prompt")


def with_fixed_seeds(
    base: StableDiffusionProcessing, axes: list[Axis], draw: Callable[[str], int] = draw_seed
) -> StableDiffusionProcessing:
    """Resolve a random (-1) seed and variation seed once, so every cell starts from the same noise."""
    swept = {axis.field for axis in axes}
    drawn = [name for name in seed_fields() if getattr(base, name) == -1 and name not in swept]
    return dataclasses.replace(base, **{name: draw(name) for name in drawn})


def base_processing(base: StableDiffusionProcessing | dict) -> StableDiffusionProcessing:
    """A sweep's base: a processing object, or a dict of txt2img fields."""
    if isinstance(base, dict):
        base = StableDiffusionProcessingTxt2Img(**base)
    if not isinstance(base, StableDiffusionProcessing):
        raise TypeError(
            f"base: expected a StableDiffusionProcessing or a dict of its fields, got {type(base).__name__}"
        )
    return base


def axis_values(axis: Axis | None) -> tuple:
    return axis.values if axis else (None,)
