"""Scripts run through the webui API's `script_name` / `script_args`, listed by /sdapi/v1/scripts and script-info.

One script: the webui's "X/Y/Z plot", run as a Serena sweep (modules.sweeps.run). Its `script_args` are the webui
script's positional arguments; the axis types are indices into the webui's axis list for the mode (script-info lists
it as the type argument's `choices`, so a client can look a label up) or the labels themselves. Axis types Serena
cannot sweep are refused with 400 naming script_args.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass

from modules.api.requests import ApiError, find_checkpoint, invalid
from modules.sweeps import axes as sweep_axes
from modules.sweeps import run as sweeps

MODES = ("txt2img", "img2img")
FIELD = "script_args"


@dataclass(frozen=True)
class AxisType:
    """One entry of the webui's X/Y/Z axis list: its label, the sweep axis it is in Serena (None: not available),
    how a value is read from its text, and the modes that list it."""

    label: str
    axis: str | None = None
    read: Callable[[str], object] = str
    modes: tuple[str, ...] = MODES


# The webui's axis list, in its order (txt2img-only and img2img-only entries are left out of the other mode's list).
AXIS_TYPES = (
    AxisType("Nothing"),
    AxisType("Seed", "seed", int),
    AxisType("Var. seed", "subseed", int),
    AxisType("Var. strength", "subseed_strength", float),
    AxisType("Steps", "steps", int),
    AxisType("Hires steps", "hr_second_pass_steps", int, modes=("txt2img",)),
    AxisType("CFG Scale", "cfg_scale", float),
    AxisType("Image CFG Scale", modes=("img2img",)),
    AxisType("Prompt S/R", sweep_axes.PROMPT_SR),
    AxisType("Prompt order"),
    AxisType("Sampler", "sampler"),
    AxisType("Hires sampler", "hr_sampler_name", modes=("txt2img",)),
    AxisType("Checkpoint name", "model"),
    AxisType("Negative Guidance minimum sigma"),
    AxisType("Sigma Churn"),
    AxisType("Sigma min"),
    AxisType("Sigma max"),
    AxisType("Sigma noise"),
    AxisType("Schedule type", "scheduler"),
    AxisType("Schedule min sigma"),
    AxisType("Schedule max sigma"),
    AxisType("Schedule rho"),
    AxisType("Eta", "eta", float),
    AxisType("Clip skip", "clip_skip", int),
    AxisType("Denoising", "denoising_strength", float, modes=("img2img",)),
    AxisType("Initial noise multiplier", "initial_noise_multiplier", float, modes=("img2img",)),
    AxisType("Extra noise"),
    AxisType("Hires upscaler", "hr_upscaler", modes=("txt2img",)),
    AxisType("Cond. Image Mask Weight", "inpainting_mask_weight", float, modes=("img2img",)),
    AxisType("VAE"),
    AxisType("Styles"),
    AxisType("UniPC Order"),
    AxisType("Face restore"),
    AxisType("Token merging ratio"),
    AxisType("Token merging ratio high-res"),
    AxisType("Always discard next-to-last sigma"),
    AxisType("SGM noise multiplier"),
    AxisType("Refiner checkpoint", "refiner"),
    AxisType("Refiner switch at", "refiner_switch_at", float),
    AxisType("RNG source"),
)

# The script's arguments after the three axes, by webui version (1.6+, 1.3-1.5, 1.0-1.2): their count picks the layout.
TAIL_ARGUMENTS = {
    18: ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "vary_seeds_x", "vary_seeds_y",
         "vary_seeds_z", "margin_size", "csv_mode"),
    15: ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "margin_size", "csv_mode"),
    11: ("draw_legend", "include_lone_images", "include_sub_grids", "no_fixed_seeds", "margin_size"),
}  # fmt: skip
_INT_RANGE = re.compile(r"^\s*(-?\d+)\s*-\s*(-?\d+)\s*(?:\(([+-]\d+)\s*\)|\[(\d+)\s*\])?\s*$")
_FLOAT_RANGE = re.compile(
    r"^\s*(-?\d+(?:\.\d*)?)\s*-\s*(-?\d+(?:\.\d*)?)\s*(?:\(([+-]\d+(?:\.\d*)?)\s*\)|\[(\d+(?:\.\d*)?)\s*\])?\s*$"
)


def axis_types(mode: str) -> list[AxisType]:
    return [axis_type for axis_type in AXIS_TYPES if mode in axis_type.modes]


@dataclass(frozen=True)
class XyzPlot:
    name: str = "x/y/z plot"
    modes: tuple[str, ...] = MODES

    def infos(self) -> list[dict]:
        """The webui's script-info entries, one per mode."""
        return [
            {
                "name": self.name,
                "is_alwayson": False,
                "is_img2img": mode == "img2img",
                "args": [
                    argument
                    for axis in "XYZ"
                    for argument in (
                        {"label": f"{axis} type", "value": "Nothing", "choices": [a.label for a in axis_types(mode)]},
                        {"label": f"{axis} values", "value": "", "choices": None},
                        {"label": f"{axis} values (dropdown)", "value": [], "choices": None},
                    )
                ]
                + [{"label": name, "value": False, "choices": None} for name in TAIL_ARGUMENTS[18]],
            }
            for mode in self.modes
        ]


@dataclass(frozen=True)
class SdUpscale:
    """The webui's "SD upscale" (img2img): script_args [info, tile overlap, upscaler (name or index), scale]."""

    name: str = "sd upscale"
    modes: tuple[str, ...] = ("img2img",)

    def infos(self) -> list[dict]:
        from modules import upscalers

        choices = upscalers.image_upscaler_names()
        return [
            {
                "name": self.name,
                "is_alwayson": False,
                "is_img2img": True,
                "args": [
                    {"label": "Usage", "value": "", "choices": None},
                    {"label": "Tile overlap", "value": 64, "choices": None},
                    {"label": "Upscaler", "value": "None", "choices": choices},
                    {"label": "Scale Factor", "value": 2.0, "choices": None},
                ],
            }
        ]


SCRIPTS = (XyzPlot(), SdUpscale())


def find_script(name: str, mode: str):
    """The script `name` names (case-insensitive, as the webui); 400 naming script_name otherwise."""
    for script in SCRIPTS:
        if script.name == name.strip().lower() and mode in script.modes:
            return script
    available = ", ".join(script.name for script in SCRIPTS)
    raise invalid("script_name", f"script_name: no script {name!r} for {mode}; available: {available}")


def read_values(axis_type: AxisType, text, dropdown) -> list:
    """An axis's values: the dropdown list when given, else the comma-separated text with the webui's ranges
    ("1-5", "1-10 (+2)", "0-1 [5]")."""
    items = [str(item) for item in dropdown] if dropdown else [part.strip() for part in str(text).split(",")]
    values = []
    for item in (item for item in items if item):
        pattern = _INT_RANGE if axis_type.read is int else _FLOAT_RANGE if axis_type.read is float else None
        match = pattern.match(item) if pattern else None
        if match is None:
            try:
                values.append(axis_type.read(item))
            except ValueError:
                raise invalid(FIELD, f"{FIELD}: {axis_type.label} value {item!r} is not a number") from None
            continue
        start, end = axis_type.read(match[1]), axis_type.read(match[2])
        if match[4]:  # [count]: evenly spaced, ends included
            count = int(float(match[4]))
            values += [axis_type.read(start + (end - start) * i / max(count - 1, 1)) for i in range(count)]
        else:
            step = axis_type.read(match[3]) if match[3] else 1
            if step == 0 or (end - start) * step < 0:
                raise invalid(FIELD, f"{FIELD}: range {item!r} never reaches its end")
            value = start
            while (value <= end + 1e-9) if step > 0 else (value >= end - 1e-9):
                values.append(round(value, 6) if isinstance(value, float) else value)
                value += step
    if len(values) > 100:
        raise invalid(FIELD, f"{FIELD}: {axis_type.label} has {len(values)} values; at most 100")
    return values


def axis_of(mode: str, type_value, text, dropdown, models_dir) -> tuple | None:
    """(sweep axis, values) for one of the script's axes; None for "Nothing"."""
    listed = axis_types(mode)
    if isinstance(type_value, int) and not isinstance(type_value, bool) and 0 <= type_value < len(listed):
        axis_type = listed[type_value]
    else:
        axis_type = next(
            (a for a in listed if isinstance(type_value, str) and a.label.lower() == type_value.lower()), None
        )
        if axis_type is None:
            raise invalid(FIELD, f"{FIELD}: axis type {type_value!r} is not an index 0..{len(listed) - 1} or a label")
    if axis_type.axis is None:
        if axis_type.label == "Nothing":
            return None
        raise ApiError(400, "not supported", FIELD, f"{FIELD}: the {axis_type.label!r} axis is not available in Serena")
    values = read_values(axis_type, text, dropdown)
    if not values:
        raise invalid(FIELD, f"{FIELD}: the {axis_type.label} axis has no values")
    if axis_type.axis in ("model", "refiner"):
        values = [str(info.path) if (info := find_checkpoint(v, models_dir, FIELD)) else None for v in values]
    return axis_type.axis, values


def script_runner(script_name: str | None, script_args: list, mode: str, models_dir) -> Callable | None:
    """What runs a request's job when it names a script (None: the plain engine); 400 for an unknown script."""
    if not script_name:
        return None
    if isinstance(find_script(script_name, mode), SdUpscale):
        overlap, upscaler, scale = sd_upscale_arguments(script_args)
        return lambda p: run_sd_upscale(p, overlap, upscaler, scale)
    return lambda p: run_xyz_plot(p, mode, script_args, models_dir)


def sd_upscale_arguments(script_args: list) -> tuple[int, str, float]:
    """[info, overlap, upscaler, scale] read laxly (numbers as text, the upscaler by name or by its index in
    /sdapi/v1/upscalers, as the webui takes both); 400 naming script_args."""
    from modules import sd_upscale, upscalers

    if len(script_args) != 4:
        detail = f"{FIELD}: SD upscale takes 4 arguments (info, overlap, upscaler, scale), got {len(script_args)}"
        raise invalid(FIELD, detail)
    _, overlap, upscaler, scale = script_args
    try:
        overlap = int(float(overlap)) if isinstance(overlap, (str, float)) and float(overlap).is_integer() else overlap
        scale = float(scale) if isinstance(scale, (str, int)) and not isinstance(scale, bool) else scale
    except ValueError:
        raise invalid(FIELD, f"{FIELD}: overlap and scale must be numbers, got {overlap!r} and {scale!r}") from None
    names = upscalers.image_upscaler_names()
    if isinstance(upscaler, int) and not isinstance(upscaler, bool) and 0 <= upscaler < len(names):
        upscaler = names[upscaler]
    elif isinstance(upscaler, str):
        upscaler = next((name for name in names if name.lower() == upscaler.strip().lower()), upscaler)
    try:
        sd_upscale.check_arguments(overlap, upscaler, scale, FIELD)
    except (TypeError, ValueError) as error:
        raise invalid(FIELD, str(error)) from None
    return overlap, upscaler, scale


def run_sd_upscale(p, overlap: int, upscaler: str, scale: float):
    from modules import sd_upscale

    try:
        return sd_upscale.run(p, overlap, upscaler, scale)
    except (TypeError, ValueError) as error:
        raise invalid(FIELD, f"{FIELD}: {str(error).removeprefix(FIELD + ': ')}") from None


def run_xyz_plot(p, mode: str, script_args: list, models_dir):
    """The webui's X/Y/Z plot on `p` as a Serena sweep: a Processed with the labelled grid first, then each cell's
    image when include_lone_images is set; infotexts and all_* values per cell."""
    tail = TAIL_ARGUMENTS.get(len(script_args))
    if tail is None:
        raise invalid(
            FIELD, f"{FIELD}: the X/Y/Z plot takes 18 arguments (15 or 11 for older webuis), got {len(script_args)}"
        )
    with_dropdowns = len(script_args) != 11
    width = 3 if with_dropdowns else 2
    axes = []
    for index in range(3):
        start = index * width
        dropdown = script_args[start + 2] if with_dropdowns else None
        axes.append(axis_of(mode, script_args[start], script_args[start + 1], dropdown, models_dir))
    flags = dict(zip(tail, script_args[3 * width :]))
    for name in ("no_fixed_seeds", "vary_seeds_x", "vary_seeds_y", "vary_seeds_z"):
        if flags.get(name):
            raise ApiError(400, "not supported", FIELD, f"{FIELD}: {name} is not supported; every cell keeps the seed")
    try:
        result = sweeps.sweep(p, *axes, save=not p.do_not_save_samples)
    except (TypeError, ValueError) as error:
        raise invalid(FIELD, f"{FIELD}: {error}") from None
    cells = [cell.processed for cell in result.cells]
    first = cells[0]
    grid = result.grid()
    grid.info["parameters"] = first.info
    lone = [cell.image for cell in result.cells] if flags.get("include_lone_images") else []
    per_cell = {
        name: [getattr(cell, name) for cell in cells]
        for name in ("all_prompts", "all_negative_prompts", "all_seeds", "all_subseeds", "all_cfg_scales")
    }
    return dataclasses.replace(
        first,
        images=[grid, *lone],
        infotexts=[first.info, *([cell.info for cell in cells] if lone else [])],
        index_of_first_image=1,
        batch_size=len(cells),
        paths=[path for cell in cells for path in cell.paths],
        **{name: [value for values in lists for value in values] for name, lists in per_cell.items()},
    )
