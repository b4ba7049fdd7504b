"""Control-image preprocessors that need no downloaded weights, and how a unit's image becomes its control image.

The operators are OpenCV's, as the webui's ControlNet extension runs them (cv2.Canny with the same two thresholds
gives the same edges); Serena adds "seg_flat", a colour segmentation of flat-coloured images (each region of one
colour gets a colour of its own), which needs no segmentation model because such images need none. Each takes and
returns an RGB uint8 array. The preprocessors' parameters and defaults: modules.control_units.PREPROCESSORS.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from modules import resize_modes
from modules.control_units import PREPROCESSORS, RESIZE_MODES, ControlNetUnit


def canny(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    return cv2.Canny(pixels, int(low), int(high))


def invert(pixels: np.ndarray, *_) -> np.ndarray:
    """White lines on black from black lines on white (the extension's "invert (from white bg & black line)")."""
    return 255 - pixels


def threshold(pixels: np.ndarray, level: float, *_) -> np.ndarray:
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return np.where(grey > level, 255, 0).astype(np.uint8)


def scribble_xdog(pixels: np.ndarray, level: float, *_) -> np.ndarray:
    """Difference of Gaussians (sigma 0.5 and 5.0), thresholded: a scribble of the image's edges, as the extension."""
    image = pixels.astype(np.float32)
    difference = cv2.GaussianBlur(image, (0, 0), 0.5) - cv2.GaussianBlur(image, (0, 0), 5.0)
    return np.where(np.min(difference, axis=2) < -level, 255, 0).astype(np.uint8)


def blur_gaussian(pixels: np.ndarray, sigma: float, *_) -> np.ndarray:
    return cv2.GaussianBlur(pixels, (0, 0), float(sigma))


def tile_resample(pixels: np.ndarray, rate: float, *_) -> np.ndarray:
    """Down-sampled by `rate` (the tile model's input: fewer details); 1 keeps the image."""
    if rate <= 1:
        return pixels
    height, width = pixels.shape[:2]
    return cv2.resize(pixels, (int(width / rate), int(height / rate)), interpolation=cv2.INTER_AREA)


def seg_flat(pixels: np.ndarray, tolerance: float, *_) -> np.ndarray:
    """Each region of one colour (within `tolerance`, RGB distance) filled with a colour of its own; the regions
    are numbered by their colour's first appearance in reading order, so the same image gives the same map."""
    flat = pixels.reshape(-1, 3).astype(np.int32)
    quantised = (flat // max(int(tolerance), 1)).astype(np.int64)
    keys = (quantised[:, 0] << 32) | (quantised[:, 1] << 16) | quantised[:, 2]
    _, first, labels = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # regions numbered by first appearance
    palette = region_palette(len(first))
    return palette[order[labels]].reshape(pixels.shape).astype(np.uint8)


def region_palette(count: int) -> np.ndarray:
    """`count` well separated colours (golden-ratio hues at full saturation), the same for every image."""
    hues = (np.arange(count) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 255, np.uint8), np.full(count, 255, np.uint8)], axis=1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


OPERATORS = {
    "canny": canny,
    "invert": invert,
    "threshold": threshold,
    "scribble_xdog": scribble_xdog,
    "blur_gaussian": blur_gaussian,
    "tile_resample": tile_resample,
    "seg_flat": seg_flat,
}
assert set(OPERATORS) | {"none"} == {name for name, p in PREPROCESSORS.items() if p.needs is None}


def detect(module: str, image: Image.Image, resolution: int, threshold_a: float, threshold_b: float) -> Image.Image:
    """The preprocessor's map of `image` (resized so its short side is `resolution` first, where the preprocessor
    has one, as the extension does); "none" returns the image."""
    pixels = np.asarray(image.convert("RGB"))
    if module == "none":
        return Image.fromarray(pixels)
    if PREPROCESSORS[module].resolution is not None:
        pixels = resize_short_side(pixels, resolution)
    detected = OPERATORS[module](pixels, threshold_a, threshold_b)
    if detected.ndim == 2:
        detected = np.stack([detected] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(detected))


def resize_short_side(pixels: np.ndarray, side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = side / min(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return pixels
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def pixel_perfect_resolution(image: Image.Image, width: int, height: int, resize_mode: str) -> int:
    """The preprocessor resolution at which the map needs no rescaling to fill the generation's size in this resize
    mode (the extension's "pixel perfect")."""
    scale_h, scale_w = height / image.height, width / image.width
    fit = min if resize_mode == "Resize and Fill" else max
    return int(np.round(fit(scale_h, scale_w) * min(image.height, image.width)))


def control_image(unit: ControlNetUnit, width: int, height: int) -> Image.Image:
    """The unit's control image at the generation's size: its image through its preprocessor, fitted by its resize
    mode (the webui's resize modes, modules.resize_modes: "Just Resize" 0, "Crop and Resize" 1, "Resize and Fill"
    2)."""
    unit = unit.resolved()
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(unit.image, width, height, unit.resize_mode)
    detected = detect(unit.module, unit.image, int(resolution), unit.threshold_a, unit.threshold_b)
    return resize_modes.resize_image(RESIZE_MODES.index(unit.resize_mode), detected, width, height)
