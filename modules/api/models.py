"""The API's wire format: request and response models with the webui's names, defaults and shapes.

Requests are read the webui's way (modules.api.lax: numeric strings, integral floats, null for the default, unknown
fields ignored and reported), then checked strictly (JSON types as declared, 422 naming the field). Their generation
fields come from the field declarations (modules.generation_fields: kind, default, the webui API's default where it
differs, description); the webui API's own fields (how to answer, and fields accepted for webui clients) are declared
here. Webui fields that Serena does not implement are accepted only where webui clients commonly send them:
`IGNORED_FIELDS` at any value, `NO_OP_VALUES` only at the values that change nothing (anything else is refused with
400 naming the field).

One deliberate difference from the webui: `width`/`height` default to null, the loaded model's native size (512 for
SD 1.x, 32 for the embedded model), instead of 512.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, model_validator

from modules import generation_fields
from modules.api import lax

# Fields a webui client sends with every request; Serena has nothing they would change, whatever their value.
IGNORED_FIELDS = (
    "s_min_uncond",
    "s_churn",
    "s_tmax",
    "s_tmin",
    "s_noise",
    "do_not_save_samples",  # the webui API also replaces both with `not save_images`
    "do_not_save_grid",
    "override_settings_restore_afterwards",  # override_settings never outlive their request here
    "disable_extra_networks",
    "comments",
    "script_args",  # only read with a script_name
    "image_cfg_scale",  # instruct-pix2pix models only
)

# Webui features Serena does not have: accepted only at the values that leave them off.
NO_OP_VALUES: dict[str, tuple] = {
    "restore_faces": (None, False),
    "tiling": (None, False),
    "outpath_samples": (None,),  # the server decides where images are saved
    "outpath_grids": (None,),
}


class LaxRequest(BaseModel):
    """A request read the webui's way (modules.api.lax), then checked strictly; `ignored_fields` names the unknown
    fields it dropped."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    _ignored_fields: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def read_laxly(cls, data, handler):
        if not isinstance(data, dict):
            return handler(data)
        data, ignored = lax.loosen(cls.model_fields, data)
        request = handler(data)
        request._ignored_fields = ignored
        return request

    @property
    def ignored_fields(self) -> list[str]:
        return self._ignored_fields


class WebuiRequest(LaxRequest):
    """The webui API's fields that are not generation fields: how to answer, and fields accepted for webui clients."""

    sampler_index: str = Field("Euler", description="the sampler when sampler_name is null (the webui's older name)")
    seed_enable_extras: bool = Field(True, description="false: no variation seed and no seed resize")
    override_settings: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False
    # Serena's instruments (not the webui's): returned in the response, and saved beside saved images.
    attention_maps: bool = Field(
        False,
        description="Serena: each word's cross-attention map per image (response attention_maps; saved as "
        "<image>-attention-NN-<word>.png beside saved images)",
    )
    trajectory: bool = Field(
        False,
        description="Serena: each image's denoising film strip (response trajectories; saved as "
        "<image>-trajectory.png beside saved images)",
    )

    # Accepted for webui clients; see IGNORED_FIELDS and NO_OP_VALUES.
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = Field(
        None, description="a checkpoint in the models folder; null, '' or 'None': none"
    )
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    outpath_samples: str | None = None
    outpath_grids: str | None = None
    script_name: str | None = None
    script_args: list = Field(default_factory=list)
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = Field(
        None,
        description="an image's generation parameters: they set every field this request does not set itself (the "
        "webui's rule); the model stays the server's or override_settings' (a different recorded model hash is logged)",
    )


class WebuiTxt2ImgRequest(WebuiRequest):
    """txt2img: the hires fix fields are generation fields; the second pass's checkpoint is a name in the server's
    models folder, like override_settings' sd_model_checkpoint."""

    hr_checkpoint_name: str | None = Field(None, description="null or 'Use same checkpoint': the first pass's")


class WebuiImg2ImgRequest(WebuiRequest):
    include_init_images: bool = False

    # Instruct-pix2pix, accepted for webui clients; see IGNORED_FIELDS.
    image_cfg_scale: float | None = None


def request_model(name: str, mode: str, base: type[WebuiRequest]) -> type[WebuiRequest]:
    """A request model: `base`'s fields, then every generation field of `mode` the webui API has, with the webui
    API's default (null where the engine's default applies)."""
    fields = {}
    for declaration in generation_fields.fields_for(mode):
        if declaration.api is None:
            continue
        default = declaration.api_default(mode)
        annotation = declaration.kind.json_type | None if default is None else declaration.kind.json_type
        examples = [declaration.example] if declaration.example is not None else None
        description = declaration.api.description or declaration.description
        fields[declaration.api_name] = (annotation, Field(default, description=description, examples=examples))
    return create_model(name, __base__=base, **fields)


StableDiffusionTxt2ImgAPI = request_model("StableDiffusionTxt2ImgAPI", "txt2img", WebuiTxt2ImgRequest)
StableDiffusionImg2ImgProcessingAPI = request_model(
    "StableDiffusionImg2ImgProcessingAPI", "img2img", WebuiImg2ImgRequest
)


class TextToImageResponse(BaseModel):
    images: list[str] | None = Field(None, description="The generated images, base64 PNG with the infotext.")
    parameters: dict
    info: str = Field(description="JSON: all_seeds, all_subseeds, infotexts, ...")
    attention_maps: list[list[dict[str, str]]] | None = Field(
        None, description="Serena, with attention_maps: per image, each word's {word, map: base64 grey PNG}"
    )
    trajectories: list[str] | None = Field(
        None, description="Serena, with trajectory: per image, its denoising film strip as a base64 PNG"
    )


class ImageToImageResponse(TextToImageResponse):
    pass


class PNGInfoRequest(LaxRequest):
    image: str = Field(description="a base64 image (data URL allowed)")


class PNGInfoResponse(BaseModel):
    info: str = Field(description="the infotext, empty when the image has none")
    items: dict = Field(description="the image's other text chunks")
    parameters: dict = Field(description="the infotext parsed like the webui's parser")


class ProgressResponse(BaseModel):
    progress: float
    eta_relative: float
    state: dict
    current_image: str | None = None
    textinfo: str | None = None


class PromptStyleRequest(LaxRequest):
    name: str = Field(min_length=1)
    prompt: str = ""
    negative_prompt: str = ""


class TaskProgressRequest(LaxRequest):
    id_task: str = Field(description="the force_task_id the job was sent with")
    id_live_preview: int = Field(-1, description="the preview the client has; the same one is not sent again")
    live_preview: bool = True


class TaskProgressResponse(BaseModel):
    """The webui's /internal/progress answer, with the task's place in the queue while it waits."""

    active: bool
    queued: bool
    completed: bool
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = Field(None, description="a data URL")
    id_live_preview: int | None = None
    textinfo: str | None = None
    queue_position: int | None = Field(None, description="1: next to run (while queued)")


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, str]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float = -1
    need_inner_model: bool = False


class LoraItem(BaseModel):
    name: str
    alias: str
    path: str
    metadata: dict


class EmbeddingItem(BaseModel):
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None
    shape: int
    vectors: int


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem]
    skipped: dict[str, EmbeddingItem]


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None
    architecture: str | None = Field(None, description="Serena's: sd1, sd2, sd (another size), sdxl, sdxl-refiner")


class ErrorResponse(BaseModel):
    """Every error the API answers, whatever its status."""

    error: str = Field(description="the kind of error, e.g. 'invalid parameter', 'limit exceeded'")
    field: str | None = Field(description="the request field at fault, 'init_images[0]' style; null for the body")
    detail: Any = Field(description="one line saying what is wrong and what is allowed (422: pydantic's errors)")


# The statuses every endpoint may answer besides its success (documented in /openapi.json, so clients and schema
# fuzzers know them): see modules.api.app.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in [
        (400, "a value the engine or the server's limits refuse"),
        (401, "missing or wrong credentials (when auth is on)"),
        (413, "a request body over the server's limit"),
        (422, "a malformed request"),
        (500, "the generation failed; the server keeps serving"),
        (503, "the queue is full"),
    ]
}
