"""Schemathesis hooks for fuzzing Serena's API (SCHEMATHESIS_HOOKS=fuzz_hooks): the `base64-image` string format of
its schema (modules.api.schema) drawn as real small images, so schema-valid requests carry images the server reads."""

import base64
import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


def encoded(width: int, height: int, colour: tuple[int, int, int], image_format: str, data_url: bool) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=image_format)
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{image_format.lower()};base64,{text}" if data_url else text


IMAGES = st.builds(
    encoded,
    st.integers(1, 24),
    st.integers(1, 24),
    st.tuples(*[st.integers(0, 255)] * 3),
    st.sampled_from(FORMATS),
    st.booleans(),
)
schemathesis.openapi.format("base64-image", IMAGES)
