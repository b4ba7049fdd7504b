"""Control images for the default model's example ControlNet (``networks/ControlNet/control_serena_shape_mask``),
and how well an image follows one: a shape's silhouette, white on black, says where the shape goes and how big it
is; the prompt still says its colours and kind. Pure PIL and numpy, like the scorer.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from modules.default_model.scoring import as_rgb_array, border_median, largest_foreground_region

IMAGE_SIZE = 32
SUPERSAMPLING = 4  # drawn larger and box-filtered down, as the training images are


def silhouette(shape: str, left: float, top: float, size: float, image_size: int = IMAGE_SIZE) -> Image.Image:
    """A `size`-pixel `shape` (circle, square, triangle, ring) at (left, top), white on black, anti-aliased."""
    scale = SUPERSAMPLING
    canvas = Image.new("L", (image_size * scale, image_size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    x0, y0 = left * scale, top * scale
    x1, y1 = x0 + size * scale, y0 + size * scale
    if shape in ("circle", "ring"):
        draw.ellipse((x0, y0, x1, y1), fill=255)
        if shape == "ring":  # the dataset's ring: a hole half the diameter
            inset = size * scale / 4
            draw.ellipse((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=0)
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=255)
    elif shape == "triangle":
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=255)
    else:
        raise ValueError(f"shape: unknown shape {shape!r}; allowed circle, square, triangle, ring")
    return canvas.resize((image_size, image_size), Image.Resampling.BOX).convert("RGB")


def shape_mask(image: Image.Image | np.ndarray) -> np.ndarray:
    """The generated shape's pixels (the scorer's largest region that differs from the background): bool HxW,
    all False when it finds none."""
    pixels = as_rgb_array(image)
    region = largest_foreground_region(pixels, border_median(pixels))
    return np.zeros(pixels.shape[:2], bool) if region is None else region


def control_mask(control: Image.Image) -> np.ndarray:
    """A silhouette's pixels: bool HxW (more than half white)."""
    return np.asarray(control.convert("L")) > 127


def iou(first: np.ndarray, second: np.ndarray) -> float:
    union = np.logical_or(first, second).sum()
    return float(np.logical_and(first, second).sum() / union) if union else 0.0


def control_iou(image: Image.Image, control: Image.Image) -> float:
    """IoU of the image's shape with the control silhouette (resized to the image's size)."""
    if control.size != image.size:
        control = control.resize(image.size, Image.Resampling.BILINEAR)
    return iou(shape_mask(image), control_mask(control))
