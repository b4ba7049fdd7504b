"""Seeded procedural scenes: 1-4 shapes on a plain background, 64x64, with captions in GenEval's templates.

A scene is drawn for one of GenEval's six categories (its structure: how many objects, of which shapes, in which
relation), with every attribute known (shape, palette colour, size, place; the background colour differs from every
object's). Its caption then names what the category needs and, for training, a random part of the rest, so the model
learns both "a photo of a circle" (any colour, any size) and "a small red circle to the left of a large blue square on
a white background". The benchmark's prompts are drawn by the same code (``benchmark_caption``) from their own seed.
Objects never overlap (a gap of GAP pixels between boxes), stay MARGIN pixels from the edge, and a relation, when the
scene has one, holds by the scorer's rule.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from modules.default_model.scoring import PALETTE, SHAPES
from modules.scenes_model import scoring
from modules.scenes_model.scoring import LARGE_SIZE_RANGE, RELATIONS, SMALL_SIZE_RANGE, Phrase, SceneCaption
from training.default_model.dataset import draw_shape

IMAGE_SIZE = 64
MARGIN = 2
GAP = 3
SUPERSAMPLING = 4
COLOURS = tuple(PALETTE)
# Share of training scenes per category (position and binding are the hard ones, so they get more).
TRAINING_MIX = {
    "single_object": 0.12,
    "colors": 0.12,
    "two_object": 0.14,
    "counting": 0.18,
    "position": 0.22,
    "color_attr": 0.22,
}
# In training captions, each attribute a category does not need is named with this probability.
OPTIONAL_ATTRIBUTE = 0.5


@dataclass(frozen=True)
class DrawnObject:
    shape: str
    colour: str
    size: str
    extent: float
    left: float
    top: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.extent / 2, self.top + self.extent / 2)


@dataclass(frozen=True)
class Scene:
    category: str
    objects: tuple[DrawnObject, ...]
    background: str
    relation: str | None = None  # objects[0] relation objects[1]


def _extent(rng: np.random.Generator, size: str) -> float:
    low, high = SMALL_SIZE_RANGE if size == "small" else LARGE_SIZE_RANGE
    return float(rng.uniform(low, high))


def _separate(box: tuple[float, float, float], others: list[tuple[float, float, float]]) -> bool:
    left, top, extent = box
    for other_left, other_top, other_extent in others:
        apart_x = left + extent + GAP <= other_left or other_left + other_extent + GAP <= left
        apart_y = top + extent + GAP <= other_top or other_top + other_extent + GAP <= top
        if not (apart_x or apart_y):
            return False
    return True


def _place(
    rng: np.random.Generator, extents: list[float], relation: str | None, tries: int = 200
) -> list[tuple[float, float]] | None:
    for _ in range(tries):
        boxes: list[tuple[float, float, float]] = []
        for extent in extents:
            left, top = rng.uniform(MARGIN, IMAGE_SIZE - MARGIN - extent, size=2)
            boxes.append((float(left), float(top), extent))
        if not all(_separate(box, boxes[:i]) for i, box in enumerate(boxes)):
            continue
        if relation is not None:
            if not _clearly(relation, boxes[0], boxes[1]):
                continue
        return [(left, top) for left, top, _ in boxes]
    return None


def _clearly(relation: str, first: tuple[float, float, float], second: tuple[float, float, float]) -> bool:
    """The relation holds with room to spare, so a pixel of rounding in the scorer cannot flip it."""
    dx = (second[0] + second[2] / 2) - (first[0] + first[2] / 2)
    dy = (second[1] + second[2] / 2) - (first[1] + first[2] / 2)
    if relation in ("right of", "below"):
        dx, dy = -dx, -dy
    if relation in ("above", "below"):
        dx, dy = dy, dx
    return dx >= scoring.POSITION_MARGIN + 2 and abs(dy) < 0.75 * dx


def random_scene(rng: np.random.Generator, category: str) -> Scene:
    """A scene with the structure of ``category``; every attribute drawn at random."""
    while True:
        shapes: list[str]
        relation = None
        if category in ("single_object", "colors"):
            shapes = [SHAPES[rng.integers(3)]]
        elif category == "counting":
            shapes = [SHAPES[rng.integers(3)]] * int(rng.integers(2, 5))
        else:
            first, second = rng.choice(3, size=2, replace=bool(rng.random() < 0.25))
            shapes = [SHAPES[first], SHAPES[second]]
            if category == "position":
                relation = RELATIONS[rng.integers(4)]
        count = len(shapes)
        # Room for four objects: at most one large one in scenes of four, two in scenes of three.
        max_large = {1: 1, 2: 2, 3: 2, 4: 1}[count]
        sizes = ["large" if rng.random() < 0.5 else "small" for _ in shapes]
        while sizes.count("large") > max_large:
            sizes[sizes.index("large")] = "small"
        extents = [_extent(rng, size) for size in sizes]
        places = _place(rng, extents, relation)
        if places is None:
            continue
        if category == "counting" and rng.random() < 0.5:
            colours = [COLOURS[rng.integers(len(COLOURS))]] * count
        else:
            distinct = category in ("color_attr", "position") or rng.random() < 0.5
            colours = [COLOURS[i] for i in rng.choice(len(COLOURS), size=count, replace=not distinct)]
        background_choices = [c for c in COLOURS if c not in colours]
        background = background_choices[rng.integers(len(background_choices))]
        objects = tuple(
            DrawnObject(shape, colour, size, extent, left, top)
            for shape, colour, size, extent, (left, top) in zip(shapes, colours, sizes, extents, places)
        )
        return Scene(category, objects, background, relation)


def _phrase(objects: list[DrawnObject], counted: bool, colour: bool, size: bool) -> Phrase:
    first = objects[0]
    same_colour = all(obj.colour == first.colour for obj in objects)
    same_size = all(obj.size == first.size for obj in objects)
    return Phrase(
        first.shape,
        len(objects),
        first.colour if colour and same_colour else None,
        first.size if size and same_size else None,
        counted=counted,
    )


def caption_for(scene: Scene, rng: np.random.Generator | None = None) -> SceneCaption:
    """The caption of a scene: what its category needs, plus (with ``rng``) a random part of the rest. Without
    ``rng``, GenEval's form for the category (no size, no background; "a photo of ...")."""

    def optional() -> bool:
        return rng is not None and bool(rng.random() < OPTIONAL_ATTRIBUTE)

    category, objects = scene.category, list(scene.objects)
    if category == "counting":
        phrases = [_phrase(objects, counted=True, colour=optional(), size=optional())]
    else:
        needs_colour = category in ("colors", "color_attr")
        with_colour = needs_colour or optional()
        with_size = optional()
        phrases = [_phrase([obj], counted=False, colour=with_colour, size=with_size) for obj in objects]
        if category != "position" and rng is not None and rng.random() < 0.5:
            phrases.reverse()
        if len(phrases) == 2 and phrases[0] == phrases[1] and category != "position":
            # "a circle and a circle" reads as "two circles"
            phrases = [_phrase(objects, counted=True, colour=with_colour, size=with_size)]
    photo = rng is None or bool(rng.random() < 0.5)
    return SceneCaption(tuple(phrases), scene.relation, scene.background if optional() else None, photo)


def benchmark_caption(scene: Scene, rng: np.random.Generator) -> SceneCaption:
    """A benchmark prompt: GenEval's form for the category ("a photo of ..."), varied by a background (half of the
    prompts) and, for single and two objects, sizes, so that the suite's prompts differ from each other."""
    sized = scene.category in ("single_object", "two_object")
    phrases = tuple(
        _phrase(
            [obj], counted=False, colour=scene.category in ("colors", "color_attr"), size=sized and rng.random() < 0.3
        )
        for obj in scene.objects
    )
    if scene.category == "counting":
        phrases = (_phrase(list(scene.objects), counted=True, colour=False, size=False),)
    background = scene.background if rng.random() < 0.5 else None
    return SceneCaption(phrases, scene.relation, background, photo=True)


def render(scene: Scene) -> Image.Image:
    """Draw at SUPERSAMPLING x resolution and box-filter down, which anti-aliases the edges."""
    scale = SUPERSAMPLING
    canvas = Image.new("RGB", (IMAGE_SIZE * scale, IMAGE_SIZE * scale), PALETTE[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        draw_shape(draw, obj.shape, obj.colour, scene.background, obj.left, obj.top, obj.extent, scale)
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def random_category(rng: np.random.Generator) -> str:
    names = list(TRAINING_MIX)
    return names[int(rng.choice(len(names), p=list(TRAINING_MIX.values())))]


def batch(rng: np.random.Generator, count: int) -> tuple[np.ndarray, list[str]]:
    """``count`` training scenes as a float32 NCHW array in [-1, 1] (the VAE's input range) and their captions."""
    scenes = [random_scene(rng, random_category(rng)) for _ in range(count)]
    pixels = np.stack([np.asarray(render(scene)) for scene in scenes])
    captions = [caption_for(scene, rng).text() for scene in scenes]
    return (pixels.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2), captions
