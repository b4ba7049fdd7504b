"""Seeded procedural dataset: one filled shape on a plain background, with its caption.

Colours come from a fixed, well separated RGB palette so that generated images can be scored by nearest palette
colour (see ``scoring.py``). Shapes are axis-aligned, so the fill ratio of their bounding box identifies them:
square 1, circle pi/4, triangle 1/2.

The default model never saw a ring (``NEW_SHAPES``): rings exist for the example LoRA (``training.networks``), which
teaches it that shape. A ring is the one shape with a hole, which is how the scorer recognises it.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from modules.default_model import scoring
from modules.default_model.scoring import PALETTE
from training.default_model.vocabulary import COLOUR_WORDS, SHAPE_WORDS

assert tuple(PALETTE) == COLOUR_WORDS
SHAPES = SHAPE_WORDS
assert SHAPES == scoring.SHAPES
# Shapes outside the default model's training data, taught by the example LoRA.
NEW_SHAPES = scoring.NETWORK_SHAPES
# A ring's hole is this share of its outer diameter; rings start at RING_MIN_SIZE so the hole (>= 8 px) survives
# the VAE's 4x downsampling (smaller holes close up in its reconstructions).
RING_HOLE = 0.5
RING_MIN_SIZE = 16

IMAGE_SIZE = 32
MIN_SHAPE_SIZE = 12
MAX_SHAPE_SIZE = 24
# Shapes keep this many pixels clear of the image edge so the border always shows the background.
MARGIN = 2
SUPERSAMPLING = 4


@dataclass(frozen=True)
class Sample:
    shape: str
    colour: str
    background: str
    size: float
    left: float
    top: float

    @property
    def caption(self) -> str:
        return caption_for(self.shape, self.colour, self.background)


def caption_for(shape: str, colour: str, background: str) -> str:
    return f"a {colour} {shape} on a {background} background"


def random_sample(rng: np.random.Generator, image_size: int = IMAGE_SIZE, shapes: tuple[str, ...] = SHAPES) -> Sample:
    colour, background = rng.choice(len(COLOUR_WORDS), size=2, replace=False)
    max_size = min(MAX_SHAPE_SIZE, image_size - 2 * MARGIN)
    size = rng.uniform(MIN_SHAPE_SIZE, max_size)
    left, top = rng.uniform(MARGIN, image_size - MARGIN - size, size=2)
    shape = shapes[rng.integers(len(shapes))]
    if shape == "ring" and size < RING_MIN_SIZE:  # grown in place (draws unchanged, so the old shapes' samples are)
        size = RING_MIN_SIZE
        left, top = (min(value, image_size - MARGIN - size) for value in (left, top))
    return Sample(
        shape=shape,
        colour=COLOUR_WORDS[colour],
        background=COLOUR_WORDS[background],
        size=float(size),
        left=float(left),
        top=float(top),
    )


def render(sample: Sample, image_size: int = IMAGE_SIZE) -> Image.Image:
    """Draw at SUPERSAMPLING x resolution and box-filter down, which anti-aliases the edges."""
    scale = SUPERSAMPLING
    canvas = Image.new("RGB", (image_size * scale, image_size * scale), PALETTE[sample.background])
    draw_shape(
        ImageDraw.Draw(canvas),
        sample.shape,
        sample.colour,
        sample.background,
        sample.left,
        sample.top,
        sample.size,
        scale,
    )
    return canvas.resize((image_size, image_size), Image.Resampling.BOX)


def draw_shape(draw, shape: str, colour: str, background: str, left: float, top: float, size: float, scale: int):
    """One axis-aligned shape of side `size` at (left, top), drawn `scale` times larger."""
    x0, y0 = left * scale, top * scale
    x1, y1 = x0 + size * scale, y0 + size * scale
    fill = PALETTE[colour]
    if shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif shape == "ring":
        inset = size * scale * (1 - RING_HOLE) / 2
        draw.ellipse((x0, y0, x1, y1), fill=fill)
        draw.ellipse((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=PALETTE[background])
    elif shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill)


def batch(
    rng: np.random.Generator, count: int, image_size: int = IMAGE_SIZE, shapes: tuple[str, ...] = SHAPES
) -> tuple[np.ndarray, list[Sample]]:
    """``count`` random samples as a float32 NCHW array in [-1, 1] (the VAE's input range) and their metadata."""
    samples = [random_sample(rng, image_size, shapes) for _ in range(count)]
    pixels = np.stack([np.asarray(render(sample, image_size)) for sample in samples])
    return (pixels.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2), samples
