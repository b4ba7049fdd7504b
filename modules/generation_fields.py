"""One declaration per generation field: what a field of a processing job takes, and how every face shows it.

A declaration (`GenerationField`) holds a field's kind (type and allowed range or values, `modules.field_types`),
its default, whether it takes one value per image, how it is written to and read from the infotext, the webui option
that may set it, and how each face shows it: CLI option, API name and the webui API's default where it differs,
widget, label (widgets, sweep axes). Everything else is derived from `FIELDS`:

- `modules/processing.py`: the dataclasses' defaults (`declared`), the infotext writer (`infotext_pairs`), the
  per-image values a result reports (`per_image_names`), override_settings (`fields_from_settings`);
- `modules/validation.py`: every field's own check; `modules/replay.py`: the infotext reader
  (`values_from_infotext`) and the keys it honours (`infotext_keys_read`);
- the faces: the CLI's generation options (`serena_kit/cli.py`), the API's request models and server options
  (`modules/api/`), the widget form (`serena_kit/widgets.py`), sweep axes, labels and batching
  (`modules/sweeps/axes.py`, `modules/sweeps/executors.py`), a sweep cell's identity (`modules/sweeps/output.py`).

The processing dataclasses stay written out, typed, with the webui's field names, for readers and editors; each field's
default comes from here (`seed: int | list[int] = declared("seed")`), and a test checks that the classes and the
declarations name the same fields. Adding a field is one declaration, its typed line in the dataclass, and its use
in the engine; validation, infotext, replay, CLI, API, widgets and sweeps then know it.

No torch here: the CLI builds its parser from these declarations without loading the engine.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from modules import control_units, emphasis
from modules.control_units import ControlUnits
from modules.determinism import KERNELS_KEY
from modules.extra_networks import LORA_HASHES_KEY, TI_HASHES_KEY
from modules.field_types import (
    MAX_SIZE,
    Choice,
    ChoiceOrFlag,
    Dictionary,
    Flag,
    Images,
    Integer,
    Kind,
    Names,
    Number,
    OneOf,
    OrNone,
    PatternText,
    Picture,
    PromptText,
    SamplerName,
    ScheduleType,
    Seed,
    Size,
    SizeOrOff,
    Text,
    TextChoice,
    UpscalerName,
)
from modules.images import SAVE_FORMATS

MODES = ("txt2img", "img2img")
IMG2IMG = ("img2img",)
TXT2IMG = ("txt2img",)
TEXT_KEYS = ("Prompt", "Negative prompt")  # the infotext's text lines, not pairs of its key/value line
FAST_PATH_KEY = "Fast path"  # the loaded model's pixel-changing options (modules.fast_path), after the fields' keys
# Written by the engine (the model file's hash, its fast-path options, non-portable kernels, the extra networks'
# hashes), not read back into fields: replay finds the model by name, compares the kernels itself, and checks the
# networks' hashes (the prompt's <lora:...> tags and embedding names bring the networks back).
ENGINE_INFOTEXT_KEYS = ("Model hash", "VAE hash", FAST_PATH_KEY, KERNELS_KEY, LORA_HASHES_KEY, TI_HASHES_KEY)
SAME_AS_ENGINE = object()
EXAMPLE_PICTURE = Image.new("RGB", (32, 32), "white")  # an example control image (a white silhouette filling it)


@dataclass(frozen=True)
class Infotext:
    """How a field appears on the infotext's key/value line (the webui's keys and order: declaration order).

    part: 1 or 2 when the field is that side of a "WxH" value ("Size" is width x height); the key is written when
        both sides are, and read back from the parser's "Size-1" / "Size-2".
    when: the key is written only when this holds of the image's values (None values are never written).
    write: the key/value pairs for a value, when not just {key: value}.
    read: the value from the key's text, when not the kind's `parse`.
    implies: other fields' values the key's presence stands for ("Hires upscaler" means enable_hr).
    owns: the keys the field writes besides `key` ("ControlNet 0", "ControlNet 1", ...), which `gather` reads.
    gather: the value from the whole parsed infotext (None when its keys are absent), for fields written as
        several keys.
    """

    key: str
    part: int | None = None
    when: Callable[[Mapping], bool] | None = None
    write: Callable[[Any], dict] | None = None
    read: Callable[[str], Any] | None = None
    implies: Mapping = field(default_factory=dict)
    owns: Callable[[str], bool] | None = None
    gather: Callable[[Mapping], Any] | None = None

    @property
    def parsed_key(self) -> str:
        return self.key if self.part is None else f"{self.key}-{self.part}"


@dataclass(frozen=True)
class Cli:
    """The field's `serena txt2img/img2img` option: `--` and the field's short name with dashes."""

    repeatable: bool = False
    required: bool = False
    metavar: str | None = None


@dataclass(frozen=True)
class Api:
    """The field in the webui API's requests: its name and default there, where they differ from the engine's.
    A null value in a request means the engine's default."""

    name: str | None = None
    default: Any = SAME_AS_ENGINE
    description: str | None = None


@dataclass(frozen=True)
class Widget:
    """The field's control in the notebook form (serena_kit.widgets): `control` is "text area", "dropdown", "int",
    "bounded int" (bounds from the kind unless given), "slider" or "checkbox"; controls sit on `row` in declaration
    order.
    `none_as`: the control's value for None ("0: the model's native size")."""

    control: str
    row: int
    options: Mapping = field(default_factory=dict)
    none_as: Any = None


@dataclass(frozen=True)
class WebuiOption:
    """The webui option (an `override_settings` key) that sets the field; `inverted` for "save" options of
    "do not save" fields."""

    name: str
    inverted: bool = False


@dataclass(frozen=True)
class GenerationField:
    """Everything Serena knows about one field of a processing job.

    label: the webui UI's name, used by widgets and sweep labels; default: the infotext key.
    per_image: takes a list with one value per image (batch_size x n_iter) as well as one value.
    affects_image: False for fields that only say where or whether images are saved.
    sweepable: can be a sweep axis; default: affects_image.
    short_name: the CLI option's name and the sweep axis alias, when not the field's name ("sampler").
    example: a valid value other than the default (shown in the API schema; the infotext round-trip test uses it).
    display: how labels show a value.
    mode_defaults: the default per mode, where it differs (the output folders).
    """

    name: str
    kind: Kind
    default: Any
    description: str
    label: str | None = None
    per_image: bool = False
    modes: tuple[str, ...] = MODES
    affects_image: bool = True
    sweepable: bool | None = None
    short_name: str | None = None
    infotext: Infotext | None = None
    cli: Cli | None = Cli()
    api: Api | None = Api()
    widget: Widget | None = None
    option: WebuiOption | None = None
    example: Any = None
    display: Callable[[Any], str] = str
    mode_defaults: Mapping = field(default_factory=dict)

    def __post_init__(self):
        derived = {
            "label": self.label or (self.infotext.key if self.infotext else self.name),
            "sweepable": self.affects_image if self.sweepable is None else self.sweepable,
            "short_name": self.short_name or self.name,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def cli_flag(self) -> str:
        return "--" + self.short_name.replace("_", "-")

    @property
    def api_name(self) -> str:
        return (self.api.name if self.api else None) or self.name

    def default_for(self, mode: str | None = None):
        return self.mode_defaults.get(mode, self.default)

    def api_default(self, mode: str):
        default = self.api.default if self.api else SAME_AS_ENGINE
        return self.default_for(mode) if default is SAME_AS_ENGINE else default

    def check(self, value, name: str | None = None) -> None:
        """The field's own check of `value` (each item of a per-image list); errors name the field (or `name`)."""
        name = name or self.name
        if self.per_image and isinstance(value, list):
            for index, item in enumerate(value):
                self.kind.check(f"{name}[{index}]", item)
        else:
            self.kind.check(name, value)


def show_checkpoint(value) -> str:
    """A checkpoint as labels show it: an embedded model by its name (its folder is "weights"), others by file name."""
    from modules import sd_models

    if not value:
        return "default"
    folders = {folder.resolve(): name for name, folder in sd_models.embedded_model_dirs().items()}
    return folders.get(Path(value).resolve(), Path(value).name)


def is_module_key(key: str) -> bool:
    """Forge's infotext keys for additional modules: "Module 1", "Module 2", ..."""
    return key.startswith("Module ") and key.removeprefix("Module ").isdigit()


def modules_from_infotext(parameters: Mapping) -> list[str] | None:
    keys = sorted((key for key in parameters if is_module_key(key)), key=lambda key: int(key.split()[1]))
    return [str(parameters[key]) for key in keys] or None


def read_checkpoint(name: str) -> str | None:
    """The checkpoint an infotext's "Model" names: the default model (None), or that model in the models folder."""
    from modules import sd_models

    if name == sd_models.DEFAULT_MODEL_NAME:
        return None
    return str(sd_models.resolve_checkpoint(name).path)


def both_sides_set(first: str, second: str) -> Callable[[Mapping], bool]:
    return lambda values: values[first] > 0 and values[second] > 0


RESIZE_MODES = ((0, "Just resize"), (1, "Crop and resize"), (2, "Resize and fill"), (3, "Just resize (latent upscale)"))
INPAINTING_FILLS = ((0, "fill"), (1, "original"), (2, "latent noise"), (3, "latent nothing"))
MASK_MODES = ((0, "Inpaint masked"), (1, "Inpaint not masked"))
INPAINT_AREAS = {False: "Whole picture", True: "Only masked"}


def code_of(options: tuple[tuple[int, str], ...]) -> Callable[[str], int]:
    """An infotext reader for a Choice written by its name ("latent noise" -> 2)."""
    codes = {name: code for code, name in options}

    def read(text: str) -> int:
        if text not in codes:
            raise ValueError(f"expected one of {', '.join(codes)}")
        return codes[text]

    return read


def with_mask(values: Mapping) -> bool:
    """Inpainting keys are written for jobs with a mask (the webui writes them then)."""
    return values.get("mask") is not None


def hires(values: Mapping) -> bool:
    return bool(values.get("enable_hr"))


def hires_resize(values: Mapping) -> bool:
    return hires(values) and (values["hr_resize_x"] > 0 or values["hr_resize_y"] > 0)


def hires_differs(name: str, first_pass: str) -> Callable[[Mapping], bool]:
    """A hires key written when it is set and not the first pass's value (the webui's rule)."""
    return lambda values: hires(values) and values[name] not in (None, "") and values[name] != values[first_pass]


GUIDANCE_METHODS = ("CFG", "APG", "CFG-Zero*", "PAG", "SLG")  # modules.guidance runs them
PERTURBED_LAYERS_PATTERN = r"(mid|(down|up|block|single)\.[0-9]+)(, ?(mid|(down|up|block|single)\.[0-9]+))*"


def method_is(*methods: str) -> Callable[[Mapping], bool]:
    """A guidance method's own keys are written for jobs that use it."""
    return lambda values: values.get("guidance") in methods


# Declaration order is the infotext's key order (the webui's) and the order of CLI options and API fields.
FIELDS: tuple[GenerationField, ...] = (
    GenerationField(
        "prompt",
        PromptText(),
        "",
        "the prompt",
        per_image=True,
        infotext=Infotext("Prompt"),
        widget=Widget("text area", 0, {"rows": 2}),
        example="a red circle on a blue background",
    ),
    GenerationField(
        "negative_prompt",
        PromptText(),
        "",
        "what the image should not show",
        per_image=True,
        infotext=Infotext("Negative prompt"),
        widget=Widget("text area", 1, {"rows": 1}),
        example="blurry",
    ),
    GenerationField(
        "styles",
        Names("a list of style names"),
        [],
        "styles from styles.csv, applied to the prompts",
        label="Styles",
        short_name="style",
        cli=Cli(repeatable=True, metavar="STYLE"),
        api=Api(default=None),
    ),
    GenerationField(
        "steps",
        Integer(1, 1000),
        20,
        "sampling steps",
        infotext=Infotext("Steps"),
        api=Api(default=50),
        widget=Widget("bounded int", 2),
        example=3,
    ),
    GenerationField(
        "sampler_name",
        SamplerName(),
        "Euler a",
        "the sampler, see 'serena samplers'",
        short_name="sampler",
        infotext=Infotext("Sampler"),
        api=Api(default=None, description="null: sampler_index"),
        widget=Widget("dropdown", 2),
        example="DPM++ 2M",
    ),
    GenerationField(
        "scheduler",
        ScheduleType(),
        "Automatic",
        "schedule type: Automatic, Karras, Exponential (those the sampler supports)",
        infotext=Infotext("Schedule type", when=lambda values: values["scheduler"] != "Automatic"),
        api=Api(default=None, description="null: Automatic"),
        widget=Widget("dropdown", 2),
        example="Karras",
    ),
    GenerationField(
        "cfg_scale",
        Number(0.0, 50.0),
        7.0,
        "classifier-free guidance scale",
        per_image=True,
        infotext=Infotext("CFG scale"),
        widget=Widget("slider", 2, {"max": 30.0, "step": 0.5}),
        example=6.5,
    ),
    GenerationField(
        "distilled_cfg_scale",
        Number(0.0, 30.0),
        3.5,
        "guidance-distilled models (FLUX.1 dev): the guidance scale the model takes as an input; others ignore it",
        label="Distilled CFG Scale",  # Forge's infotext key and API name
        infotext=Infotext("Distilled CFG Scale", when=lambda values: values.get("guidance_distilled", False)),
        widget=Widget("slider", 2, {"max": 30.0, "step": 0.5}),
        example=3.0,
    ),
    GenerationField(
        "guidance",
        OneOf(GUIDANCE_METHODS),
        "CFG",
        "how the step's predictions combine (modules.guidance): CFG, APG (adaptive projected), CFG-Zero*, "
        "PAG (perturbed attention), SLG (skip layer)",
        infotext=Infotext("Guidance", when=lambda values: values["guidance"] != "CFG"),
        widget=Widget("dropdown", 7),
        example="APG",
    ),
    GenerationField(
        "guidance_rescale",
        Number(0.0, 1.0),
        0.0,
        "CFG rescale: how much of the guided prediction is rescaled to the prompt prediction's spread (0: off)",
        label="Rescale CFG",  # the key and API name the webui family's built-in RescaleCFG writes and reads
        infotext=Infotext("Rescale CFG", when=lambda values: values["guidance_rescale"] > 0),
        api=Api(name="rescale_cfg"),
        widget=Widget("slider", 7, {"step": 0.05}),
        example=0.7,
    ),
    GenerationField(
        "guidance_start",
        Number(0.0, 1.0),
        0.0,
        "guidance interval: the fraction of the steps from which guidance applies (before: the prompt alone)",
        label="Guidance start",
        infotext=Infotext("Guidance start", when=lambda values: values["guidance_start"] > 0),
        widget=Widget("slider", 7, {"step": 0.05}),
        example=0.2,
    ),
    GenerationField(
        "guidance_end",
        Number(0.0, 1.0),
        1.0,
        "guidance interval: the fraction of the steps until which guidance applies (after: the prompt alone)",
        label="Guidance end",
        infotext=Infotext("Guidance end", when=lambda values: values["guidance_end"] < 1),
        widget=Widget("slider", 7, {"step": 0.05}),
        example=0.8,
    ),
    GenerationField(
        "apg_eta",
        Number(0.0, 1.0),
        0.0,
        "APG: how much of the update parallel to the prompt's prediction is kept (0: none, 1: as CFG)",
        label="APG eta",
        infotext=Infotext("APG eta", when=method_is("APG")),
        example=0.5,
    ),
    GenerationField(
        "apg_norm_threshold",
        Number(0.0, 1000.0),
        15.0,
        "APG: the largest norm of the guidance update (0: not clipped)",
        label="APG norm threshold",
        infotext=Infotext("APG norm threshold", when=method_is("APG")),
        example=5.0,
    ),
    GenerationField(
        "apg_momentum",
        Number(-1.0, 1.0),
        -0.5,
        "APG: momentum of the guidance update over steps (0: none; negative, as the paper, sharpens)",
        label="APG momentum",
        infotext=Infotext("APG momentum", when=method_is("APG")),
        example=0.0,
    ),
    GenerationField(
        "zero_init_steps",
        Integer(0, 1000),
        1,
        "CFG-Zero*: the first steps whose prediction is zeroed",
        label="Zero-init steps",
        infotext=Infotext("Zero-init steps", when=method_is("CFG-Zero*")),
        example=2,
    ),
    GenerationField(
        "perturbed_scale",
        Number(0.0, 50.0),
        3.0,
        "PAG/SLG: the scale of the guidance away from the perturbed UNet's prediction",
        label="Perturbed scale",
        infotext=Infotext("Perturbed scale", when=method_is("PAG", "SLG")),
        example=2.0,
    ),
    GenerationField(
        "perturbed_layers",
        PatternText(
            "mid, down.N or up.N (UNet blocks with attention), block.N (SD 3's joint, FLUX's double-stream blocks) or "
            "single.N (FLUX's single-stream blocks), comma-separated",
            PERTURBED_LAYERS_PATTERN,
        ),
        "mid",
        "PAG/SLG: the blocks perturbed (PAG: their self-attention is identity; SLG: they are skipped)",
        label="Perturbed layers",
        infotext=Infotext("Perturbed layers", when=method_is("PAG", "SLG")),
        example="mid,up.1",
    ),
    GenerationField(
        "seed",
        Seed(),
        -1,
        "-1: random (the chosen seed is in the infotext)",
        per_image=True,
        infotext=Infotext("Seed"),
        widget=Widget("int", 4),
        example=1234,
    ),
    GenerationField(
        "width",
        OrNone(Size()),
        None,
        "default: the model's native size",
        label="Width",
        infotext=Infotext("Size", part=1),
        api=Api(description="null: the model's native size"),
        widget=Widget("bounded int", 3, {"min": 0, "step": 8, "tooltip": "0: the model's native size"}, none_as=0),
        example=40,
    ),
    GenerationField(
        "height",
        OrNone(Size()),
        None,
        "default: the model's native size",
        label="Height",
        infotext=Infotext("Size", part=2),
        api=Api(description="null: the model's native size"),
        widget=Widget("bounded int", 3, {"min": 0, "step": 8, "tooltip": "0: the model's native size"}, none_as=0),
        example=24,
    ),
    GenerationField(
        "sd_model_checkpoint",
        OrNone(Text("a checkpoint name or path")),
        None,
        "checkpoint: a path, or a name in the models folder (default: the embedded model)",
        short_name="model",
        infotext=Infotext(
            "Model",
            write=lambda checkpoint: {"Model hash": checkpoint.shorthash, "Model": checkpoint.name},
            read=read_checkpoint,
        ),
        api=None,  # the webui API sets it with override_settings
        option=WebuiOption("sd_model_checkpoint"),
        display=show_checkpoint,
    ),
    GenerationField(
        "sd_vae",
        Text("Automatic, None or a VAE file name in the VAE folder"),
        "Automatic",
        "VAE: a file in the VAE folder (SERENA_VAE_DIR, default models/VAE) instead of the checkpoint's own VAE",
        short_name="vae",
        infotext=Infotext("VAE", write=lambda vae: {"VAE hash": vae.shorthash, "VAE": vae.name}),
        api=None,  # the webui API sets it with override_settings or /sdapi/v1/options
        option=WebuiOption("sd_vae"),
    ),
    GenerationField(
        "additional_modules",
        Names("a list of text-encoder or VAE file names"),
        [],
        "Forge's additional modules: text encoders (SERENA_TEXT_ENCODER_DIR, default models/text_encoder) and a VAE "
        "(the VAE folder) that a single-file SD 3 or FLUX checkpoint is loaded with (modules.sd_modules)",
        label="Modules",
        sweepable=False,
        short_name="module",
        infotext=Infotext(
            "Module 1",
            write=lambda names: {f"Module {index}": Path(str(name)).stem for index, name in enumerate(names, 1)},
            owns=is_module_key,
            gather=modules_from_infotext,
        ),
        cli=Cli(repeatable=True, metavar="FILE"),
        api=None,  # the API sets it with override_settings (Forge's forge_additional_modules)
        option=WebuiOption("forge_additional_modules"),
    ),
    GenerationField(
        "refiner_checkpoint",
        OrNone(Text("a checkpoint name or path")),
        None,
        "SDXL refiner: the checkpoint that takes over sampling at refiner_switch_at (default: none)",
        label="Refiner",
        short_name="refiner",
        infotext=Infotext(
            "Refiner",
            write=lambda checkpoint: {"Refiner": checkpoint.title} if checkpoint else {},
            read=read_checkpoint,
        ),
        api=None,  # the API maps it to a checkpoint in the server's models folder (modules.api.requests)
        display=show_checkpoint,
    ),
    GenerationField(
        "refiner_switch_at",
        Number(0.0, 1.0),
        0.8,
        "SDXL refiner: how much of the sampling the model does before the refiner takes over (by timestep, as the "
        "webui: at the first step whose timestep t has (999 - t) / 1000 >= this)",
        label="Refiner switch at",
        infotext=Infotext("Refiner switch at", when=lambda values: values.get("refiner_checkpoint") is not None),
        example=0.5,
    ),
    GenerationField(
        "subseed",
        Seed(),
        -1,
        "variation seed",
        per_image=True,
        infotext=Infotext("Variation seed", when=lambda values: values["subseed_strength"] > 0),
        example=7,
    ),
    GenerationField(
        "subseed_strength",
        Number(0.0, 1.0),
        0.0,
        "variation strength: 0 the seed's noise, 1 the variation seed's",
        infotext=Infotext("Variation seed strength", when=lambda values: values["subseed_strength"] > 0),
        example=0.3,
    ),
    GenerationField(
        "seed_resize_from_w",
        SizeOrOff(),
        -1,
        "seed resize: the width the seed's noise was made for (-1: off)",
        label="Seed resize from width",
        infotext=Infotext("Seed resize from", part=1, when=both_sides_set("seed_resize_from_w", "seed_resize_from_h")),
        example=32,
    ),
    GenerationField(
        "seed_resize_from_h",
        SizeOrOff(),
        -1,
        "seed resize: the height the seed's noise was made for (-1: off)",
        label="Seed resize from height",
        infotext=Infotext("Seed resize from", part=2, when=both_sides_set("seed_resize_from_w", "seed_resize_from_h")),
        example=32,
    ),
    GenerationField(
        "denoising_strength",
        Number(0.0, 1.0),
        0.75,
        "how much of the init image is replaced: 0 none, 1 all",
        infotext=Infotext("Denoising strength", when=lambda values: values.get("enable_hr", True)),
        widget=Widget("slider", 5, {"step": 0.05}),
        example=0.6,
    ),
    GenerationField(
        "inpainting_mask_weight",
        Number(0.0, 1.0),
        1.0,
        "inpainting models: how much of the masked area the model's image conditioning hides",
        infotext=Infotext("Conditional mask weight", when=lambda values: values.get("inpainting_unet", False)),
        api=None,  # the webui API sets it with override_settings
        option=WebuiOption("inpainting_mask_weight"),
        example=0.5,
    ),
    GenerationField(
        "clip_skip",
        Integer(1, 12),
        1,
        "text encoder layers to leave out from the end (1: none)",
        infotext=Infotext("Clip skip", when=lambda values: values["clip_skip"] > 1),
        api=None,  # the webui API sets it with override_settings
        option=WebuiOption("CLIP_stop_at_last_layers"),
        example=2,
    ),
    GenerationField(
        "emphasis",
        OneOf(tuple(emphasis.MODES)),
        emphasis.DEFAULT,
        "how (word:1.2) weights apply: Original (mean restored), No norm, Ignore (weights dropped), "
        "None (brackets are text)",
        infotext=Infotext("Emphasis", when=lambda values: values["emphasis"] != emphasis.DEFAULT),
        api=None,  # the webui API sets it with override_settings
        option=WebuiOption("emphasis"),
        example="No norm",
    ),
    GenerationField(
        "eta",
        OrNone(Number(0.0, 1.0)),
        None,
        "step noise multiplier for DDIM-like samplers (default: the sampler's)",
        infotext=Infotext("Eta"),
        option=WebuiOption("eta_ddim"),
        example=0.5,
    ),
    GenerationField(
        "eta_noise_seed_delta",
        Integer(0, 2**32 - 1),
        0,
        "added to each image's seed for the step noise of ancestral and SDE samplers (the webui's ENSD)",
        label="ENSD",
        infotext=Infotext("ENSD", when=lambda values: values["eta_noise_seed_delta"] != 0),
        api=None,  # the webui API sets it with override_settings
        option=WebuiOption("eta_noise_seed_delta"),
        example=31337,
    ),
    GenerationField(
        "initial_noise_multiplier",
        Number(0.0, 1.5),
        1.0,
        "multiplies the noise added to the init images' latents",
        label="Noise multiplier",
        modes=IMG2IMG,
        infotext=Infotext("Noise multiplier", when=lambda values: values["initial_noise_multiplier"] != 1),
        api=Api(default=None),
        widget=Widget("slider", 5, {"step": 0.05}),
        example=0.8,
    ),
    GenerationField(
        "enable_hr",
        Flag(),
        False,
        "hires fix: upscale the first pass, then denoise it again at the larger size",
        label="Hires. fix",
        modes=TXT2IMG,
        example=True,  # no infotext key of its own: "Hires upscaler" implies it
        widget=Widget("checkbox", 6),
    ),
    GenerationField(
        "hr_scale",
        Number(0.1, 16.0),
        2.0,
        "hires fix: the upscale factor (when hr_resize_x and hr_resize_y are 0)",
        label="Hires upscale",
        modes=TXT2IMG,
        infotext=Infotext("Hires upscale", when=lambda values: hires(values) and not hires_resize(values)),
        example=1.5,
        widget=Widget("slider", 6, {"min": 1.0, "max": 4.0, "step": 0.25}),
    ),
    GenerationField(
        "hr_resize_x",
        Integer(0, MAX_SIZE),
        0,
        "hires fix: the width to resize to (0: from the height's scale, or hr_scale)",
        label="Hires resize width",
        modes=TXT2IMG,
        infotext=Infotext("Hires resize", part=1, when=hires_resize),
        example=48,
    ),
    GenerationField(
        "hr_resize_y",
        Integer(0, MAX_SIZE),
        0,
        "hires fix: the height to resize to (0: from the width's scale, or hr_scale)",
        label="Hires resize height",
        modes=TXT2IMG,
        infotext=Infotext("Hires resize", part=2, when=hires_resize),
        example=48,
    ),
    GenerationField(
        "hr_upscaler",
        UpscalerName(),
        "Latent",
        "hires fix: a latent upscale mode or an image upscaler (GET /sdapi/v1/upscalers, latent-upscale-modes)",
        label="Hires upscaler",
        modes=TXT2IMG,
        infotext=Infotext("Hires upscaler", when=hires, implies={"enable_hr": True}),
        api=Api(default=None, description="null: Latent"),
        example="Lanczos",
        widget=Widget("dropdown", 6),
    ),
    GenerationField(
        "hr_second_pass_steps",
        Integer(0, 1000),
        0,
        "hires fix: steps of the second pass (0: as many as the first)",
        label="Hires steps",
        modes=TXT2IMG,
        infotext=Infotext("Hires steps", when=lambda values: hires(values) and values["hr_second_pass_steps"] > 0),
        example=2,
        widget=Widget("bounded int", 6, {"tooltip": "0: the first pass's steps"}),
    ),
    GenerationField(
        "hr_sampler_name",
        OrNone(SamplerName()),
        None,
        "hires fix: the second pass's sampler (default: the first pass's)",
        label="Hires sampler",
        modes=TXT2IMG,
        short_name="hr_sampler",
        infotext=Infotext("Hires sampler", when=hires_differs("hr_sampler_name", "sampler_name")),
        example="Euler",
    ),
    GenerationField(
        "hr_scheduler",
        OrNone(ScheduleType()),
        None,
        "hires fix: the second pass's schedule type (default: the first pass's)",
        label="Hires schedule type",
        modes=TXT2IMG,
        infotext=Infotext("Hires schedule type", when=hires_differs("hr_scheduler", "scheduler")),
        example="Karras",
    ),
    GenerationField(
        "hr_prompt",
        Text("a prompt"),
        "",
        "hires fix: the second pass's prompt (empty: the prompt)",
        label="Hires prompt",
        modes=TXT2IMG,
        infotext=Infotext("Hires prompt", when=hires_differs("hr_prompt", "prompt")),
        example="a red circle on a blue background, sharp",
    ),
    GenerationField(
        "hr_negative_prompt",
        Text("a prompt"),
        "",
        "hires fix: the second pass's negative prompt (empty: the negative prompt)",
        label="Hires negative prompt",
        modes=TXT2IMG,
        infotext=Infotext("Hires negative prompt", when=hires_differs("hr_negative_prompt", "negative_prompt")),
        example="blurry, noise",
    ),
    GenerationField(
        "hr_checkpoint_name",
        OrNone(Text("a checkpoint name or path")),
        None,
        "hires fix: the second pass's checkpoint (default: the first pass's)",
        label="Hires checkpoint",
        modes=TXT2IMG,
        short_name="hr_model",
        infotext=Infotext(
            "Hires checkpoint",
            when=hires,
            write=lambda checkpoint: {"Hires checkpoint": checkpoint.name} if checkpoint else {},
            read=read_checkpoint,
        ),
        api=None,  # the API maps it to a checkpoint in the server's models folder (modules.api.requests)
        display=show_checkpoint,
    ),
    GenerationField(
        "firstphase_width",
        Integer(0, MAX_SIZE),
        0,
        "legacy hires fix: the first pass's width (width/height then give the final size)",
        label="First phase width",
        modes=TXT2IMG,
        cli=None,
        sweepable=False,
    ),
    GenerationField(
        "firstphase_height",
        Integer(0, MAX_SIZE),
        0,
        "legacy hires fix: the first pass's height (width/height then give the final size)",
        label="First phase height",
        modes=TXT2IMG,
        cli=None,
        sweepable=False,
    ),
    GenerationField(
        "batch_size",
        Integer(1, 64),
        1,
        "images per batch",
        label="Batch size",
        sweepable=False,  # a sweep cell is one image
        widget=Widget("bounded int", 3),
    ),
    GenerationField(
        "n_iter",
        Integer(1, 1000),
        1,
        "number of batches",
        label="Batch count",
        sweepable=False,
        widget=Widget("bounded int", 3),
    ),
    GenerationField(
        "init_images",
        Images(),
        [],
        "the images to start from: one, or one per batch position",
        label="Init images",
        modes=IMG2IMG,
        short_name="init_image",
        cli=Cli(repeatable=True, required=True, metavar="FILE"),
        api=Api(default=None, description="base64 images (PNG, JPEG, WebP, ...), data URLs allowed"),
    ),
    GenerationField(
        "resize_mode",
        Choice(RESIZE_MODES),
        0,
        "how init images are fitted to the size: " + Choice(RESIZE_MODES).describe(),
        label="Resize mode",
        modes=IMG2IMG,
    ),
    GenerationField(
        "mask",
        OrNone(Picture()),
        None,
        "inpainting: white is repainted, black kept (an RGBA mask's transparency counts as black)",
        label="Mask",
        modes=IMG2IMG,
        sweepable=False,
        cli=Cli(metavar="FILE"),
        api=Api(description="inpainting: a base64 image (data URL allowed)"),
    ),
    GenerationField(
        "latent_mask",
        OrNone(Picture()),
        None,
        "inpainting: a separate mask for the latents (default: the mask)",
        label="Latent mask",
        modes=IMG2IMG,
        sweepable=False,
        cli=Cli(metavar="FILE"),
        api=Api(description="a base64 image (data URL allowed)"),
    ),
    GenerationField(
        "mask_blur",
        OrNone(Integer(0, 64)),
        None,
        "inpainting: blur of the mask in pixels, both axes (default: mask_blur_x and mask_blur_y)",
        label="Mask blur",
        modes=IMG2IMG,
        infotext=Infotext("Mask blur", when=with_mask),
        example=6,
    ),
    GenerationField(
        "mask_blur_x",
        Integer(0, 64),
        4,
        "inpainting: horizontal blur of the mask in pixels",
        label="Mask blur x",
        modes=IMG2IMG,
    ),
    GenerationField(
        "mask_blur_y",
        Integer(0, 64),
        4,
        "inpainting: vertical blur of the mask in pixels",
        label="Mask blur y",
        modes=IMG2IMG,
    ),
    GenerationField(
        "inpainting_fill",
        Choice(INPAINTING_FILLS),
        0,
        "inpainting: what the masked area starts from: " + Choice(INPAINTING_FILLS).describe(),
        label="Masked content",
        modes=IMG2IMG,
        infotext=Infotext(
            "Masked content",
            when=with_mask,
            write=lambda code: {"Masked content": dict(INPAINTING_FILLS)[code]},
            read=code_of(INPAINTING_FILLS),
        ),
        example=1,
    ),
    GenerationField(
        "inpaint_full_res",
        Flag(),
        True,
        "inpainting: true repaints only the masked area at the full size, then pastes it back (Only masked)",
        label="Inpaint area",
        modes=IMG2IMG,
        infotext=Infotext(
            "Inpaint area",
            when=with_mask,
            write=lambda value: {"Inpaint area": INPAINT_AREAS[bool(value)]},
            read=code_of(tuple(INPAINT_AREAS.items())),
        ),
        example=False,
    ),
    GenerationField(
        "inpaint_full_res_padding",
        Integer(0, 256),
        0,
        "inpainting, Only masked: pixels of surroundings kept around the mask's box",
        label="Masked area padding",
        modes=IMG2IMG,
        infotext=Infotext("Masked area padding", when=with_mask),
        example=8,
    ),
    GenerationField(
        "inpainting_mask_invert",
        ChoiceOrFlag(MASK_MODES),
        0,
        "inpainting: " + Choice(MASK_MODES).describe() + " (false/true accepted)",
        label="Mask mode",
        modes=IMG2IMG,
        infotext=Infotext(
            "Mask mode",
            when=lambda values: with_mask(values) and bool(values["inpainting_mask_invert"]),
            write=lambda value: {"Mask mode": dict(MASK_MODES)[int(value)]},
            read=code_of(MASK_MODES),
        ),
        example=1,
    ),
    GenerationField(
        "mask_round",
        Flag(),
        True,
        "inpainting: make the mask black and white before blurring it",
        label="Mask round",
        modes=IMG2IMG,
    ),
    GenerationField(
        "controlnet_units",
        ControlUnits(),
        [],
        "ControlNet units (modules.control_units): each a model, its image and preprocessor (module), weight, "
        "guidance start/end, resize and control mode; dicts of the webui extension's unit fields accepted",
        label="ControlNet",
        sweepable=False,  # a unit's weight, start, end and model are axes of their own (controlnet.weight, ...)
        short_name="controlnet",
        infotext=Infotext(
            "ControlNet",
            when=lambda values: any(unit.active for unit in values["controlnet_units"]),
            write=control_units.infotext_pairs,
            owns=control_units.is_unit_key,
            gather=lambda parameters: control_units.units_from_infotext(parameters) or None,
        ),
        cli=Cli(repeatable=True, metavar="KEY=VALUE,..."),
        api=None,  # the API takes units as the extension does: alwayson_scripts.controlnet.args
        example=[control_units.ControlNetUnit(model="control_serena_shape_mask", image=EXAMPLE_PICTURE, weight=0.5)],
    ),
    GenerationField(
        "exact",
        Flag(),
        False,
        "one image at a time: bytes independent of the batch size",
        label="Exact",
        api=None,
    ),
    GenerationField(
        "do_not_save_samples",
        Flag(),
        False,
        "do not save the images",
        label="Do not save samples",
        affects_image=False,
        cli=None,  # the CLI always saves
        api=None,  # the webui API's save_images decides
        option=WebuiOption("samples_save", inverted=True),
    ),
    GenerationField(
        "do_not_save_grid",
        Flag(),
        False,
        "do not save a grid of the batch",
        label="Do not save grid",
        affects_image=False,
        short_name="no_grid",
        api=None,
        option=WebuiOption("grid_save", inverted=True),
    ),
    GenerationField(
        "samples_format",
        TextChoice(SAVE_FORMATS),
        "png",
        "file format of saved images and grids; the infotext goes into the PNG text or the JPEG/WebP EXIF comment",
        label="Images format",
        affects_image=False,
        api=None,
        option=WebuiOption("samples_format"),
    ),
    GenerationField(
        "outpath_samples",
        Text("a folder path"),
        "",
        "the folder images are saved in (under a folder per day)",
        label="Images folder",
        affects_image=False,
        cli=None,  # the CLI's --outdir, the API's server folder
        api=None,
        mode_defaults={mode: f"outputs/{mode}-images" for mode in MODES},
    ),
    GenerationField(
        "outpath_grids",
        Text("a folder path"),
        "",
        "the folder grids are saved in (under a folder per day)",
        label="Grids folder",
        affects_image=False,
        cli=None,
        api=None,
        mode_defaults={mode: f"outputs/{mode}-grids" for mode in MODES},
    ),
    GenerationField(
        "override_settings",
        Dictionary("a dict of webui options"),
        {},
        "webui options for this job only: sd_model_checkpoint, CLIP_stop_at_last_layers, eta_ddim, ...",
        label="Override settings",
        cli=None,
        api=None,  # the API merges them with the server's options
    ),
    GenerationField(
        "extra_generation_params",
        Dictionary("a dict"),
        {},
        "more infotext key/value pairs, written after Serena's own",
        label="Extra generation params",
        cli=None,
        api=None,
    ),
)


def by_name() -> dict[str, GenerationField]:
    return {declaration.name: declaration for declaration in FIELDS}


def declaration_of(name: str) -> GenerationField:
    return by_name()[name]


def fields_for(mode: str) -> list[GenerationField]:
    """The declarations of a txt2img or img2img job, in declaration order."""
    return [declaration for declaration in FIELDS if mode in declaration.modes]


def declarations_of(p) -> list[GenerationField]:
    """The declarations of the fields a processing object has, in declaration order."""
    names = {f.name for f in dataclasses.fields(p)}
    return [declaration for declaration in FIELDS if declaration.name in names]


def per_image_names() -> tuple[str, ...]:
    return tuple(declaration.name for declaration in FIELDS if declaration.per_image)


def declared(name: str, mode: str | None = None) -> Any:
    """A dataclass field with the declared default of `name` (for `mode`, where defaults differ by mode)."""
    default = declaration_of(name).default_for(mode)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.copy, default))
    return dataclasses.field(default=default)


# override_settings ---------------------------------------------------------------------------------------------------


def webui_options() -> dict[str, GenerationField]:
    """The webui options override_settings may hold, by option name."""
    return {declaration.option.name: declaration for declaration in FIELDS if declaration.option}


def fields_from_settings(settings: Mapping) -> dict:
    """override_settings as the field values they set ("samples_save": False -> do_not_save_samples=True)."""
    options = webui_options()
    return {
        options[key].name: (not value if options[key].option.inverted else value) for key, value in settings.items()
    }


# The infotext ---------------------------------------------------------------------------------------------------------


def infotext_pairs(values: Mapping) -> dict:
    """The key/value line of one image's infotext, in the webui's key order.

    `values`: every field's value as the engine used it for that image (its own seed, prompt and CFG, the resolved
    size, and for `sd_model_checkpoint` the loaded checkpoint). Fields missing from `values` are not written.
    """
    pairs: dict = {}
    for declaration in FIELDS:
        spec = declaration.infotext
        if spec is None or spec.key in TEXT_KEYS or declaration.name not in values:
            continue
        value = values[declaration.name]
        if value is None or (spec.when is not None and not spec.when(values)):
            continue
        if spec.part is not None:
            pairs.setdefault(spec.key, {})[spec.part] = value
        else:
            pairs |= spec.write(value) if spec.write else {spec.key: value}
    return {key: join_sides(value) if isinstance(value, dict) else value for key, value in pairs.items()}


def join_sides(sides: dict) -> str | None:
    return f"{sides[1]}x{sides[2]}" if set(sides) == {1, 2} else None


def values_from_infotext(parameters: Mapping, mode: str, given: Collection[str] = ()) -> dict:
    """The field values a parsed infotext (modules.infotext.parse_infotext) gives a `mode` job; keys it lacks give
    nothing (the field keeps its default), and fields in `given` (the caller sets them) are not read at all, so a
    "Model" naming a checkpoint missing here does not matter when the caller names one. ValueError names the field
    whose value cannot be read."""
    values = {}
    for declaration in fields_for(mode):
        spec = declaration.infotext
        if spec is not None and spec.gather is not None and declaration.name not in given:
            try:
                gathered = spec.gather(parameters)
            except ValueError as error:
                raise ValueError(f"{declaration.name}: cannot read {spec.key!r}: {error}") from None
            if gathered is not None:
                values[declaration.name] = gathered
            continue
        if spec is None or spec.parsed_key not in parameters or declaration.name in given:
            continue
        text = parameters[spec.parsed_key]
        values |= spec.implies
        try:
            values[declaration.name] = (spec.read or declaration.kind.parse)(text)
        except ValueError as error:
            if str(error).startswith(f"{declaration.name}:"):
                raise
            raise ValueError(f"{declaration.name}: cannot read {spec.key!r} value {text!r}: {error}") from None
    return values


def reads_infotext_key(key: str) -> bool:
    """Whether a declaration reads the infotext key `key` (what replay honours)."""
    return key in infotext_keys_read() or any(
        declaration.infotext.owns(key) for declaration in FIELDS if declaration.infotext and declaration.infotext.owns
    )


def infotext_keys_read() -> set[str]:
    """The infotext keys the declarations read: what replay honours (parsed "Size-1" style keys included)."""
    keys = set()
    for declaration in FIELDS:
        if declaration.infotext:
            keys |= {declaration.infotext.key, declaration.infotext.parsed_key}
    return keys
