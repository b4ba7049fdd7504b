"""The kinds of value a generation field takes. Each kind knows its check, how to read a value from text (a CLI
argument, an infotext value), its JSON type on the API, and how to say what it allows.

Checks raise ValueError (bad value) or TypeError (wrong type) naming the field and what is allowed. No torch here:
the CLI builds its parser from these without loading the engine.
"""

from __future__ import annotations

import numbers
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

MAX_SEED = 2**32 - 1
MAX_SIZE = 4096
SIZE_MULTIPLE = 8


def require_type(field: str, value, expected: type | tuple, description: str) -> None:
    # bool is an int subclass; True is never a valid step count or seed.
    if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
        raise TypeError(f"{field}: expected {description}, got bool {value!r}")
    if not isinstance(value, expected):
        raise TypeError(f"{field}: expected {description}, got {type(value).__name__} {value!r}")


def require_in_range(field: str, value, low, high) -> None:
    if not low <= value <= high:  # also refuses NaN
        raise ValueError(f"{field}: {value} is out of range; allowed {low}..{high}")


def require_size(field: str, value) -> None:
    require_type(field, value, numbers.Integral, "an integer")
    if not SIZE_MULTIPLE <= value <= MAX_SIZE or value % SIZE_MULTIPLE:
        raise ValueError(
            f"{field}: {value} is not allowed; allowed multiples of {SIZE_MULTIPLE} from {SIZE_MULTIPLE} to {MAX_SIZE}"
        )


@contextmanager
def named(field: str):
    """A lookup's ValueError ("sampler_name: unknown ...") as the error of `field` (hr_sampler_name)."""
    try:
        yield
    except ValueError as error:
        raise ValueError(f"{field}: {str(error).split(': ', 1)[-1]}") from None


class Kind:
    """What every kind offers; `json_type` is the API's type, `cli_type` argparse's."""

    json_type: ClassVar[Any] = str
    cli_type: ClassVar[type] = str

    def check(self, field: str, value) -> None:
        raise NotImplementedError

    def parse(self, text: str):
        """A value from its text in an infotext."""
        return self.cli_type(text)

    def from_cli(self, value, option: str):
        """A value from what argparse made of the option (already of `cli_type`)."""
        return value

    def bounds(self) -> tuple:
        """The lowest and highest value, for controls that keep to a range."""
        raise TypeError(f"{type(self).__name__} values have no range")


@dataclass(frozen=True)
class Integer(Kind):
    low: int
    high: int
    json_type: ClassVar[Any] = int
    cli_type: ClassVar[type] = int

    def check(self, field, value):
        require_type(field, value, numbers.Integral, "an integer")
        require_in_range(field, value, self.low, self.high)

    def bounds(self):
        return self.low, self.high


@dataclass(frozen=True)
class Number(Kind):
    low: float
    high: float
    json_type: ClassVar[Any] = float
    cli_type: ClassVar[type] = float

    def check(self, field, value):
        require_type(field, value, numbers.Real, "a number")
        require_in_range(field, value, self.low, self.high)

    def bounds(self):
        return self.low, self.high


@dataclass(frozen=True)
class Seed(Kind):
    json_type: ClassVar[Any] = int
    cli_type: ClassVar[type] = int

    def check(self, field, value):
        require_type(field, value, numbers.Integral, "an integer")
        if not -1 <= value <= MAX_SEED:
            raise ValueError(f"{field}: {value} is out of range; allowed -1 (random) or 0..{MAX_SEED}")


@dataclass(frozen=True)
class Size(Kind):
    json_type: ClassVar[Any] = int
    cli_type: ClassVar[type] = int

    def check(self, field, value):
        require_size(field, value)

    def bounds(self):
        return SIZE_MULTIPLE, MAX_SIZE


@dataclass(frozen=True)
class SizeOrOff(Kind):
    """A size, or -1 / 0 for off (the webui's seed resize)."""

    json_type: ClassVar[Any] = int
    cli_type: ClassVar[type] = int

    def check(self, field, value):
        require_type(field, value, numbers.Integral, "an integer")
        if value > 0:
            require_size(field, value)
        elif value not in (0, -1):
            raise ValueError(f"{field}: {value} is not allowed; allowed -1 or 0 (off) or a size")


@dataclass(frozen=True)
class Text(Kind):
    """Free text; `description` says what it is ("a folder path")."""

    description: str

    def check(self, field, value):
        require_type(field, value, str, self.description)


@dataclass(frozen=True)
class PatternText(Kind):
    """Text in a small language (a regular expression): `description` says what it allows."""

    description: str
    pattern: str

    def check(self, field, value):
        require_type(field, value, str, "a string")
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"{field}: {value!r} is not allowed; allowed {self.description}")


@dataclass(frozen=True)
class PromptText(Kind):
    """A prompt: a string, or (as a per-image field) one string per image."""

    json_type: ClassVar[Any] = str | list[str]

    def check(self, field, value):
        require_type(field, value, str, "a string or a list of strings")


@dataclass(frozen=True)
class SamplerName(Kind):
    def check(self, field, value):
        from modules import sd_samplers

        require_type(field, value, str, "a sampler name")
        with named(field):
            sd_samplers.find_sampler(value)


@dataclass(frozen=True)
class ScheduleType(Kind):
    def check(self, field, value):
        from modules import sd_samplers

        require_type(field, value, str, "a schedule type")
        with named(field):
            sd_samplers.find_schedule_type(value)


@dataclass(frozen=True)
class TextChoice(Kind):
    """One of a few names (lower case; a value is matched case-insensitively)."""

    values: tuple[str, ...]

    def check(self, field, value):
        require_type(field, value, str, "a string")
        if value.lower() not in self.values:
            raise ValueError(f"{field}: {value!r} is not allowed; allowed {self.describe()}")

    def describe(self):
        return ", ".join(self.values)


@dataclass(frozen=True)
class Flag(Kind):
    json_type: ClassVar[Any] = bool
    cli_type: ClassVar[type] = bool

    def check(self, field, value):
        require_type(field, value, bool, "true or false")


@dataclass(frozen=True)
class Names(Kind):
    """A list of names (styles)."""

    description: str
    json_type: ClassVar[Any] = list[str]

    def check(self, field, value):
        require_type(field, value, (list, tuple), self.description)
        for index, item in enumerate(value):
            require_type(f"{field}[{index}]", item, str, "a name")


@dataclass(frozen=True)
class Dictionary(Kind):
    description: str
    json_type: ClassVar[Any] = dict[str, Any]

    def check(self, field, value):
        require_type(field, value, dict, self.description)


@dataclass(frozen=True)
class Choice(Kind):
    """One of a few integer codes, each with its webui name."""

    options: tuple[tuple[int, str], ...]
    json_type: ClassVar[Any] = int
    cli_type: ClassVar[type] = int

    def check(self, field, value):
        require_type(field, value, int, "an integer")
        if value not in dict(self.options):
            raise ValueError(f"{field}: {value} is not allowed; allowed {self.describe()}")

    def describe(self):
        return ", ".join(f"{code} ({name})" for code, name in self.options)


@dataclass(frozen=True)
class OneOf(Kind):
    """One of a few names (the webui's option values)."""

    names: tuple[str, ...]

    def check(self, field, value):
        require_type(field, value, str, "a string")
        if value not in self.names:
            raise ValueError(f"{field}: {value!r} is not allowed; allowed {self.describe()}")

    def describe(self):
        return ", ".join(self.names)


@dataclass(frozen=True)
class Images(Kind):
    """PIL images (on the API: base64 strings; on the CLI: file paths)."""

    json_type: ClassVar[Any] = list[str]

    def check(self, field, value):
        from PIL import Image

        require_type(field, value, (list, tuple), "a list of PIL images")
        if not value:
            raise ValueError(f"{field}: at least one image is required for img2img")
        for index, image in enumerate(value):
            if not isinstance(image, Image.Image):
                raise TypeError(f"{field}[{index}]: expected a PIL image, got {type(image).__name__}")
            if not (1 <= image.width <= MAX_SIZE and 1 <= image.height <= MAX_SIZE):
                raise ValueError(
                    f"{field}[{index}]: {image.width}x{image.height} is out of range; allowed 1..{MAX_SIZE} per side"
                )

    def from_cli(self, value, option):
        from modules import images

        return [images.open_image(path, option) for path in value]


@dataclass(frozen=True)
class OrNone(Kind):
    """`kind`, or None (which means what the field's declaration says, e.g. the model's native size)."""

    kind: Kind

    @property
    def json_type(self):
        return self.kind.json_type | None

    @property
    def cli_type(self):
        return self.kind.cli_type

    def check(self, field, value):
        if value is not None:
            self.kind.check(field, value)

    def parse(self, text):
        return self.kind.parse(text)

    def from_cli(self, value, option):
        return None if value is None else self.kind.from_cli(value, option)

    def bounds(self):
        return self.kind.bounds()


@dataclass(frozen=True)
class Picture(Kind):
    """One PIL image (a mask); on the API a base64 string or data URL, on the CLI a file path."""

    json_type: ClassVar[Any] = str

    def check(self, field, value):
        from PIL import Image

        if not isinstance(value, Image.Image):
            raise TypeError(f"{field}: expected a PIL image, got {type(value).__name__}")
        if not (1 <= value.width <= MAX_SIZE and 1 <= value.height <= MAX_SIZE):
            raise ValueError(f"{field}: {value.width}x{value.height} is out of range; allowed 1..{MAX_SIZE} per side")

    def from_cli(self, value, option):
        from modules import images

        return images.open_image(value, option)


@dataclass(frozen=True)
class ChoiceOrFlag(Choice):
    """A Choice of 0 and 1 that also takes false/true, as webui clients send both (inpainting_mask_invert)."""

    json_type: ClassVar[Any] = int | bool

    def check(self, field, value):
        if not isinstance(value, bool):
            super().check(field, value)


@dataclass(frozen=True)
class UpscalerName(Kind):
    """An upscaler: a latent upscale mode, an image upscaler or a model file (see modules.upscalers)."""

    def check(self, field, value):
        from modules import upscalers

        require_type(field, value, str, "an upscaler name")
        upscalers.check_name(field, value)
