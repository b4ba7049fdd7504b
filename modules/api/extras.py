"""The webui's upscaling endpoints (its "Extras" tab, without face restoration) and upscaler listings.

POST /sdapi/v1/extra-single-image and /extra-batch-images upscale with the image upscalers of modules.upscalers (and
blend a second one in, as the webui does); GET /sdapi/v1/upscalers and /latent-upscale-modes list what `hr_upscaler`
and these endpoints take. Face restoration is not part of Serena: a nonzero visibility for it is refused (400), and
GET /sdapi/v1/face-restorers lists none.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from PIL import Image
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modules import images, upscalers
from modules.api.lax import report_ignored
from modules.api.models import LaxRequest
from modules.api.requests import ApiError, ApiLimits, decode_image, invalid, over_limit


class ExtrasRequest(LaxRequest):
    """Read like every request body (modules.api.lax): numbers as strings, unknown fields (the webui's save_images,
    send_images, ...) ignored and reported."""

    resize_mode: int = Field(0, description="0: scale by upscaling_resize, 1: scale to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = 0
    codeformer_visibility: float = 0
    codeformer_weight: float = 0
    upscaling_resize: float = 2
    upscaling_resize_w: int = 512
    upscaling_resize_h: int = 512
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = 0
    upscale_first: bool = False


class ExtrasSingleImageRequest(ExtrasRequest):
    image: str = Field(description="a base64 image (data URL allowed)")


class FileData(LaxRequest):
    data: str
    name: str


class ExtrasBatchImagesRequest(ExtrasRequest):
    imageList: list[FileData]  # noqa: N815 (the webui's name)


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


def check_extras(request: ExtrasRequest, limits: ApiLimits) -> None:
    for field in ("gfpgan_visibility", "codeformer_visibility"):
        if getattr(request, field) != 0:
            raise ApiError(400, "not supported", field, f"{field}: face restoration is not part of Serena; send 0")
    image_upscalers = upscalers.image_upscaler_names()
    for field in ("upscaler_1", "upscaler_2"):
        if getattr(request, field) not in image_upscalers:
            valid = ", ".join(image_upscalers)
            raise invalid(field, f"{field}: unknown upscaler {getattr(request, field)!r}; valid: {valid}")
    if request.resize_mode not in (0, 1):
        raise invalid("resize_mode", "resize_mode: allowed 0 (scale by) or 1 (scale to)")
    if not 0 <= request.extras_upscaler_2_visibility <= 1:
        raise invalid("extras_upscaler_2_visibility", "extras_upscaler_2_visibility: allowed 0..1")
    if request.resize_mode == 0 and not 0 < request.upscaling_resize <= 8:
        raise invalid("upscaling_resize", "upscaling_resize: allowed above 0 up to 8")
    for field, limit in (("upscaling_resize_w", limits.max_width), ("upscaling_resize_h", limits.max_height)):
        if request.resize_mode == 1 and not 8 <= getattr(request, field) <= limit * 4:
            raise over_limit(field, f"{field}: allowed 8..{limit * 4} on this server")


def upscale(image: Image.Image, request: ExtrasRequest, limits: ApiLimits) -> Image.Image:
    """The webui's postprocessing upscale: scale by (or to, cropping to the exact size), upscaler 2 blended in."""
    image = image.convert("RGB")
    if request.resize_mode == 0:
        # at least a pixel a side: a small factor on a small image is no error
        width = max(1, int(image.width * request.upscaling_resize))
        height = max(1, int(image.height * request.upscaling_resize))
    else:
        scale = max(request.upscaling_resize_w / image.width, request.upscaling_resize_h / image.height)
        width, height = int(image.width * scale), int(image.height * scale)
    if width * height > limits.max_init_image_pixels * 4 or width < 1 or height < 1:
        raise over_limit("upscaling_resize", f"upscaling_resize: {width}x{height} is over this server's limit")
    upscaled = upscalers.upscale_image(image, width, height, request.upscaler_1)
    if request.upscaler_2 != "None" and request.extras_upscaler_2_visibility > 0:
        second = upscalers.upscale_image(image, width, height, request.upscaler_2)
        upscaled = Image.blend(upscaled, second, request.extras_upscaler_2_visibility)
    if request.resize_mode == 1 and request.upscaling_crop:
        target = (request.upscaling_resize_w, request.upscaling_resize_h)
        cropped = Image.new("RGB", target)
        cropped.paste(upscaled, (target[0] // 2 - upscaled.width // 2, target[1] // 2 - upscaled.height // 2))
        upscaled = cropped
    return upscaled


def encoded(image: Image.Image) -> str:
    import base64

    return base64.b64encode(images.png_bytes(image, None)).decode("ascii")


def extras_router(limits: ApiLimits) -> APIRouter:
    router = APIRouter()

    @router.post("/sdapi/v1/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(request: ExtrasSingleImageRequest, response: Response):
        report_ignored(response, request)
        check_extras(request, limits)
        image = decode_image(request.image, "image", limits)
        result = await run_in_threadpool(upscale, image, request, limits)
        return ExtrasSingleImageResponse(html_info="", image=encoded(result))

    @router.post("/sdapi/v1/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(request: ExtrasBatchImagesRequest, response: Response):
        report_ignored(response, request, *request.imageList)
        check_extras(request, limits)
        if len(request.imageList) > limits.max_images:
            raise over_limit("imageList", f"imageList: over this server's limit of {limits.max_images} images")
        decoded = [decode_image(item.data, f"imageList[{i}].data", limits) for i, item in enumerate(request.imageList)]
        results = [await run_in_threadpool(upscale, image, request, limits) for image in decoded]
        return ExtrasBatchImagesResponse(html_info="", images=[encoded(image) for image in results])

    @router.get("/sdapi/v1/upscalers", response_model=list[UpscalerItem])
    async def upscalers_list():
        return [UpscalerItem(**vars(info)) for info in upscalers.image_upscalers()]

    @router.get("/sdapi/v1/face-restorers", response_model=list[FaceRestorerItem])
    async def face_restorers():
        """None installed (face restoration is not part of Serena): the webui's answer then, an empty list."""
        return []

    @router.get("/sdapi/v1/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    async def latent_upscale_modes():
        return [LatentUpscalerModeItem(name=name) for name in upscalers.LATENT_MODES]

    return router
