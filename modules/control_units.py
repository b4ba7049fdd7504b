"""ControlNet units as the webui's ControlNet extension (sd-webui-controlnet) defines them: fields, defaults, the
lax forms its API clients send, and the infotext line it writes. No torch here (the CLI and the field declarations
use it); the engine's side is modules.controlnet, the preprocessors modules.control_preprocessors.

A unit is one control: a ControlNet model, its control image (made by a preprocessor from the unit's image, or the
image itself with module "none"), a weight, the fraction of the steps it acts in (guidance start/end), how the image
is fitted to the generation size (resize mode), and the control mode:
- "Balanced": the residuals, times the weight, on both halves of the CFG batch;
- "My prompt is more important": the residuals weighted down from the deepest block outwards (weight x
  0.825 ** (12 - i) for the i-th residual, the middle block's last), as the extension's soft injection;
- "ControlNet is more important": soft injection, and the residuals on the prompt's half only, so that CFG
  amplifies the control as well as the prompt.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

from modules.field_types import Kind, require_in_range, require_type

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
# The extension's older names for the two fitting modes; its API still takes them.
RESIZE_MODE_ALIASES = {
    "Inner Fit (Scale to Fit)": "Crop and Resize",
    "Outer Fit (Shrink to Fit)": "Resize and Fill",
    "Scale to Fit (Inner Fit)": "Crop and Resize",
    "Envelope (Outer Fit)": "Resize and Fill",
}
HR_OPTIONS = ("Both", "Low res only", "High res only")
NO_MODEL = "None"
MAX_WEIGHT = 2.0
SOFT_INJECTION_BASE = 0.825  # the extension's per-block factor (12 encoder residuals of SD 1.x, then the middle)
# The extension's old field names, still sent by clients (its `legacy_field_alias`), and Forge's mask name.
FIELD_ALIASES = {"input_image": "image", "guidance": "guidance_end", "lowvram": "low_vram", "mask_image": "mask"}
# Fields of the extension's unit that change nothing in Serena's image: accepted and ignored.
IGNORED_FIELDS = frozenset(
    {
        "low_vram",
        "is_ui",
        "input_mode",
        "batch_images",
        "output_dir",
        "loopback",
        "save_detected_map",
        "inpaint_crop_input_image",
        "pulid_mode",
        "union_control_type",
        "guess_mode",
    }
)

# The extension's fields for what Serena does not run (per-layer weights, region masks, IP-Adapter, inpaint masks on
# the unit): refused when set, so that no one believes they acted.
REFUSED_FIELDS = ("advanced_weighting", "effective_region_mask", "ipadapter_input", "mask")


@dataclass(frozen=True)
class Slider:
    """A preprocessor's parameter as the extension's UI shows it (label, default, range)."""

    label: str
    value: float
    minimum: float
    maximum: float


@dataclass(frozen=True)
class Preprocessor:
    """A control-image preprocessor: its name (the unit's `module`), its resolution and two parameters where it has
    them (the unit's processor_res, threshold_a, threshold_b), and, for those Serena cannot run, the annotator model
    it would need."""

    name: str
    resolution: Slider | None = None
    slider_1: Slider | None = None
    slider_2: Slider | None = None
    needs: str | None = None
    control_type: str = "All"


RESOLUTION = Slider("Preprocessor Resolution", 512, 64, 2048)
PREPROCESSORS: dict[str, Preprocessor] = {
    p.name: p
    for p in (
        Preprocessor("none"),
        Preprocessor("invert", RESOLUTION, control_type="Lineart"),
        Preprocessor(
            "canny",
            RESOLUTION,
            Slider("Canny Low Threshold", 100, 1, 255),
            Slider("Canny High Threshold", 200, 1, 255),
            control_type="Canny",
        ),
        Preprocessor("threshold", RESOLUTION, Slider("Binarization Threshold", 127, 0, 255), control_type="Shuffle"),
        Preprocessor("scribble_xdog", RESOLUTION, Slider("XDoG Threshold", 32, 1, 64), control_type="Scribble"),
        Preprocessor("seg_flat", RESOLUTION, Slider("Colour Tolerance", 24, 1, 128), control_type="Segmentation"),
        Preprocessor("blur_gaussian", RESOLUTION, Slider("Sigma", 9.0, 0.01, 64.0), control_type="Tile"),
        Preprocessor("tile_resample", None, Slider("Down Sampling Rate", 1.0, 1.0, 8.0), control_type="Tile"),
        # Annotators with weights Serena does not ship (and cannot download): named so the error says what is missing.
        Preprocessor("depth_midas", needs="the MiDaS depth model", control_type="Depth"),
        Preprocessor("depth_zoe", needs="the ZoeDepth model", control_type="Depth"),
        Preprocessor("depth_anything", needs="the Depth Anything model", control_type="Depth"),
        Preprocessor("normal_bae", needs="the BAE normal model", control_type="NormalMap"),
        Preprocessor("openpose", needs="the OpenPose body model", control_type="OpenPose"),
        Preprocessor("openpose_full", needs="the OpenPose body, hand and face models", control_type="OpenPose"),
        Preprocessor("dw_openpose_full", needs="the DWPose models", control_type="OpenPose"),
        Preprocessor("lineart_realistic", needs="the lineart model", control_type="Lineart"),
        Preprocessor("lineart_anime", needs="the anime lineart model", control_type="Lineart"),
        Preprocessor("softedge_hed", needs="the HED edge model", control_type="SoftEdge"),
        Preprocessor("softedge_pidinet", needs="the PiDiNet edge model", control_type="SoftEdge"),
        Preprocessor("mlsd", needs="the M-LSD line model", control_type="MLSD"),
        Preprocessor("seg_ofade20k", needs="the OneFormer ADE20k model", control_type="Segmentation"),
        Preprocessor("shuffle", needs="nothing Serena runs yet (a random shuffle)", control_type="Shuffle"),
    )
}
# The extension's control types (GET /controlnet/control_types): the preprocessors and model name filters of each.
CONTROL_TYPES = ("All", "Canny", "Depth", "NormalMap", "OpenPose", "MLSD", "Lineart", "SoftEdge", "Scribble",
                 "Segmentation", "Shuffle", "Tile")  # fmt: skip
RUNNABLE_PREPROCESSORS = tuple(name for name, p in PREPROCESSORS.items() if p.needs is None)


@dataclass(frozen=True)
class ControlNetUnit:
    """One ControlNet unit (the extension's field names). `image`: a PIL image (the API takes base64); `-1` for
    processor_res / threshold_a / threshold_b means the preprocessor's default (`resolved` fills them in)."""

    model: str = NO_MODEL
    image: Any = None
    module: str = "none"
    weight: float = 1.0
    resize_mode: str = "Crop and Resize"
    processor_res: int = -1
    threshold_a: float = -1.0
    threshold_b: float = -1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    hr_option: str = "Both"
    enabled: bool = True

    def __post_init__(self):
        # One written form per value (1 and 1.0 write the same infotext), as the extension's typed fields do.
        for name in ("weight", "threshold_a", "threshold_b", "guidance_start", "guidance_end"):
            value = getattr(self, name)
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        if isinstance(self.processor_res, numbers.Real) and not isinstance(self.processor_res, bool):
            if float(self.processor_res).is_integer():
                object.__setattr__(self, "processor_res", int(self.processor_res))

    @property
    def active(self) -> bool:
        """Whether the unit acts: enabled, with a model (a unit the extension would skip does nothing here)."""
        return self.enabled and self.model != NO_MODEL

    def resolved(self) -> ControlNetUnit:
        """The unit with -1 (and out-of-range) preprocessor parameters set to the preprocessor's defaults, as the
        extension's `bound_check_params` does."""
        preprocessor = PREPROCESSORS[self.module]
        changes = {}
        for name, slider in zip(("processor_res", "threshold_a", "threshold_b"), preprocessor_sliders(preprocessor)):
            value = getattr(self, name)
            if slider is not None and not slider.minimum <= value <= slider.maximum:
                changes[name] = int(slider.value) if name == "processor_res" else float(slider.value)
        return dataclasses.replace(self, **changes)


def preprocessor_sliders(preprocessor: Preprocessor) -> tuple:
    return preprocessor.resolution, preprocessor.slider_1, preprocessor.slider_2


def check_unit(field: str, unit) -> None:
    """The unit's own check; errors name `field` (controlnet_units[0].weight) and the allowed values."""
    if not isinstance(unit, ControlNetUnit):
        raise TypeError(f"{field}: expected a ControlNetUnit (or a dict of its fields), got {type(unit).__name__}")
    require_type(f"{field}.enabled", unit.enabled, bool, "true or false")
    require_type(f"{field}.model", unit.model, str, "a ControlNet model name")
    require_type(f"{field}.module", unit.module, str, "a preprocessor name")
    if unit.module not in PREPROCESSORS:
        raise ValueError(f"{field}.module: unknown preprocessor {unit.module!r}; allowed {', '.join(PREPROCESSORS)}")
    needs = PREPROCESSORS[unit.module].needs
    if unit.active and needs is not None:
        raise ValueError(
            f"{field}.module: preprocessor {unit.module!r} needs {needs}, which Serena does not ship; run it "
            f"elsewhere and give its map as the image with module 'none', or use one of "
            f"{', '.join(RUNNABLE_PREPROCESSORS)}"
        )
    for name, high in (("weight", MAX_WEIGHT), ("guidance_start", 1.0), ("guidance_end", 1.0)):
        value = getattr(unit, name)
        require_type(f"{field}.{name}", value, numbers.Real, "a number")
        require_in_range(f"{field}.{name}", value, 0.0, high)
    if unit.guidance_start > unit.guidance_end:
        raise ValueError(
            f"{field}.guidance_start: {unit.guidance_start} is after guidance_end {unit.guidance_end}; "
            "allowed guidance_start <= guidance_end"
        )
    for name in ("processor_res", "threshold_a", "threshold_b"):
        require_type(f"{field}.{name}", getattr(unit, name), numbers.Real, "a number (-1: the preprocessor's default)")
    require_type(f"{field}.pixel_perfect", unit.pixel_perfect, bool, "true or false")
    for name, allowed in (("resize_mode", RESIZE_MODES), ("control_mode", CONTROL_MODES), ("hr_option", HR_OPTIONS)):
        if getattr(unit, name) not in allowed:
            raise ValueError(
                f"{field}.{name}: {getattr(unit, name)!r} is not allowed; allowed {', '.join(map(repr, allowed))}"
            )
    if unit.active:
        from PIL import Image

        if not isinstance(unit.image, Image.Image):
            raise ValueError(
                f"{field}.image: the unit uses model {unit.model!r} but has no control image; give one (a PIL "
                "image; on the API base64)"
            )


# The lax forms the extension's API takes --------------------------------------------------------------------------


def unit_from_dict(
    field: str, values: dict, decode_image=None, enabled_default: bool = False, ignore_unknown: bool = False
) -> ControlNetUnit:
    """A unit from the extension's API dict: its field names and old aliases, resize and control modes as names or
    codes (0, 1, 2), numbers and flags as strings ("0.5", "true"), unknown keys ignored as the extension does.
    `decode_image(field, value)` turns a base64 string into a PIL image. The extension's API default for `enabled`
    is false; a unit made in Python is enabled. Unknown keys are refused, or dropped with `ignore_unknown` (the
    extension's API drops them; its clients send keys of other versions)."""
    if not isinstance(values, dict):
        raise TypeError(f"{field}: expected an object of ControlNet unit fields, got {type(values).__name__}")
    values = dict(values)
    for alias, name in FIELD_ALIASES.items():
        if alias in values:
            if name in values and values[name] is not None and values[alias] is not None:
                raise ValueError(f"{field}: give {name!r} or its old name {alias!r}, not both")
            values.setdefault(name, values.pop(alias))
            values.pop(alias, None)
    known = {f.name for f in dataclasses.fields(ControlNetUnit)}
    unknown = set(values) - known - IGNORED_FIELDS - set(REFUSED_FIELDS)
    if unknown and ignore_unknown:
        values = {name: value for name, value in values.items() if name not in unknown}
    elif unknown:
        raise ValueError(
            f"{field}: unknown ControlNet unit field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
        )
    for name in REFUSED_FIELDS:
        if values.get(name) is not None:
            raise ValueError(f"{field}.{name}: not supported by Serena (leave it out or null)")
    changes: dict[str, Any] = {"enabled": enabled_default}
    for name in known:
        if name not in values or values[name] is None:
            continue
        value = values[name]
        where = f"{field}.{name}"
        if name == "image":
            value = decode_image(where, value) if decode_image is not None and isinstance(value, str) else value
            if isinstance(value, dict):  # {"image": ..., "mask": ...}: the image part
                value = value.get("image")
                value = decode_image(where, value) if decode_image is not None and isinstance(value, str) else value
        elif name in ("enabled", "pixel_perfect"):
            value = lax_flag(where, value)
        elif name in ("weight", "guidance_start", "guidance_end", "threshold_a", "threshold_b"):
            value = lax_number(where, value)
        elif name == "processor_res":
            value = lax_number(where, value)
            if not value.is_integer():
                raise TypeError(f"{where}: expected a whole number of pixels (-1: the preprocessor's), got {value!r}")
        elif name == "resize_mode":
            value = named_option(where, RESIZE_MODE_ALIASES.get(value, value), RESIZE_MODES)
        elif name == "control_mode":
            value = named_option(where, value, CONTROL_MODES)
        elif name == "hr_option":
            value = named_option(where, value, HR_OPTIONS)
        elif name in ("model", "module"):
            require_type(where, value, str, "a name")
        changes[name] = value
    return ControlNetUnit(**changes)


def lax_flag(field: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise TypeError(f"{field}: expected true or false, got {value!r}")


def lax_number(field: str, value) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{field}: expected a number, got bool {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{field}: expected a number, got {value!r}") from None


def named_option(field: str, value, names: tuple[str, ...]) -> str:
    """A mode by its name (case-insensitive) or its code, as the extension's enums take both."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[int(value)]
    if isinstance(value, str):
        for name in names:
            if value.strip().lower() == name.lower():
                return name
        if value.strip().isdigit() and int(value) < len(names):
            return names[int(value)]
    allowed = ", ".join(f"{code} ({name!r})" for code, name in enumerate(names))
    raise ValueError(f"{field}: {value!r} is not allowed; allowed {allowed}")


# The infotext: `ControlNet 0: "Module: canny, Model: ..., Weight: 1.0, ..."` ----------------------------------------

INFOTEXT_FIELDS = (
    "module",
    "model",
    "weight",
    "resize_mode",
    "processor_res",
    "threshold_a",
    "threshold_b",
    "guidance_start",
    "guidance_end",
    "pixel_perfect",
    "control_mode",
)
INFOTEXT_PREFIX = "ControlNet "


def display_name(name: str) -> str:
    return " ".join(word.capitalize() for word in name.split("_"))


FIELD_OF_DISPLAY = {display_name(name): name for name in INFOTEXT_FIELDS}


def serialize(unit: ControlNetUnit) -> str:
    """The unit's infotext value as the extension writes it (the engine gives it the resolved unit, whose model is
    the title with its hash)."""
    values = {name: getattr(unit, name) for name in INFOTEXT_FIELDS}
    return ", ".join(f"{display_name(name)}: {value}" for name, value in values.items())


def parse(text: str) -> ControlNetUnit:
    """A unit from its infotext value (without its image: replay asks for it)."""
    changes: dict[str, Any] = {}
    for item in text.split(","):
        key, separator, value = item.strip().partition(": ")
        if not separator or key not in FIELD_OF_DISPLAY:
            raise ValueError(
                f"cannot read {item.strip()!r}; expected 'Key: value' with keys {', '.join(FIELD_OF_DISPLAY)}"
            )
        changes[FIELD_OF_DISPLAY[key]] = value.strip()
    unit = unit_from_dict("ControlNet", changes, enabled_default=True)
    return dataclasses.replace(unit, model=strip_hash(unit.model))


def strip_hash(title: str) -> str:
    """A model title without its " [hash]" suffix."""
    name, _, rest = title.rpartition(" [")
    return name if name and rest.endswith("]") else title


def infotext_pairs(units: list[ControlNetUnit]) -> dict:
    """{"ControlNet 0": ..., "ControlNet 1": ...} for the active units, numbered as the extension does (in order)."""
    active = [unit for unit in units if unit.active]
    return {f"{INFOTEXT_PREFIX}{index}": serialize(unit) for index, unit in enumerate(active)}


def units_from_infotext(parameters: dict) -> list[ControlNetUnit]:
    keys = sorted(
        (key for key in parameters if key.startswith(INFOTEXT_PREFIX) and key[len(INFOTEXT_PREFIX) :].isdigit()),
        key=lambda key: int(key[len(INFOTEXT_PREFIX) :]),
    )
    return [parse(parameters[key]) for key in keys]


def is_unit_key(key: str) -> bool:
    return key.startswith(INFOTEXT_PREFIX) and key[len(INFOTEXT_PREFIX) :].isdigit()


# The field's kind (modules.generation_fields: `controlnet_units`) -----------------------------------------------


@dataclass(frozen=True)
class ControlUnits(Kind):
    """A list of ControlNet units (or dicts of their fields); on the CLI each `--controlnet` is `key=value,...`
    with `image=FILE` (e.g. `model=control_serena_shape_mask,image=mask.png,weight=0.8`)."""

    json_type: ClassVar[Any] = list[dict[str, Any]]

    def check(self, field, value):
        require_type(field, value, (list, tuple), "a list of ControlNet units")
        for index, unit in enumerate(value):
            check_unit(f"{field}[{index}]", unit)

    def from_cli(self, value, option):
        return [unit_from_text(f"{option}[{index}]", text) for index, text in enumerate(value or [])]


def unit_from_text(field: str, text: str) -> ControlNetUnit:
    """A unit from `key=value,key=value` (the CLI's form); `image` is a file path."""
    from modules import images

    values = {}
    for item in text.split(","):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"{field}: expected key=value pairs separated by commas, got {item!r}")
        values[key.strip()] = value.strip()
    if "image" in values:
        values["image"] = images.open_image(values["image"], f"{field}.image")
    return unit_from_dict(field, values, enabled_default=True)


def as_units(field: str, value) -> list:
    """The field's value with dicts made units (enabled unless they say otherwise); other items as they are, for
    the check to refuse."""
    if not isinstance(value, (list, tuple)):
        return value
    return [unit_from_dict(f"{field}[{i}]", item, enabled_default=True) if isinstance(item, dict) else item
            for i, item in enumerate(value)]  # fmt: skip
