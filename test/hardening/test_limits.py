"""The API's per-request limits, each refused with a clear error before any generation: body size (413), image
pixels (decompression bombs, over PIL's limit and over the server's own), the work budget (batch_size x n_iter x
width x height x steps), prompt length."""

import asyncio
import base64
import struct
import zlib

import httpx
import pytest

from modules.api import ApiLimits, create_app


def png_declaring(width: int, height: int) -> str:
    """A PNG of a few bytes whose header declares width x height pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(data).decode()


LIMITS = ApiLimits(max_prompt_chars=100, max_pixel_steps=2 * 64 * 64 * 10, max_request_bytes=2**20)
INIT = png_declaring(8, 8)


@pytest.fixture(scope="module")
def post():
    app = create_app(outdir="outputs", limits=LIMITS)

    def send(path: str, **kwargs) -> httpx.Response:
        async def call():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=60) as client:
                return await client.post(path, **kwargs)

        return asyncio.run(call())

    return send


@pytest.mark.parametrize(
    "path, body, field, says",
    [
        ("txt2img", {"width": 64, "height": 64, "steps": 10, "batch_size": 3}, "steps", "pixel-steps"),
        ("txt2img", {"width": 64, "height": 64, "steps": 7, "n_iter": 3}, "steps", "pixel-steps"),
        ("txt2img", {"steps": 1}, "steps", "pixel-steps"),  # no size: counted at SD's 512x512
        (  # within the budget without hires (2 x 32 x 32 x 10); the second pass at 64x64 is over it
            "txt2img",
            {"width": 32, "height": 32, "steps": 10, "batch_size": 2, "enable_hr": True, "hr_scale": 2},
            "steps",
            "pixel-steps",
        ),
        ("txt2img", {"prompt": "x" * 101}, "prompt", "100 characters"),
        ("txt2img", {"negative_prompt": ["ok", "y" * 101]}, "negative_prompt", "100 characters"),
        ("png-info", {"image": png_declaring(30_000, 30_000)}, "image", "pixels"),  # over PIL's own
        ("png-info", {"image": png_declaring(4096, 4096)}, "image", "pixels"),  # over the server's
        (
            "img2img",
            {"init_images": [png_declaring(30_000, 30_000)], "width": 8, "height": 8},
            "init_images[0]",
            "pixels",
        ),
    ],
)
def test_requests_over_a_limit_are_refused_naming_the_field(post, path, body, field, says):
    response = post(f"/sdapi/v1/{path}", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["field"] == field and error["detail"].startswith(f"{field}: ") and says in error["detail"], error


def test_a_request_within_the_budget_generates(post):
    body = {"width": 32, "height": 32, "steps": 10, "batch_size": 2, "seed": 4}
    response = post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200 and len(response.json()["images"]) == 2


def test_a_body_over_the_size_limit_is_413(post):
    response = post(
        "/sdapi/v1/txt2img", content=b"{" + b" " * 2**20 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "limit" in response.json()["detail"]
