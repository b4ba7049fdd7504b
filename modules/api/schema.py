"""/openapi.json says what this running server accepts: every request body as modules.api.lax reads it, with each
field's allowed values from its declaration (modules.generation_fields) and the server's own limits as maxima.

FastAPI's schema from the pydantic models knows the canonical types only. For each body read laxly this adds:
- `null` for any field with a default (it means the default); unknown fields allowed (they are ignored and named in
  the X-Serena-Ignored-Fields header);
- the text forms of numbers and flags (modules.api.number_text writes the patterns from the same grammar the server
  reads, bounded like the numbers), booleans for code fields, 0/1 for flags;
- ranges, multiples of 8 and names (samplers, schedule types, upscalers, styles) from the field kinds, and this
  server's limits (sizes, steps, images per request) as maxima;
- images as strings of format `base64-image` (a PNG, JPEG, WebP, BMP, GIF or TIFF file in base64, a data URL
  allowed): no JSON Schema keyword can say "decodes to an image", so the format names it and clients (and the schema
  fuzzer, test/hardening/test_api_fuzz.py) know what to send.
Rules between fields are stated with if/then where schema generators take them (batch_size x n_iter within
max_images, a sampler's schedule types, sampler_index read only without sampler_name); the others are named in
docs/reliability.md.
"""

from __future__ import annotations

import typing

from fastapi.openapi.utils import get_openapi

from modules import generation_fields, sd_samplers, styles, upscalers
from modules.api import controlnet_routes, extras, lax, models, number_text, requests, scripts
from modules.control_units import RUNNABLE_PREPROCESSORS
from modules.field_types import (
    MAX_SEED,
    MAX_SIZE,
    SIZE_MULTIPLE,
    Choice,
    ChoiceOrFlag,
    Dictionary,
    Flag,
    Images,
    Integer,
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
    TextChoice,
    UpscalerName,
)

IMAGE_FORMAT = "base64-image"
IMAGE = {
    "type": "string",
    "format": IMAGE_FORMAT,
    "minLength": 1,
    "description": "a PNG, JPEG, WebP, BMP, GIF or TIFF file in base64 (a data URL is accepted)",
}
FLAG = [{"type": "boolean"}, {"enum": [0, 1]}, {"type": "string", "pattern": number_text.FLAG_TEXT.pattern}]
BATCH_SIZE_KIND = generation_fields.declaration_of("batch_size").kind  # no more init images than a batch holds
EXTRAS_DEFAULT_SIZE = 512  # upscaling_resize_w and _h (modules.api.extras)
CANONICAL_KEYS = ("type", "anyOf", "items", "enum", "const", "format", "minimum", "maximum", "additionalProperties")


def any_case(names) -> str:
    """Names as the engine matches them: case-insensitive, spaces around ignored."""
    alternatives = "|".join(number_text.any_case(name) for name in names)
    return f"^[ \\t\\n\\r]*(?:{alternatives})[ \\t\\n\\r]*$"


def sampler_names(spec=None) -> list[str]:
    """The names a sampler goes by in the schema: its name and the webui's aliases, as written (the engine also takes
    them in any case, which the schema leaves unsaid: an enum keeps the schema fast for generators)."""
    specs = [spec] if spec else sd_samplers.SAMPLERS
    return [name for spec in specs for name in (spec.name, *spec.aliases)]


def schedule_names(schedule_types) -> list[str]:
    """Schedule types as written and in lower case (the webui API sends "karras")."""
    return list(dict.fromkeys([*schedule_types, *(name.lower() for name in schedule_types)]))


def integers(low: int, high: int) -> list[dict]:
    return [
        {"type": "integer", "minimum": low, "maximum": high},
        {"type": "string", "pattern": number_text.integer_pattern(low, high)},
    ]


def numbers(low: float, high: float) -> list[dict]:
    return [
        {"type": "number", "minimum": low, "maximum": high},
        {"type": "string", "pattern": number_text.number_pattern(low, high)},
    ]


def sizes(high: int, extra: tuple[int, ...] = ()) -> list[dict]:
    values = [*extra, *range(SIZE_MULTIPLE, high + 1, SIZE_MULTIPLE)]
    forms = [{"type": "integer", "multipleOf": SIZE_MULTIPLE, "minimum": SIZE_MULTIPLE, "maximum": high}]
    if extra:
        forms.append({"enum": list(extra)})
    return forms + [{"type": "string", "pattern": number_text.values_pattern(values)}]


def kind_forms(kind, limit: int | None) -> list[dict]:
    """The JSON forms a field of `kind` takes on this server; `limit`: the server's maximum for it, if any."""
    if isinstance(kind, OrNone):
        return kind_forms(kind.kind, limit)
    if isinstance(kind, Integer):
        return integers(kind.low, min(kind.high, limit) if limit is not None else kind.high)
    if isinstance(kind, Number):
        return numbers(kind.low, kind.high)
    if isinstance(kind, Seed):
        return integers(-1, MAX_SEED)
    if isinstance(kind, Size):
        return sizes(min(MAX_SIZE, limit or MAX_SIZE))
    if isinstance(kind, SizeOrOff):
        return sizes(MAX_SIZE, extra=(-1, 0))
    if isinstance(kind, Choice):
        codes = [code for code, _ in kind.options]
        if isinstance(kind, ChoiceOrFlag):  # int | bool: read strictly (modules.api.lax reads single scalar types)
            return [{"enum": codes}, {"type": "boolean"}]
        forms = [{"enum": codes}, {"type": "string", "pattern": number_text.values_pattern(codes)}]
        return forms + ([{"type": "boolean"}] if {0, 1} <= set(codes) else [])
    if isinstance(kind, Flag):
        return FLAG
    if isinstance(kind, TextChoice):
        return [{"type": "string", "pattern": any_case(kind.values)}]
    if isinstance(kind, OneOf):
        return [{"enum": list(kind.names)}]
    if isinstance(kind, PatternText):
        return [{"type": "string", "pattern": f"^(?:{kind.pattern})$"}]
    if isinstance(kind, SamplerName):
        return [{"enum": sampler_names()}]
    if isinstance(kind, ScheduleType):
        return [{"enum": schedule_names(sd_samplers.SCHEDULE_TYPES)}]
    if isinstance(kind, UpscalerName):
        return [{"enum": upscalers.names()}]
    if isinstance(kind, Names):
        return [{"type": "array", "items": {"enum": list(styles.load_styles())}}]
    if isinstance(kind, PromptText):
        return [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
    if isinstance(kind, Images):
        return [{"type": "array", "items": IMAGE, "minItems": 1, "maxItems": limit or BATCH_SIZE_KIND.high}]
    if isinstance(kind, Picture):
        return [IMAGE, {"const": ""}]
    if isinstance(kind, Dictionary):
        return [{"type": "object"}]
    return [{"type": "string"}]


def annotation_forms(annotation) -> list[dict] | None:
    """The lax forms of a plain scalar field (not a generation field); None: FastAPI's schema says it already."""
    scalar = lax.scalar_type(annotation)
    if scalar is int:
        return [{"type": "integer"}, {"type": "string", "pattern": number_text.INTEGER_TEXT.pattern}]
    if scalar is float:
        return [{"type": "number"}, {"type": "string", "pattern": number_text.NUMBER_TEXT.pattern}]
    if scalar is bool:
        return FLAG
    return None


def set_forms(property_schema: dict, forms: list[dict], nullable: bool) -> None:
    for key in CANONICAL_KEYS:
        property_schema.pop(key, None)
    property_schema["anyOf"] = forms + ([{"type": "null"}] if nullable else [])


def describe_body(body: dict, model, mode: str | None, limits, extra_forms: dict) -> None:
    """Rewrite one lax request body's schema (see the module docstring)."""
    body["additionalProperties"] = True
    declarations = {d.api_name: d for d in generation_fields.fields_for(mode) if d.api} if mode else {}
    field_limits = {
        "width": limits.max_width,
        "height": limits.max_height,
        "steps": limits.max_steps,
        "batch_size": limits.max_images,
        "n_iter": limits.max_images,
    }
    for name, property_schema in body.get("properties", {}).items():
        field = model.model_fields[name]
        nullable = not field.is_required()
        if name in field_limits and isinstance(field.default, int) and field.default > field_limits[name]:
            # the webui's default (50 steps) is over this server's limit: a request must say how many it wants
            nullable = False
            body["required"] = sorted({*body.get("required", ()), name})
            property_schema.pop("default", None)
        if name in extra_forms:
            set_forms(property_schema, extra_forms[name], nullable)
        elif name in declarations:
            set_forms(property_schema, kind_forms(declarations[name].kind, field_limits.get(name)), nullable)
        elif (forms := annotation_forms(field.annotation)) is not None:
            set_forms(property_schema, forms, nullable)
        elif nullable and typing.get_origin(field.annotation) is not typing.Union:
            set_forms(property_schema, [dict(property_schema)], nullable)


def per_value(field: str, values: range, then) -> list[dict]:
    """if/then clauses: for each value of `field` (a number, or its text), the constraint `then(value)` on others."""
    return [
        {
            "if": {
                "properties": {field: {"anyOf": [{"const": value}, {"pattern": number_text.values_pattern([value])}]}},
                "required": [field],
            },
            "then": then(value),
        }
        for value in values
    ]


def generation_rules(limits, mode: str) -> list[dict]:
    rules = per_value(
        "n_iter",
        range(1, limits.max_images + 1),
        lambda count: {"properties": {"batch_size": {"anyOf": integers(1, limits.max_images // count)}}},
    )
    for spec in sd_samplers.SAMPLERS:
        supported = sd_samplers.supported_schedule_types(spec.name)
        if set(supported) == set(sd_samplers.SCHEDULE_TYPES):
            continue
        names = {"enum": sampler_names(spec)}
        schedules = {"properties": {"scheduler": {"anyOf": [{"enum": schedule_names(supported)}, {"type": "null"}]}}}
        rules.append({"if": {"properties": {"sampler_name": names}, "required": ["sampler_name"]}, "then": schedules})
        # sampler_index stands in for a missing or null sampler_name
        unnamed = {"properties": {"sampler_index": names, "sampler_name": {"type": "null"}}}
        rules.append({"if": unnamed, "then": schedules})
    unnamed = {"properties": {"sampler_name": {"type": "null"}}}
    rules.append({"if": unnamed, "then": {"properties": {"sampler_index": {"anyOf": sampler_forms()}}}})
    return rules


def sampler_forms() -> list[dict]:
    return kind_forms(SamplerName(), None)


def no_op_forms() -> dict:
    """Webui features Serena lacks, accepted only at the values that leave them off (models.NO_OP_VALUES)."""
    forms = {}
    for name, allowed in models.NO_OP_VALUES.items():
        if False in allowed:  # a flag: false in any of its lax forms
            forms[name] = [
                {"const": False},
                {"const": 0},
                {"type": "string", "pattern": number_text.FALSE_TEXT.pattern},
            ]
        else:
            forms[name] = [{"const": value} for value in allowed if value is not None]  # {} or nothing but null
    return forms


def extras_forms(limits) -> dict:
    return {
        "resize_mode": [
            {"enum": [0, 1]},
            {"type": "boolean"},
            {"type": "string", "pattern": number_text.values_pattern([0, 1])},
        ],
        "gfpgan_visibility": [{"const": 0}, {"type": "string", "pattern": number_text.number_pattern(0, 0)}],
        "codeformer_visibility": [{"const": 0}, {"type": "string", "pattern": number_text.number_pattern(0, 0)}],
        "extras_upscaler_2_visibility": numbers(0, 1),
        "upscaler_1": [{"enum": upscalers.image_upscaler_names()}],
        "upscaler_2": [{"enum": upscalers.image_upscaler_names()}],
        "image": [IMAGE],
        "imageList": [
            {"type": "array", "items": {"$ref": "#/components/schemas/FileData"}, "maxItems": limits.max_images}
        ],
        "data": [IMAGE],
    }


def extras_rules(limits) -> list[dict]:
    """Scale by (resize_mode 0: upscaling_resize above 0 up to 8) or to (1: a size up to 4x the server's)."""
    scale_by = {
        "properties": {"upscaling_resize": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 8}]}}
    }
    sizes_to = {"upscaling_resize_w": limits.max_width * 4, "upscaling_resize_h": limits.max_height * 4}
    scale_to = {"properties": {name: {"anyOf": integers(8, limit)} for name, limit in sizes_to.items()}}
    # the default size (512) is over a lowered limit: then the request must give the size
    scale_to["required"] = [name for name, limit in sizes_to.items() if limit < EXTRAS_DEFAULT_SIZE]
    mode_is_1 = {
        "properties": {"resize_mode": {"anyOf": [{"const": 1}, {"pattern": number_text.values_pattern([1])}]}},
        "required": ["resize_mode"],
    }
    return [{"if": mode_is_1, "then": scale_to, "else": scale_by}]


def checkpoint_forms(models_dir, keeps: tuple) -> list[dict]:
    """A checkpoint named by a request: one in the server's models folder (name, file name or title), or a value that
    keeps the first pass's model."""
    names = [  # an embedded model by its name only: its file is the package's "weights" folder
        name
        for info in requests.allowed_checkpoints(models_dir)
        for name in ((info.name, info.title) if info.embedded else (info.name, info.path.name, info.title))
    ]
    return [{"enum": list(dict.fromkeys([*keeps, *names]))}]


def script_forms(mode: str) -> list[dict]:
    return [{"enum": ["", *(script.name for script in scripts.SCRIPTS if mode in script.modes)]}]


# The one always-on script Serena runs: the ControlNet extension's units (their fields: docs/controlnet.md).
ALWAYSON_SCRIPTS_FORM = {
    "type": "object",
    "propertyNames": {"pattern": "^[Cc][Oo][Nn][Tt][Rr][Oo][Ll][Nn][Ee][Tt]$"},
    "additionalProperties": {
        "type": "object",
        "properties": {"args": {"type": "array", "items": {"type": "object"}}},
        "required": ["args"],
    },
}


def detect_forms(limits) -> dict:
    """POST /controlnet/detect's images and modules: those Serena runs (modules.api.controlnet_routes)."""
    return {
        "controlnet_input_images": [{"type": "array", "items": IMAGE, "minItems": 1, "maxItems": limits.max_images}],
        "controlnet_masks": [{"type": "array", "description": "accepted, unused (no preprocessor here takes one)"}],
        "controlnet_module": [{"enum": list(RUNNABLE_PREPROCESSORS)}],
    }


def server_openapi(app, limits, models_dir) -> dict:
    """The app's OpenAPI schema with its request bodies described as this server reads them."""

    def generation_forms(mode: str) -> dict:
        # sampler_index is read only where sampler_name is missing or null (generation_rules says so)
        forms = {"sampler_index": [{"type": "string"}], "script_name": script_forms(mode)} | no_op_forms()
        forms["refiner_checkpoint"] = checkpoint_forms(models_dir, ("", "None"))
        forms["alwayson_scripts"] = [ALWAYSON_SCRIPTS_FORM]
        if mode == "txt2img":
            forms["hr_checkpoint_name"] = checkpoint_forms(models_dir, ("", "Use same checkpoint"))
        else:
            forms["mask"] = forms["latent_mask"] = kind_forms(Picture(), None)
        return forms

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema["components"]["schemas"]
    bodies = [
        (
            models.StableDiffusionTxt2ImgAPI,
            "txt2img",
            generation_forms("txt2img"),
            generation_rules(limits, "txt2img"),
        ),
        (
            models.StableDiffusionImg2ImgProcessingAPI,
            "img2img",
            generation_forms("img2img"),
            generation_rules(limits, "img2img"),
        ),
        (models.PNGInfoRequest, None, {"image": [IMAGE]}, []),
        (models.PromptStyleRequest, None, {}, []),
        (models.TaskProgressRequest, None, {}, []),
        (extras.ExtrasSingleImageRequest, None, extras_forms(limits), extras_rules(limits)),
        (extras.ExtrasBatchImagesRequest, None, extras_forms(limits), extras_rules(limits)),
        (extras.FileData, None, extras_forms(limits), []),
        (controlnet_routes.DetectRequest, None, detect_forms(limits), []),
    ]
    for model, mode, extra_forms, rules in bodies:
        body = components[model.__name__]
        describe_body(body, model, mode, limits, extra_forms)
        if rules:
            body["allOf"] = rules
    img2img = components[models.StableDiffusionImg2ImgProcessingAPI.__name__]
    img2img["required"] = sorted({*img2img.get("required", ()), "init_images"})  # refused when missing or null
    img2img["properties"]["init_images"]["anyOf"] = kind_forms(Images(), limits.max_images)
    return schema
