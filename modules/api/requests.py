"""From an API request to a processing object: the server's limits, options and checkpoint allowlist, init images.

Everything here runs before a job is queued, so a bad request costs no generation time. Errors are ApiError with the
HTTP status, a short error kind, the request field at fault and a one-line detail.

What a client can reach is the server's choice: `sd_model_checkpoint` names only the default model or a checkpoint
inside the server's models folder (by name, file name or title: never a path, and never through a symlink leading out
of the folder); images are saved, only with `save_images`, under the server's output folder.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from modules import control_units, generation_fields, hires, infotext, named_files, replay, sd_models
from modules.api import lax, models
from modules.api.webui_options import OUTDIR_OPTIONS, SERVER_OPTIONS, STORED_OPTIONS
from modules.field_types import Flag, OrNone
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,")
_FIELD_MESSAGE = re.compile(r"^([\w.]+(?:\[\d+\])?(?:\.\w+)?): (.*)$", re.DOTALL)
_TITLE_HASH = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]$")


@dataclass(frozen=True)
class ApiLimits:
    """What one request may ask of the server; a request over a limit is refused with 400 naming it."""

    max_width: int = 1024
    max_height: int = 1024
    max_images: int = 16  # batch_size * n_iter
    max_steps: int = 150
    max_prompt_chars: int = 20_000  # each prompt and negative prompt (the text encoder reads 75 tokens at a time)
    max_init_image_bytes: int = 16 * 2**20  # one decoded image (img2img, png-info)
    max_init_image_pixels: int = 2048 * 2048
    max_request_bytes: int = 64 * 2**20  # a whole request body (413 above it)
    # The work one request may ask for: batch_size * n_iter * width * height * steps (sixteen 512x512 images at 50
    # steps); a size left to the model counts as BUDGET_NATIVE_SIZE, SD 1.5's.
    max_pixel_steps: int = 16 * 512 * 512 * 50
    max_queued_jobs: int = 16  # running and waiting together (503 above it)


class ApiError(Exception):
    def __init__(self, status: int, error: str, field: str | None, detail: str):
        super().__init__(detail)
        self.status, self.error, self.field, self.detail = status, error, field, detail

    def content(self) -> dict:
        return {"error": self.error, "field": self.field, "detail": self.detail}


def invalid(field: str | None, detail: str) -> ApiError:
    return ApiError(400, "invalid parameter", field, detail)


def over_limit(field: str, detail: str) -> ApiError:
    return ApiError(400, "limit exceeded", field, detail)


def engine_error(error: Exception, override_settings: dict | None) -> ApiError:
    """An engine ValueError/TypeError ("field: message") as a 400 naming the request's field."""
    match = _FIELD_MESSAGE.match(str(error))
    if match is None:
        return invalid(None, str(error))
    field, detail = match.groups()
    if field.startswith("controlnet_units"):  # the API's units are the extension's script args
        field = "alwayson_scripts.controlnet.args" + field.removeprefix("controlnet_units")
    options = generation_fields.webui_options()
    for option in override_settings or {}:  # the engine names the processing field an option set
        if option in options and options[option].name == field:
            field = f"override_settings.{option}"
    return invalid(field, f"{field}: {detail}")


def decode_image(text: str, field: str, limits: ApiLimits) -> Image.Image:
    """A base64 (or data URL) image; 400 when it is not one or is over the limits. URLs are never fetched."""
    if text.startswith(("http://", "https://", "file:")):
        raise invalid(field, f"{field}: URLs are not fetched; send the image itself as base64")
    text = "".join(_DATA_URL.sub("", text, count=1).split())
    if len(text) * 3 // 4 > limits.max_init_image_bytes:
        raise over_limit(field, f"{field}: image is over this server's limit of {limits.max_init_image_bytes} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(field, f"{field}: not valid base64") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            if image.width * image.height > limits.max_init_image_pixels:
                raise over_limit(
                    field,
                    f"{field}: {image.width}x{image.height} is over this server's limit of "
                    f"{limits.max_init_image_pixels} pixels",
                )
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own limit, before ours
        detail = f"{field}: declares more pixels than this server's limit of {limits.max_init_image_pixels} pixels"
        raise over_limit(field, detail) from None
    except (OSError, SyntaxError, ValueError):
        raise invalid(field, f"{field}: not a readable image ({', '.join(IMAGE_FORMATS)})") from None
    return image


def allowed_checkpoints(models_dir: Path) -> list[sd_models.CheckpointInfo]:
    """The embedded models, then the checkpoints whose real path is inside the models folder."""
    listed = sd_models.list_checkpoints(models_dir)
    return [info for info in listed if info.embedded or named_files.is_inside(models_dir, info.path)]


def find_checkpoint(name, models_dir: Path, field: str) -> sd_models.CheckpointInfo | None:
    """The allowed checkpoint `name` refers to, None for the default model; 400 for anything else."""
    if name is None or name in ("", "default", sd_models.DEFAULT_MODEL_NAME):
        return None
    if not isinstance(name, str):
        raise invalid(field, f"{field}: expected a checkpoint name, got {type(name).__name__}")
    checkpoints = allowed_checkpoints(models_dir)
    bare = _TITLE_HASH.sub("", name)
    embedded = {info.name: info for info in checkpoints if info.embedded}
    if bare in embedded:
        return embedded[bare]
    try:
        named_files.safe_name(models_dir, bare, field)
    except ValueError as error:
        raise invalid(field, str(error)) from None
    for info in checkpoints:
        if not info.embedded and bare in (info.name, info.path.name):
            return info
    available = ", ".join(info.name for info in checkpoints)
    raise invalid(field, f"{field}: no model {name!r} in the models folder; available: {available}")


class ServerOptions:
    """The webui options a client reads and sets with /sdapi/v1/options: defaults for every later generation.

    Honoured: the checkpoint, the options generation fields declare (`option=`, checked by the field's kind), and
    webui_options.SERVER_OPTIONS (output folders inside the server's, live previews). Stored and echoed only:
    webui_options.STORED_OPTIONS. Other names are ignored, except near-miss spellings of known ones (400).
    """

    def __init__(self, models_dir: Path, outdir: Path):
        self.models_dir, self.outdir = models_dir, outdir
        self.checkpoint: sd_models.CheckpointInfo | None = None  # None: the default model
        self.values: dict = {
            name: (not declaration.default) if declaration.option.inverted else declaration.default
            for name, declaration in engine_options().items()
        }
        self.values |= {name: self.folder(name, value) if value else "" for name, value in OUTDIR_OPTIONS.items()}
        self.values |= {"live_previews_enable": SERVER_OPTIONS["live_previews_enable"]} | copy.deepcopy(STORED_OPTIONS)

    def value(self, name: str):
        return self.values[name]

    def as_dict(self) -> dict:
        checkpoint = self.checkpoint or sd_models.default_checkpoint()
        return {"sd_model_checkpoint": checkpoint.title, **self.values}

    def known(self) -> set[str]:
        return {"sd_model_checkpoint", *self.values}

    def folder(self, option: str, value, field: str | None = None) -> str:
        """An output folder option as an absolute path inside the server's output folder (relative: under it)."""
        field = field or option
        if not isinstance(value, str):
            raise invalid(field, f"{field}: expected a folder path, got {type(value).__name__}")
        path = (self.outdir / value).resolve()
        if not path.is_relative_to(self.outdir):
            raise invalid(field, f"{field}: {value!r} is outside this server's output folder {self.outdir}")
        return str(path)

    def checked(self, key: str, value, field: str | None = None):
        """The value an option takes from a client's `value`; 400 naming `field` when it is not allowed."""
        field = field or key
        if key in OUTDIR_OPTIONS:
            return self.folder(key, value, field) if value else ""
        declaration = engine_options().get(key)
        if declaration is None:  # a server option (a flag) or a stored one (kept as given)
            if not isinstance(SERVER_OPTIONS.get(key), bool):
                return value
            value = lax.as_flag(value)
            kind = Flag()
        else:
            value = loosen_option(declaration, value)
            kind = Flag() if declaration.option.inverted else declaration.kind  # "save" options of "do not" fields
        try:
            kind.check(field, value)
        except (TypeError, ValueError) as error:
            raise invalid(field, str(error)) from None
        return value

    def update(self, values: dict) -> list[str]:
        """Check every option, then set them all (the model loads with the next generation); returns the names
        ignored as unknown."""
        checked, ignored = {}, []
        known = self.known()
        for key, value in values.items():
            if key == "sd_model_checkpoint":
                continue
            if key not in known:
                if lax.misspelled(key, known, values):
                    raise invalid(key, f"{key}: unknown option; did you mean {lax.misspelled(key, known, values)!r}?")
                ignored.append(key)
                continue
            checked[key] = self.checked(key, value)
        checkpoint = self.checkpoint
        if "sd_model_checkpoint" in values:
            checkpoint = find_checkpoint(values["sd_model_checkpoint"], self.models_dir, "sd_model_checkpoint")
        self.checkpoint = checkpoint
        self.values.update(checked)
        if ignored:
            lax.log.info("ignored unknown options: %s", ", ".join(ignored))
        return ignored

    def effective(self, requested: dict | None) -> dict:
        """These options with a request's override_settings applied (checked; 400 naming override_settings.<key>)."""
        values = dict(self.values)
        for key, value in (requested or {}).items():
            if key in self.values:
                values[key] = self.checked(key, value, f"override_settings.{key}")
        return values

    def override_settings(self, requested: dict | None) -> dict:
        """The engine's override_settings for one request: the engine's options from these options and the
        request's own, with the checkpoint as a checked path. Saving and folders are set by `processing_fields`;
        stored-only options have no effect; unknown ones go on for the engine to refuse."""
        requested = requested or {}
        values = self.effective(requested)
        settings = {
            key: values[key]
            for key, declaration in engine_options().items()
            if values[key] is not None and declaration.name not in SAVING_FIELDS
        }
        settings |= {key: value for key, value in requested.items() if key not in self.known()}
        checkpoint = self.checkpoint
        if "sd_model_checkpoint" in requested:
            field = "override_settings.sd_model_checkpoint"
            checkpoint = find_checkpoint(requested["sd_model_checkpoint"], self.models_dir, field)
        settings["sd_model_checkpoint"] = str(checkpoint.path) if checkpoint else None
        return settings

    def saving(self, kind: str, requested: dict | None, save_images: bool) -> dict:
        """Whether and where a request's images and grid are saved: `save_images` and the samples_save/grid_save
        options must all allow it (the webui's rule); the folders are the outdir_* options."""
        values = self.effective(requested)
        return {
            "do_not_save_samples": not (save_images and values["samples_save"]),
            "do_not_save_grid": not (save_images and values["grid_save"]),
            "outpath_samples": values["outdir_samples"] or values[f"outdir_{kind}_samples"],
            "outpath_grids": values["outdir_grids"] or values[f"outdir_{kind}_grids"],
        }


# The processing fields ServerOptions.saving sets (from save_images and the samples_save/grid_save options).
SAVING_FIELDS = ("do_not_save_samples", "do_not_save_grid")


def engine_options() -> dict[str, generation_fields.GenerationField]:
    """The options generation fields declare, but the checkpoint (which the server resolves itself)."""
    return {name: d for name, d in generation_fields.webui_options().items() if name != "sd_model_checkpoint"}


def loosen_option(declaration: generation_fields.GenerationField, value):
    """An option's value read the webui's way (numeric strings, 0/1 for flags), by its field's JSON type."""
    kind = declaration.kind.kind if isinstance(declaration.kind, OrNone) else declaration.kind
    json_type = bool if declaration.option.inverted else kind.json_type
    return lax.loosen_value(declaration.option.name, json_type, value)


def check_request(request: models.WebuiRequest, limits: ApiLimits) -> None:
    """Refuse webui features Serena lacks and anything over the server's limits."""
    for field, allowed in models.NO_OP_VALUES.items():
        if field in type(request).model_fields and (value := getattr(request, field)) not in allowed:
            detail = f"{field}: {json.dumps(value)[:80]} is not supported by Serena; leave it out or send "
            raise ApiError(400, "not supported", field, detail + json.dumps(allowed[0]))
    for name in request.alwayson_scripts or {}:
        if str(name).lower() != CONTROLNET_SCRIPT:
            detail = f"alwayson_scripts.{name}: the script is not in Serena; the always-on scripts it runs: controlnet"
            raise ApiError(400, "not supported", f"alwayson_scripts.{name}", detail)
    for field in ("prompt", "negative_prompt"):
        texts = [getattr(request, field)] if isinstance(getattr(request, field), str) else getattr(request, field)
        if any(len(text) > limits.max_prompt_chars for text in texts):
            raise over_limit(field, f"{field}: longer than this server's limit of {limits.max_prompt_chars} characters")
    for field, limit in (("width", limits.max_width), ("height", limits.max_height), ("steps", limits.max_steps)):
        value = getattr(request, field)
        if value is not None and value > limit:
            raise over_limit(field, f"{field}: {value} is over this server's limit of {limit}")
    count = request.batch_size * request.n_iter
    if request.batch_size > 0 and request.n_iter > 0 and count > limits.max_images:
        detail = f"n_iter: batch_size * n_iter = {count} images is over this server's limit of {limits.max_images}"
        raise over_limit("n_iter", detail)
    if (work := pixel_steps(request)) > limits.max_pixel_steps:
        detail = (
            f"steps: batch_size * n_iter * width * height * steps = {work} pixel-steps is over this server's limit "
            f"of {limits.max_pixel_steps}; ask for fewer or smaller images or fewer steps"
        )
        raise over_limit("steps", detail)


BUDGET_NATIVE_SIZE = 512


def pixel_steps(request: models.WebuiRequest) -> int:
    """The work a request asks for, in pixel-steps (see ApiLimits.max_pixel_steps); a hires pass counts at its size."""
    width, height = (getattr(request, side) or BUDGET_NATIVE_SIZE for side in ("width", "height"))
    steps = max(request.steps or 1, 1)
    work = width * height * steps
    if getattr(request, "enable_hr", False):  # the second pass at the hires size (modules.hires)
        resize_x, resize_y = request.hr_resize_x or 0, request.hr_resize_y or 0
        if resize_x or resize_y:
            hr_width = resize_x or resize_y * width // height
            hr_height = resize_y or resize_x * height // width
        else:
            scale = max(request.hr_scale or 1.0, 1.0)
            hr_width, hr_height = int(width * scale), int(height * scale)
        work += hr_width * hr_height * max(request.hr_second_pass_steps or steps, 1)
    return max(request.batch_size, 1) * max(request.n_iter, 1) * work


IMAGE_FIELDS = ("init_images", "mask", "latent_mask")  # decoded with the server's limits

# The webui's seed_enable_extras switch: false sets these to their defaults.
SEED_EXTRAS = ("subseed", "subseed_strength", "seed_resize_from_h", "seed_resize_from_w")


def processing_fields(request, kind: str, options: ServerOptions) -> dict:
    """The processing fields of a request, with the webui API's rules for them: null means the engine's default,
    sampler_index stands in for a null sampler_name, seed_enable_extras false turns variation seeds and seed resize
    off. Init images are decoded separately, with the server's limits."""
    fields = {
        declaration.name: value
        for declaration in generation_fields.fields_for(kind)
        if declaration.api is not None
        and declaration.name not in IMAGE_FIELDS
        and (value := getattr(request, declaration.api_name)) is not None
    }
    fields |= infotext_fields(request, kind)
    fields["sampler_name"] = fields.get("sampler_name") or request.sampler_index
    if request.refiner_checkpoint not in (None, "", "None"):
        checkpoint = find_checkpoint(request.refiner_checkpoint, options.models_dir, "refiner_checkpoint")
        fields["refiner_checkpoint"] = str(checkpoint.path) if checkpoint else None
    if not request.seed_enable_extras:
        fields |= {name: generation_fields.declaration_of(name).default for name in SEED_EXTRAS}
    return (
        fields
        | {"override_settings": options.override_settings(request.override_settings)}
        | options.saving(kind, request.override_settings, request.save_images)
    )


def infotext_fields(request, kind: str) -> dict:
    """The fields a request's `infotext` gives: those the request does not set itself, as the webui applies it. The
    model is not read from it (the webui's default, disable_weights_auto_swap), so a "Model" missing here does not
    matter; `model_hash_caveat` says when the model used is not the one recorded."""
    if not request.infotext:
        return {}
    parameters = infotext.parse_infotext(request.infotext)
    given = {
        declaration.name
        for declaration in generation_fields.fields_for(kind)
        if declaration.api is None or declaration.api_name in request.model_fields_set
    }
    if "sampler_index" in request.model_fields_set:
        given.add("sampler_name")
    try:
        return generation_fields.values_from_infotext(parameters, kind, given | {"sd_model_checkpoint"})
    except ValueError as error:
        raise invalid("infotext", f"infotext: {error}") from None


def model_hash_caveat(request, checkpoint_path: str | None) -> str | None:
    """Why an infotext request may not give the recorded image: the model it runs on has another hash."""
    if not request.infotext:
        return None
    checkpoint = sd_models.resolve_checkpoint(checkpoint_path)
    return replay.model_caveat(infotext.parse_infotext(request.infotext), checkpoint)


def validated(p, request):
    if (request.attention_maps or request.trajectory) and request.script_name:
        field = "attention_maps" if request.attention_maps else "trajectory"
        raise invalid(field, f"{field}: not with a script ({request.script_name!r}); ask for one job at a time")
    p.attention, p.trajectory = request.attention_maps or None, request.trajectory or None
    try:
        p.validate()
    except (TypeError, ValueError) as error:
        raise engine_error(error, request.override_settings) from None
    if caveat := model_hash_caveat(request, (p.override_settings or {}).get("sd_model_checkpoint")):
        lax.log.warning("infotext: %s", caveat)
    return p


def txt2img_processing(
    request: models.StableDiffusionTxt2ImgAPI, options: ServerOptions, limits: ApiLimits
) -> StableDiffusionProcessingTxt2Img:
    check_request(request, limits)
    fields = processing_fields(request, "txt2img", options)
    if request.hr_checkpoint_name not in (None, "", "Use same checkpoint"):
        checkpoint = find_checkpoint(request.hr_checkpoint_name, options.models_dir, "hr_checkpoint_name")
        fields["hr_checkpoint_name"] = str(checkpoint.path) if checkpoint else None
    fields["controlnet_units"] = controlnet_units(request, limits)
    p = validated(StableDiffusionProcessingTxt2Img(**fields), request)
    check_hires_size(p, limits)
    return p


CONTROLNET_SCRIPT = "controlnet"
CONTROLNET_ARGS = "alwayson_scripts.controlnet.args"


def controlnet_args(request) -> list:
    """The unit dicts of `alwayson_scripts: {"controlnet": {"args": [...]}}` (the script's name in any case, as the
    webui matches it); [] without the script."""
    scripts_args = {str(name).lower(): value for name, value in (request.alwayson_scripts or {}).items()}
    if CONTROLNET_SCRIPT not in scripts_args:
        return []
    script = scripts_args[CONTROLNET_SCRIPT]
    args = script.get("args") if isinstance(script, dict) else None
    if not isinstance(args, list):
        detail = f"{CONTROLNET_ARGS}: expected a list of ControlNet units (objects of the extension's fields)"
        raise invalid(CONTROLNET_ARGS, detail)
    return args


def controlnet_units(request, limits: ApiLimits) -> list:
    """The extension's units of a request; 400 naming the unit's field for what cannot be read."""

    def decode(where: str, text: str):
        return decode_image(text, where, limits)

    try:
        return [
            control_units.unit_from_dict(f"{CONTROLNET_ARGS}[{index}]", unit, decode_image=decode, ignore_unknown=True)
            for index, unit in enumerate(controlnet_args(request))
        ]
    except (TypeError, ValueError) as error:
        raise invalid(CONTROLNET_ARGS, str(error)) from None


def detected_maps(p, request, width: int, height: int) -> list[Image.Image]:
    """The control images the active units used, for the units that ask for them (the extension's
    `save_detected_map`, default true), which the extension appends to a response's images."""
    from modules import control_preprocessors

    maps = []
    for unit, values in zip(p.controlnet_units, controlnet_args(request)):
        wanted = values.get("save_detected_map", True) if isinstance(values, dict) else True
        if unit.active and control_units.lax_flag("save_detected_map", True if wanted is None else wanted):
            maps.append(control_preprocessors.control_image(unit, width, height))
    return maps


def check_hires_size(p: StableDiffusionProcessingTxt2Img, limits: ApiLimits) -> None:
    """The hires pass's image is within the server's size limits too (its size follows from the first pass's)."""
    if not p.enable_hr:
        return
    effective = p.effective()
    checkpoint = sd_models.resolve_checkpoint(effective.sd_model_checkpoint)
    native = sd_models.configured_native_size(checkpoint) or BUDGET_NATIVE_SIZE
    *_, target = hires.job_sizes(effective, native)
    if target.width > limits.max_width or target.height > limits.max_height:
        field = "hr_resize_x" if p.hr_resize_x or p.hr_resize_y else "hr_scale"
        raise over_limit(
            field,
            f"{field}: the hires image would be {target.width}x{target.height}, over this server's limit of "
            f"{limits.max_width}x{limits.max_height}",
        )


def img2img_processing(
    request: models.StableDiffusionImg2ImgProcessingAPI, options: ServerOptions, limits: ApiLimits
) -> StableDiffusionProcessingImg2Img:
    check_request(request, limits)
    fields = processing_fields(request, "img2img", options)
    if not request.init_images:
        raise invalid("init_images", "init_images: at least one base64 image is required for img2img")
    if len(request.init_images) > max(request.batch_size, 1):
        raise invalid("init_images", "init_images: give 1 image or batch_size images")
    init_images = [decode_image(text, f"init_images[{i}]", limits) for i, text in enumerate(request.init_images)]
    for name in ("mask", "latent_mask"):  # an empty string is no mask, as in the webui
        if getattr(request, name):
            fields[name] = decode_image(getattr(request, name), name, limits)
    fields["controlnet_units"] = controlnet_units(request, limits)
    return validated(StableDiffusionProcessingImg2Img(**fields, init_images=init_images), request)
