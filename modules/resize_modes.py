"""The webui's resize modes: how an init image (or a mask) is fitted to the output size. Pure PIL.

0 Just resize: stretch to the size. 1 Crop and resize: scale to cover the size, keep the centre. 2 Resize and fill:
scale to fit inside the size, centre, and fill each empty border by stretching the image's edge row (or column) of
pixels across it. 3 Just resize (latent upscale): as 0 for pixels; the engine resizes latents instead.
The integer arithmetic (sizes, offsets) is the webui's, so the same input gives the same pixels.
"""

from __future__ import annotations

from PIL import Image


def resize_image(resize_mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    if resize_mode in (0, 3):
        return image.resize((width, height), Image.LANCZOS)
    ratio, source_ratio = width / height, image.width / image.height
    if resize_mode == 1:  # cover
        scaled_w = width if ratio > source_ratio else image.width * height // image.height
        scaled_h = height if ratio <= source_ratio else image.height * width // image.width
    else:  # fit inside
        scaled_w = width if ratio < source_ratio else image.width * height // image.height
        scaled_h = height if ratio >= source_ratio else image.height * width // image.width
    resized = image.resize((max(1, scaled_w), max(1, scaled_h)), Image.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, (width // 2 - scaled_w // 2, height // 2 - scaled_h // 2))
    if resize_mode == 2:
        fill_borders(canvas, resized, ratio, source_ratio)
    return canvas


def fill_borders(canvas: Image.Image, resized: Image.Image, ratio: float, source_ratio: float) -> None:
    """Stretch the resized image's first and last row (wide images) or column (tall ones) over the empty borders."""
    width, height = canvas.size
    if ratio < source_ratio:  # bands above and below
        band = height // 2 - resized.height // 2
        if band > 0:
            top = resized.resize((width, band), box=(0, 0, width, 0))
            bottom = resized.resize((width, band), box=(0, resized.height, width, resized.height))
            canvas.paste(top, (0, 0))
            canvas.paste(bottom, (0, band + resized.height))
    elif ratio > source_ratio:  # bands left and right
        band = width // 2 - resized.width // 2
        if band > 0:
            left = resized.resize((band, height), box=(0, 0, 0, height))
            right = resized.resize((band, height), box=(resized.width, 0, resized.width, height))
            canvas.paste(left, (0, 0))
            canvas.paste(right, (band + resized.width, 0))
