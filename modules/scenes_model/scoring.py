"""Scoring of "several shapes on a plain background" images against their caption: the scenes model's compositional
metric, GenEval's categories answered without a detector.

Pure functions over a PIL image or an HxWx3 array (0-255); no torch. The background is the nearest palette colour to
the median of the border pixels; the objects are the connected regions (4-connected, so shapes a few pixels apart stay
apart) that differ from it; each one's colour, shape (fill ratio of its bounding box, as the default model's scorer),
size (small or large by its bounding box) and centre are read off. A caption is parsed into phrases ("a small red
circle", "two squares"), an optional relation between two of them and an optional background, and every check it
implies is answered:

- objects: every phrase has as many matching objects as it asks for (at least one; at least its number for counting);
- count: a phrase with a number has exactly that many matching objects (GenEval counts exactly);
- colour, size: the matching object has the named colour / size (a phrase matches on every attribute it names, so
  these decide whether a named shape is found);
- position: some object of the first phrase lies in the named direction of some object of the second;
- background: the background is the named colour.

A prompt's category follows GenEval's six tags and is read from its structure (``category``).
"""

import re
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np
from PIL import Image
from scipy import ndimage

from modules.default_model.scoring import (
    PALETTE,
    SHAPES,
    as_rgb_array,
    border_median,
    classify_fill_ratio,
    fill_ratio,
    nearest_palette_colour,
    region_colour,
)

SIZES = ("small", "large")
# Object sizes (bounding-box side, pixels at 64 px) the dataset draws; the scorer splits them halfway.
SMALL_SIZE_RANGE = (9.0, 13.0)
LARGE_SIZE_RANGE = (18.0, 24.0)
SIZE_BOUNDARY = (SMALL_SIZE_RANGE[1] + LARGE_SIZE_RANGE[0]) / 2
COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
MAX_OBJECTS = 4
# "A left of B": B's centre is at least this many pixels to the right of A's, and the horizontal offset exceeds the
# vertical one (so "left of" and "above" never both hold).
POSITION_MARGIN = 4.0
RELATIONS = ("left of", "right of", "above", "below")
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
CHECKS = ("objects", "count", "colour", "size", "position", "background")

# Same separation rule as the default scorer (palette colours are >= ~85 apart).
FOREGROUND_DISTANCE = 45.0
# Regions smaller than this are sampling noise; the smallest drawn object (a 9 px triangle) covers ~40 px.
MIN_OBJECT_PIXELS = 12


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    centre: tuple[float, float]  # (x, y) in pixels
    extent: float  # bounding-box side (the larger of width and height), pixels
    fill_ratio: float


@dataclass(frozen=True)
class SceneScore:
    background: str
    objects: tuple[SceneObject, ...]


@dataclass(frozen=True)
class Phrase:
    """One noun phrase of a caption: how many of which shape, with the colour and size it names (None: any)."""

    shape: str
    count: int = 1
    colour: str | None = None
    size: str | None = None
    counted: bool = False  # the phrase names a number ("two circles"), so the count is checked exactly

    def text(self) -> str:
        words = [
            {1: "a", 2: "two", 3: "three", 4: "four"}[self.count],
            *(word for word in (self.size, self.colour) if word),
            self.shape + ("s" if self.count > 1 else ""),
        ]
        return " ".join(words)

    def matches(self, obj: SceneObject) -> bool:
        return (
            obj.shape == self.shape
            and (self.colour is None or obj.colour == self.colour)
            and (self.size is None or obj.size == self.size)
        )


@dataclass(frozen=True)
class SceneCaption:
    phrases: tuple[Phrase, ...]
    relation: str | None = None  # between phrases[0] and phrases[1]
    background: str | None = None
    photo: bool = field(default=True, compare=False)  # starts with "a photo of" (GenEval's template)

    def text(self) -> str:
        body = f" {relation_words(self.relation)} ".join(p.text() for p in self.phrases) if self.relation else None
        body = body or " and ".join(phrase.text() for phrase in self.phrases)
        if self.background:
            body += f" on a {self.background} background"
        return ("a photo of " if self.photo else "") + body

    @property
    def category(self) -> str:
        """GenEval's tag for a caption of this structure."""
        if self.relation:
            return "position"
        if len(self.phrases) == 1:
            phrase = self.phrases[0]
            if phrase.counted:
                return "counting"
            return "colors" if phrase.colour else "single_object"
        return "color_attr" if all(p.colour for p in self.phrases) else "two_object"


def relation_words(relation: str) -> str:
    return {"left of": "to the left of", "right of": "to the right of"}.get(relation, relation)


def size_word(extent: float) -> str:
    return "small" if extent < SIZE_BOUNDARY else "large"


def find_objects(pixels: np.ndarray, background_rgb: np.ndarray) -> list[np.ndarray]:
    distance = np.linalg.norm(pixels - background_rgb, axis=-1)
    labels, count = ndimage.label(distance > FOREGROUND_DISTANCE)
    if count == 0:
        return []
    sizes = ndimage.sum_labels(np.ones_like(distance), labels, index=np.arange(1, count + 1))
    return [labels == index + 1 for index in range(count) if sizes[index] >= MIN_OBJECT_PIXELS]


def describe_region(pixels: np.ndarray, region: np.ndarray, background_rgb: np.ndarray) -> SceneObject:
    rgb = region_colour(pixels, region)
    ratio = fill_ratio(pixels, region, rgb, background_rgb)
    rows, cols = np.nonzero(region)
    # The region's pixel bounding box includes the half-covered edge pixels: one pixel less is the drawn extent.
    extent = float(max(rows.max() - rows.min(), cols.max() - cols.min()))
    centre = (float(cols.min() + cols.max()) / 2 + 0.5, float(rows.min() + rows.max()) / 2 + 0.5)
    return SceneObject(
        shape=classify_fill_ratio(ratio),
        colour=nearest_palette_colour(rgb),
        size=size_word(extent),
        centre=centre,
        extent=extent,
        fill_ratio=ratio,
    )


def score_scene(image: Image.Image | np.ndarray) -> SceneScore:
    pixels = as_rgb_array(image)
    background_rgb = border_median(pixels)
    objects = tuple(describe_region(pixels, region, background_rgb) for region in find_objects(pixels, background_rgb))
    # Reading order (top to bottom, then left to right) so the result does not depend on label numbering.
    objects = tuple(sorted(objects, key=lambda obj: (round(obj.centre[1]), obj.centre[0])))
    return SceneScore(background=nearest_palette_colour(background_rgb), objects=objects)


def holds(relation: str, first: SceneObject, second: SceneObject) -> bool:
    """Whether ``first`` is ``relation`` ``second`` (image coordinates: y grows downwards)."""
    dx = second.centre[0] - first.centre[0]
    dy = second.centre[1] - first.centre[1]
    if relation in ("right of", "below"):
        dx, dy = -dx, -dy
    if relation in ("left of", "right of"):
        return dx >= POSITION_MARGIN and abs(dy) < dx
    return dy >= POSITION_MARGIN and abs(dx) < dy


# ---- captions ----------------------------------------------------------------------------------------------------

_COLOUR = "|".join(PALETTE)
_SHAPE = "|".join(SHAPES)
_PHRASE = re.compile(
    rf"^(?P<count>a|an|one|two|three|four)\s+(?:(?P<size>small|large)\s+)?(?:(?P<colour>{_COLOUR})\s+)?"
    rf"(?P<shape>{_SHAPE})(?P<plural>s?)$"
)
_RELATION = re.compile(r"\s+(?:to\s+the\s+)?(left\s+of|right\s+of|above|below)\s+")
_BACKGROUND = re.compile(rf"\s+on\s+an?\s+(?P<background>{_COLOUR})\s+background$")


def parse_phrase(text: str) -> Phrase | None:
    match = _PHRASE.match(text.strip())
    if match is None:
        return None
    count = COUNT_WORDS[match["count"]]
    if (count > 1) != bool(match["plural"]):
        return None
    return Phrase(match["shape"], count, match["colour"], match["size"], counted=match["count"] not in ("a", "an"))


def parse_scene_caption(prompt: str) -> SceneCaption | None:
    """The phrases, relation and background a prompt asks for, in the dataset's templates; None for other text."""
    text = " ".join(prompt.lower().replace(",", " ").split()).removesuffix(".")
    photo = text.startswith("a photo of ")
    text = text.removeprefix("a photo of ")
    background = None
    if match := _BACKGROUND.search(text):
        background, text = match["background"], text[: match.start()]
    parts = _RELATION.split(text)
    relation = None
    if len(parts) == 3:
        relation = " ".join(parts[1].split())
        texts = [parts[0], parts[2]]
    elif len(parts) == 1:
        texts = re.split(r"\s+and\s+", text)
    else:
        return None
    phrases = [parse_phrase(part) for part in texts]
    if not phrases or None in phrases or len(phrases) > 2 or sum(p.count for p in phrases) > MAX_OBJECTS:
        return None
    if relation and any(p.count != 1 for p in phrases):
        return None
    return SceneCaption(tuple(phrases), relation, background, photo)


def parse_or_raise(prompt: str) -> SceneCaption:
    caption = parse_scene_caption(prompt)
    if caption is None:
        raise ValueError(
            f"prompt: {prompt!r} is not in the scenes model's caption templates (e.g. 'a photo of two red circles', "
            f"'a red circle to the left of a blue square', 'a small green triangle and a large yellow square on a "
            f"white background'); colours: {', '.join(PALETTE)}; shapes: {', '.join(SHAPES)}; sizes: small, large; "
            f"relations: {', '.join(RELATIONS)}; at most {MAX_OBJECTS} objects"
        )
    return caption


def _assignment_exists(phrases: tuple[Phrase, ...], objects: tuple[SceneObject, ...]) -> bool:
    """Whether distinct objects can be given to every phrase (as many as its count) that each match their phrase."""
    slots = [phrase for phrase in phrases for _ in range(phrase.count)]
    if len(slots) > len(objects):
        return False
    return any(
        all(slot.matches(objects[i]) for slot, i in zip(slots, chosen))
        for chosen in permutations(range(len(objects)), len(slots))
    )


def shape_only(phrase: Phrase) -> Phrase:
    return Phrase(phrase.shape, phrase.count)


def answer(caption: SceneCaption, score: SceneScore) -> dict[str, bool | None]:
    """Each check the caption implies, True or False; None for checks it does not ask for. ``correct``: all hold."""
    phrases, objects = caption.phrases, score.objects
    result: dict[str, bool | None] = dict.fromkeys(CHECKS)
    result["objects"] = _assignment_exists(tuple(shape_only(p) for p in phrases), objects)
    if any(p.counted for p in phrases):
        result["count"] = all(
            sum(phrase.matches(obj) for obj in objects) == phrase.count for phrase in phrases if phrase.counted
        )
    for attribute in ("colour", "size"):
        if any(getattr(p, attribute) for p in phrases):
            kept = tuple(
                Phrase(p.shape, p.count, **{attribute: getattr(p, attribute)})
                if getattr(p, attribute)
                else shape_only(p)
                for p in phrases
            )
            result[attribute] = _assignment_exists(kept, objects)
    if caption.relation:
        first, second = phrases
        result["position"] = any(
            holds(caption.relation, a, b)
            for a in objects
            for b in objects
            if a is not b and first.matches(a) and second.matches(b)
        )
    if caption.background:
        result["background"] = score.background == caption.background
    # Every phrase matched on all it names, together (so binding is checked, not only each attribute alone).
    together = _assignment_exists(phrases, objects)
    result["correct"] = together and all(value is not False for value in result.values())
    return result


def score_prompt(image: Image.Image | np.ndarray, prompt: str) -> dict[str, object]:
    """The caption's category, each check it implies and whether the image is correct; ValueError for a prompt
    outside the scenes model's templates."""
    caption = parse_or_raise(prompt)
    return {"category": caption.category, **answer(caption, score_scene(image))}
