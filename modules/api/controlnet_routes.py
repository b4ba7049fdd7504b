"""The ControlNet extension's own endpoints (sd-webui-controlnet's scripts/api.py), in its response shapes: version,
models, preprocessors ("modules"), control types, settings, and detection (a preprocessor run on images).

Units themselves come with txt2img/img2img as `alwayson_scripts.controlnet.args` (modules.api.requests).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from modules import control_preprocessors, controlnet
from modules.api.extras import encoded
from modules.api.models import LaxRequest
from modules.api.requests import ApiError, ApiLimits, decode_image, invalid
from modules.control_units import (
    CONTROL_TYPES,
    NO_MODEL,
    PREPROCESSORS,
    ControlNetUnit,
    preprocessor_sliders,
)

API_VERSION = 2  # the extension's external_code.get_api_version() at the API Serena follows
UNIT_COUNT = 3  # the extension's default control_net_unit_count; Serena takes any number of units


class DetectRequest(LaxRequest):
    """POST /controlnet/detect's body, the extension's field names (masks and low_vram accepted, unused); read
    laxly as the generation requests are."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(description="base64 images (at least one)")
    controlnet_processor_res: int = -1
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1
    controlnet_masks: list[str] = []
    low_vram: bool = False


def module_detail(name: str) -> dict:
    """A preprocessor as the extension's module_detail shows it: model-free or not, its sliders."""
    preprocessor = PREPROCESSORS[name]
    sliders = [
        {"name": slider.label, "value": slider.value, "min": slider.minimum, "max": slider.maximum}
        for slider in preprocessor_sliders(preprocessor)
        if slider is not None
    ]
    return {"model_free": False, "sliders": sliders, "serena_runs": preprocessor.needs is None}


def models_of_type(control_type: str, titles: list[str]) -> list[str]:
    if control_type == "All":
        return titles
    return [title for title in titles if control_type.lower() in title.lower()]


def controlnet_router(limits: ApiLimits) -> APIRouter:
    router = APIRouter()

    @router.get("/controlnet/version")
    async def version() -> dict:
        return {"version": API_VERSION}

    @router.get("/controlnet/model_list")
    def model_list(update: bool = True) -> dict:  # hashes files: in a worker thread
        return {"model_list": [file.title for file in controlnet.list_controlnets().values()]}

    @router.get("/controlnet/module_list")
    async def module_list(alias_names: bool = False) -> dict:
        details = {name: module_detail(name) for name in PREPROCESSORS}
        return {"module_list": list(PREPROCESSORS), "module_detail": details}

    @router.get("/controlnet/control_types")
    def control_types() -> dict:
        titles = [file.title for file in controlnet.list_controlnets().values()]
        types = {}
        for control_type in CONTROL_TYPES:
            modules = [name for name, p in PREPROCESSORS.items() if control_type in ("All", p.control_type)]
            if control_type != "All":
                modules = ["none", *modules]
            matching = models_of_type(control_type, titles)
            types[control_type] = {
                "module_list": modules,
                "model_list": [NO_MODEL, *matching],
                "default_option": modules[1] if control_type != "All" and len(modules) > 1 else "none",
                "default_model": matching[0] if control_type != "All" and matching else NO_MODEL,
            }
        return {"control_types": types}

    @router.get("/controlnet/settings")
    async def settings() -> dict:
        return {"control_net_unit_count": UNIT_COUNT}

    @router.post("/controlnet/detect")
    async def detect(request: DetectRequest) -> dict:
        controlnet_module, controlnet_input_images = request.controlnet_module, request.controlnet_input_images
        if controlnet_module not in PREPROCESSORS:
            raise ApiError(422, "invalid parameter", "controlnet_module", "Module not available")
        if PREPROCESSORS[controlnet_module].needs is not None:
            needs = PREPROCESSORS[controlnet_module].needs
            detail = f"controlnet_module: {controlnet_module!r} needs {needs}, which Serena does not ship"
            raise ApiError(422, "not supported", "controlnet_module", detail)
        if not controlnet_input_images:
            raise ApiError(422, "invalid parameter", "controlnet_input_images", "No image selected")
        unit = ControlNetUnit(
            module=controlnet_module,
            processor_res=request.controlnet_processor_res,
            threshold_a=request.controlnet_threshold_a,
            threshold_b=request.controlnet_threshold_b,
        ).resolved()

        def run() -> list[str]:
            maps = []
            for index, text in enumerate(controlnet_input_images):
                image = decode_image(text, f"controlnet_input_images[{index}]", limits)
                detected = control_preprocessors.detect(
                    unit.module, image, int(unit.processor_res), unit.threshold_a, unit.threshold_b
                )
                maps.append(encoded(detected))
            return maps

        if len(controlnet_input_images) > limits.max_images:
            detail = f"controlnet_input_images: more than this server's limit of {limits.max_images} images"
            raise invalid("controlnet_input_images", detail)
        return {"info": "Success", "images": await run_in_threadpool(run)}

    return router
