"""Attention maps in a notebook: a word's map over its image, and every word's map side by side.

    result = sk.txt2img("a red circle on a blue background", seed=1, attention=True)
    sk.attention_grid(result)                         # the image, then each word's map over it
    sk.attention_overlay(result.images[0], result.attention_maps[0].word_map("circle"))

The maps come from the engine (modules.attention_maps: what is aggregated, how, and the options of
`AttentionCapture`); this module only draws them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from modules.grids import CELL_SIZE, labelled_grid, upscale_for_display

# A perceptually ordered dark-to-bright ramp (black, purple, red, orange, yellow), so no plotting library is needed.
RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB (uint8) along RAMP."""
    positions = np.clip(values, 0, 1) * (len(RAMP) - 1)
    low = np.floor(positions).astype(int).clip(0, len(RAMP) - 2)
    fraction = (positions - low)[..., None]
    return (RAMP[low] * (1 - fraction) + RAMP[low + 1] * fraction).round().astype(np.uint8)


def attention_overlay(
    image: Image.Image, word_map: np.ndarray, opacity: float = 0.6, min_side: int | None = CELL_SIZE
) -> Image.Image:
    """`word_map` (values in [0, 1], the image's size) coloured and laid over the image, upscaled for display by a
    whole factor to at least `min_side` pixels (None: the image's own size)."""
    if word_map.shape != (image.height, image.width):
        raise ValueError(f"word_map: shape {word_map.shape} is not the image's {(image.height, image.width)}")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity: {opacity} is not allowed; allowed 0..1")
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    blended = pixels * (1 - opacity) + heat_colours(word_map) * opacity
    overlay = Image.fromarray(blended.round().astype(np.uint8))
    return overlay if min_side is None else upscale_for_display(overlay, min_side)


def attention_grid(result, index: int = 0, steps: range | None = None, cell_size: int = CELL_SIZE) -> Image.Image:
    """Sample `index` of a Processed made with `attention=...`: the image, then each word's map over it (`steps`:
    only those steps' maps, when captured with keep_steps)."""
    if not result.attention_maps:
        raise ValueError("result: it has no attention maps; generate with attention=True")
    maps = result.attention_maps[index]
    image = result.images[result.index_of_first_image + index]
    overlays = [
        attention_overlay(image, maps.word_map(number, steps), min_side=cell_size) for number in range(len(maps.words))
    ]  # every word as it comes, a repeated one too
    cells = [upscale_for_display(image, cell_size), *overlays]
    return labelled_grid(
        [cells], ["image", *(word for word, _ in maps.words)], [], title=maps.prompt, cell_size=cell_size
    )
