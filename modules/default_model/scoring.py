"""Automatic scoring of "one shape on a plain background" images against their caption: the default model's
prompt-adherence metric.

Ships with the model (training's evaluation and the dataset's palette use it from here; serena_kit's sweep analytics
score cells with it). Pure functions over a PIL image or an HxWx3 uint8/float array (0-255). The background colour
is the nearest palette colour to the median of the border pixels; the shape is the largest connected region that
differs from the background; its kind comes from the fill ratio of its bounding box (square 1, circle pi/4,
triangle 1/2), measured with a soft coverage mask so anti-aliased edges count fractionally.
A region with a hole (background enclosed by it) is a ring, the shape the example LoRA teaches.
"""

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

# The colours the default model was trained to draw (its dataset renders them; the scorer reads them back).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 220, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "orange": (250, 135, 15),
    "purple": (135, 40, 185),
}
SHAPES = ("circle", "square", "triangle")
NETWORK_SHAPES = ("ring",)  # not in the model's training data: the example LoRA teaches it
CRITERIA = ("colour", "background", "shape")

PALETTE_NAMES = tuple(PALETTE)
PALETTE_RGB = np.array([PALETTE[name] for name in PALETTE_NAMES], dtype=np.float64)

# A pixel belongs to the foreground when it is this far (RGB Euclidean, 0-255) from the background colour.
# Palette colours are at least ~85 apart, so half of that separates them while ignoring sampling noise.
FOREGROUND_DISTANCE = 45.0
# Shapes smaller than this many pixels are treated as noise ("no shape found").
MIN_SHAPE_PIXELS = 6
# Fill-ratio boundaries halfway between square (1.0), circle (0.785) and triangle (0.5).
SQUARE_CIRCLE_BOUNDARY = (1.0 + np.pi / 4) / 2
CIRCLE_TRIANGLE_BOUNDARY = (np.pi / 4 + 0.5) / 2
# A region is a ring when the holes it encloses are at least this share of its filled area (a drawn ring's hole is
# 25 %) and at least MIN_SHAPE_PIXELS: single enclosed noise pixels do not count.
RING_HOLE_SHARE = 0.05


@dataclass(frozen=True)
class ShapeScore:
    background: str
    colour: str | None
    shape: str | None
    fill_ratio: float | None


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.float64)[..., :3]


def nearest_palette_colour(rgb: np.ndarray) -> str:
    distances = np.linalg.norm(PALETTE_RGB - np.asarray(rgb, dtype=np.float64), axis=1)
    return PALETTE_NAMES[int(np.argmin(distances))]


def border_median(pixels: np.ndarray) -> np.ndarray:
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    return np.median(border, axis=0)


def largest_foreground_region(pixels: np.ndarray, background_rgb: np.ndarray) -> np.ndarray | None:
    distance = np.linalg.norm(pixels - background_rgb, axis=-1)
    labels, count = ndimage.label(distance > FOREGROUND_DISTANCE, structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = ndimage.sum_labels(np.ones_like(distance), labels, index=np.arange(1, count + 1))
    best = int(np.argmax(sizes))
    if sizes[best] < MIN_SHAPE_PIXELS:
        return None
    return labels == best + 1


def region_colour(pixels: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Median colour of the region's interior, which avoids the blended edge pixels when the region is big enough."""
    interior = ndimage.binary_erosion(region)
    core = interior if interior.sum() >= MIN_SHAPE_PIXELS else region
    return np.median(pixels[core], axis=0)


def fill_ratio(pixels: np.ndarray, region: np.ndarray, shape_rgb: np.ndarray, background_rgb: np.ndarray) -> float:
    """Soft area over soft bounding-box area of the region (grown by one pixel to include its blended edge)."""
    axis = shape_rgb - background_rgb
    coverage = np.clip((pixels - background_rgb) @ axis / max(float(axis @ axis), 1e-6), 0.0, 1.0)
    coverage = np.where(ndimage.binary_dilation(region, structure=np.ones((3, 3))), coverage, 0.0)
    width = coverage.max(axis=0).sum()
    height = coverage.max(axis=1).sum()
    return float(coverage.sum() / max(width * height, 1e-6))


def hole_share(region: np.ndarray) -> float:
    """The share of the region's filled outline that is enclosed background (0 for a solid shape)."""
    filled = ndimage.binary_fill_holes(region)
    holes = int(filled.sum() - region.sum())
    return holes / float(filled.sum()) if holes >= MIN_SHAPE_PIXELS else 0.0


def classify_fill_ratio(ratio: float) -> str:
    if ratio >= SQUARE_CIRCLE_BOUNDARY:
        return "square"
    if ratio >= CIRCLE_TRIANGLE_BOUNDARY:
        return "circle"
    return "triangle"


def score_image(image: Image.Image | np.ndarray) -> ShapeScore:
    pixels = as_rgb_array(image)
    background_rgb = border_median(pixels)
    background = nearest_palette_colour(background_rgb)
    region = largest_foreground_region(pixels, background_rgb)
    if region is None:
        return ShapeScore(background=background, colour=None, shape=None, fill_ratio=None)
    shape_rgb = region_colour(pixels, region)
    ratio = fill_ratio(pixels, region, shape_rgb, background_rgb)
    return ShapeScore(
        background=background,
        colour=nearest_palette_colour(shape_rgb),
        shape="ring" if hole_share(region) >= RING_HOLE_SHARE else classify_fill_ratio(ratio),
        fill_ratio=ratio,
    )


def adherence(score: ShapeScore, shape: str, colour: str, background: str) -> dict[str, bool]:
    """Which parts of the caption the scored image follows."""
    return {
        "colour": score.colour == colour,
        "background": score.background == background,
        "shape": score.shape == shape,
    }


_COLOUR = "|".join(PALETTE)
_SHAPE = "|".join(SHAPES + NETWORK_SHAPES)
CAPTION = re.compile(
    rf"\b(?P<colour>{_COLOUR})\s+(?P<shape>{_SHAPE})\b.*?\b(?P<background>{_COLOUR})\s+background\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Caption:
    shape: str
    colour: str
    background: str


def parse_caption(prompt: str) -> Caption | None:
    """The shape, its colour and the background a prompt asks for ("a red circle on a blue background"); None when
    the prompt does not say all three."""
    match = CAPTION.search(prompt)
    if match is None:
        return None
    return Caption(match["shape"].lower(), match["colour"].lower(), match["background"].lower())


def prompt_adherence(image: Image.Image | np.ndarray, prompt: str) -> dict[str, bool]:
    """Which of colour, background and shape the image follows, plus "all"; ValueError for a prompt that does not
    name a shape, its colour and a background in the dataset's words."""
    caption = parse_caption(prompt)
    if caption is None:
        raise ValueError(
            f"prompt: {prompt!r} does not name a shape, its colour and a background the way the default model's "
            f"captions do (e.g. 'a red circle on a blue background'); colours: {', '.join(PALETTE)}; "
            f"shapes: {', '.join(SHAPES + NETWORK_SHAPES)}"
        )
    matches = adherence(score_image(image), caption.shape, caption.colour, caption.background)
    return matches | {"all": all(matches.values())}
