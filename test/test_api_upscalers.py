"""The webui's upscaling endpoints and listings, and hires/inpainting fields on the generation endpoints."""

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from modules import images, upscalers
from modules.api import create_app


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(outdir="out"))


def b64(image: Image.Image) -> str:
    return base64.b64encode(images.png_bytes(image, None)).decode()


def decoded(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def checker(size=8) -> Image.Image:
    pixels = (np.indices((size, size)).sum(axis=0) % 2 * 255).astype(np.uint8)
    return Image.fromarray(pixels).convert("RGB")


def test_upscalers_and_latent_modes_are_listed_in_the_webuis_shapes(client):
    listed = client.get("/sdapi/v1/upscalers").json()
    assert [item["name"] for item in listed[:3]] == ["None", "Lanczos", "Nearest"]
    assert set(listed[0]) == {"name", "model_name", "model_path", "model_url", "scale"}
    modes = client.get("/sdapi/v1/latent-upscale-modes").json()
    assert [item["name"] for item in modes] == list(upscalers.LATENT_MODES)


def test_extra_single_image_scales_by_a_factor_with_the_chosen_upscaler(client):
    response = client.post(
        "/sdapi/v1/extra-single-image", json={"image": b64(checker()), "upscaling_resize": 2, "upscaler_1": "Nearest"}
    )
    assert response.status_code == 200, response.text
    result = np.array(decoded(response.json()["image"]))
    assert result.shape == (16, 16, 3)
    assert (result[::2, ::2] == np.array(checker())).all()  # nearest: each pixel became a 2x2 block


def test_extra_batch_images_scales_to_a_size_and_crops(client):
    request = {
        "imageList": [{"data": b64(checker()), "name": "a.png"}, {"data": b64(checker(4)), "name": "b.png"}],
        "resize_mode": 1,
        "upscaling_resize_w": 24,
        "upscaling_resize_h": 16,
        "upscaler_1": "Lanczos",
    }
    response = client.post("/sdapi/v1/extra-batch-images", json=request)
    assert response.status_code == 200, response.text
    assert [decoded(text).size for text in response.json()["images"]] == [(24, 16), (24, 16)]


@pytest.mark.parametrize(
    "request_body, field",
    [
        ({"upscaler_1": "ESRGAN_4x"}, "upscaler_1"),
        ({"gfpgan_visibility": 0.5}, "gfpgan_visibility"),
        ({"image": "not base64!"}, "image"),
    ],
)
def test_bad_extras_requests_name_the_field(client, request_body, field):
    response = client.post("/sdapi/v1/extra-single-image", json={"image": b64(checker())} | request_body)
    assert response.status_code == 400 and response.json()["field"] == field, response.text


def test_generation_endpoints_refuse_bad_hires_and_mask_values_naming_the_field(client):
    response = client.post("/sdapi/v1/txt2img", json={"enable_hr": True, "hr_upscaler": "Bicubic"})
    assert response.status_code == 400 and response.json()["field"] == "hr_upscaler"
    assert "valid: Latent, Latent (antialiased)" in response.json()["detail"]
    response = client.post("/sdapi/v1/txt2img", json={"enable_hr": True, "hr_scale": 0.0})
    assert response.status_code == 400 and response.json()["field"] == "hr_scale"
    init = b64(Image.new("RGB", (32, 32)))
    response = client.post("/sdapi/v1/img2img", json={"init_images": [init], "mask": "bm90IGFuIGltYWdl"})
    assert response.status_code == 400 and response.json()["field"] == "mask"


def test_extras_read_requests_as_txt2img_does(client):
    """SD.Next's cli/api-upscale.py sends the webui's save_images/send_images and numbers as strings."""
    request = {"image": b64(checker()), "upscaling_resize": "2", "upscaler_1": "Nearest", "save_images": False}
    response = client.post("/sdapi/v1/extra-single-image", json=request | {"send_images": True, "resize_mode": "0"})
    assert response.status_code == 200, response.text
    assert decoded(response.json()["image"]).size == (16, 16)
    assert response.headers["X-Serena-Ignored-Fields"] == "save_images, send_images"
    batch = {"imageList": [{"data": b64(checker()), "name": "a.png", "size": 123}], "upscaling_resize": "3"}
    response = client.post("/sdapi/v1/extra-batch-images", json=batch | {"save_images": "true"})
    assert response.status_code == 200, response.text
    assert [decoded(text).size for text in response.json()["images"]] == [(24, 24)]
    assert response.headers["X-Serena-Ignored-Fields"] == "save_images, size"
    response = client.post("/sdapi/v1/extra-single-image", json=request | {"upscaling_resize": "twice"})
    assert response.status_code == 422 and response.json()["field"] == "upscaling_resize", response.text


def test_face_restorers_are_listed_as_none_installed(client):
    response = client.get("/sdapi/v1/face-restorers")
    assert response.status_code == 200 and response.json() == []
