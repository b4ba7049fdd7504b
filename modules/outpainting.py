"""Outpainting as the webui's img2img does it: the image on a larger canvas, its edge pixels stretched over the new
border (resize mode 2's fill), and a mask over the border only, so inpainting repaints the border and keeps the
image."""

from __future__ import annotations

from PIL import Image


def canvas_and_mask(
    image: Image.Image, *, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0
) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask): the image at (left, top) on a canvas grown by the given pixels, and an L mask that is white
    over the new border."""
    for name, value in (("left", left), ("right", right), ("top", top), ("bottom", bottom)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}: expected a number of pixels (an integer >= 0), got {value!r}")
    if left + right + top + bottom == 0:
        raise ValueError("left: give at least one side to extend (left, right, top, bottom)")
    image = image.convert("RGB")
    width, height = image.width + left + right, image.height + top + bottom
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (left, top))
    # Stretch the edge rows and columns over the border, as resize-and-fill does.
    if top:
        canvas.paste(image.resize((image.width, top), box=(0, 0, image.width, 0)), (left, 0))
    if bottom:
        edge = image.resize((image.width, bottom), box=(0, image.height, image.width, image.height))
        canvas.paste(edge, (left, top + image.height))
    if left:
        canvas.paste(canvas.resize((left, height), box=(left, 0, left, height)), (0, 0))
    if right:
        edge_x = left + image.width
        canvas.paste(canvas.resize((right, height), box=(edge_x, 0, edge_x, height)), (edge_x, 0))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, top, left + image.width, top + image.height))
    return canvas, mask
