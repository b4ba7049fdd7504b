"""The webui's X/Y/Z plot value syntax: the text a user types for an axis, parsed into that axis's values.

    "1-5"            1, 2, 3, 4, 5              a range, both ends included
    "1-5 (+2)"       1, 3, 5                    a range with a step (negative steps count down)
    "10-30 [5]"      10, 15, 20, 25, 30         a range with a count, evenly spaced
    "3, 7.5, 12"     3.0, 7.5, 12.0             a comma list; any entry may itself be a range
    'red, "dark, blue"'                         quoted entries keep their commas (Prompt S/R)

Integer fields take integer ranges (a count's values truncated to integers, as the webui does), number fields
decimal ones; other fields take comma lists, read by the field's kind: sampler and schedule names, "true"/"false",
a choice by its name or code, "None" (or "default") for a field that may be None. Every value gets the field's own
check, so errors name the axis and the field as the engine would.
"""

from __future__ import annotations

import csv
import io
import re
from itertools import chain

import numpy as np

from modules import generation_fields
from modules.field_types import (
    Choice,
    Flag,
    Integer,
    Number,
    OneOf,
    OrNone,
    PatternText,
    PromptText,
    SamplerName,
    ScheduleType,
    Seed,
    Size,
    SizeOrOff,
    Text,
)
from modules.processing import StableDiffusionProcessing
from modules.sweeps.axes import PROMPT_SR, sweepable_fields

INTEGER = r"[+-]?\s*\d+"
DECIMAL = r"[+-]?\s*\d+(?:\.\d*)?"
INTEGER_RANGE = re.compile(rf"^\s*({INTEGER})\s*-\s*({INTEGER})(?:\s*\(\s*([+-]\d+)\s*\))?\s*$")
INTEGER_COUNT = re.compile(rf"^\s*({INTEGER})\s*-\s*({INTEGER})\s*\[\s*(\d+)\s*\]\s*$")
DECIMAL_RANGE = re.compile(rf"^\s*({DECIMAL})\s*-\s*({DECIMAL})(?:\s*\(\s*([+-]\d+(?:\.\d*)?)\s*\))?\s*$")
DECIMAL_COUNT = re.compile(rf"^\s*({DECIMAL})\s*-\s*({DECIMAL})\s*\[\s*(\d+)\s*\]\s*$")

INTEGER_KINDS = (Integer, Seed, Size, SizeOrOff)
TEXT_KINDS = (PromptText, Text, PatternText, SamplerName, ScheduleType)
TYPABLE_KINDS = (*INTEGER_KINDS, Number, *TEXT_KINDS, Choice, OneOf, Flag)
NONE_WORDS = ("none", "default")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def typable_axes(base: StableDiffusionProcessing) -> dict[str, str]:
    """{axis name: label} of every axis whose values can be typed: Prompt S/R, then each sweepable field of `base`
    (by its short name, as sweep() and the CLI take it) whose values are numbers or text, in declaration order."""
    axes = {PROMPT_SR: "Prompt S/R"}
    for name, field in sweepable_fields(base).items():
        declaration = generation_fields.declaration_of(field)
        if name == declaration.short_name and isinstance(plain_kind(declaration.kind), TYPABLE_KINDS):
            axes[name] = declaration.label
    return axes


def plain_kind(kind):
    return kind.kind if isinstance(kind, OrNone) else kind


def split_entries(text: str) -> list[str]:
    """Comma-separated entries, quotes keeping commas inside an entry, blanks dropped (the webui's csv reading)."""
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return [entry.strip() for entry in chain.from_iterable(rows) if entry.strip()]


def number(text: str) -> str:
    return text.replace(" ", "")


def integer_entry(entry: str) -> list[int]:
    if match := INTEGER_RANGE.match(entry):
        start, end = int(number(match[1])), int(number(match[2]))
        step = int(match[3]) if match[3] else (1 if end >= start else -1)
        if step == 0:
            raise ValueError(f"{entry!r}: a range's step cannot be 0")
        return list(range(start, end + (1 if step > 0 else -1), step))
    if match := INTEGER_COUNT.match(entry):
        start, end, count = int(number(match[1])), int(number(match[2])), int(match[3])
        return [int(value) for value in np.linspace(start, end, count).tolist()]
    try:
        return [int(number(entry))]
    except ValueError:
        raise ValueError(f"{entry!r} is not an integer or a range (1-5, 1-5 (+2), 10-30 [5])") from None


def decimal_entry(entry: str) -> list[float]:
    if match := DECIMAL_RANGE.match(entry):
        start, end = float(number(match[1])), float(number(match[2]))
        step = float(match[3]) if match[3] else (1.0 if end >= start else -1.0)
        if step == 0:
            raise ValueError(f"{entry!r}: a range's step cannot be 0")
        count = int(np.floor((end - start) / step + 1e-9)) + 1
        return [round(start + index * step, 10) for index in range(max(count, 0))]
    if match := DECIMAL_COUNT.match(entry):
        start, end, count = float(number(match[1])), float(number(match[2])), int(match[3])
        return [round(value, 10) for value in np.linspace(start, end, count).tolist()]
    try:
        return [float(number(entry))]
    except ValueError:
        raise ValueError(f"{entry!r} is not a number or a range (1-5, 1-5 (+0.5), 2-12 [6])") from None


def kind_entry(kind, entry: str) -> list:
    if isinstance(kind, OrNone) and entry.lower() in NONE_WORDS:
        return [None]
    kind = plain_kind(kind)
    if isinstance(kind, INTEGER_KINDS):
        return integer_entry(entry)
    if isinstance(kind, Number):
        return decimal_entry(entry)
    if isinstance(kind, Flag):
        if entry.lower() in TRUE_WORDS + FALSE_WORDS:
            return [entry.lower() in TRUE_WORDS]
        raise ValueError(f"{entry!r} is not true or false")
    if isinstance(kind, Choice):
        by_name = {name.lower(): code for code, name in kind.options}
        if entry.lower() in by_name:
            return [by_name[entry.lower()]]
        if entry.isdigit():
            return [int(entry)]
        raise ValueError(f"{entry!r} is not one of {kind.describe()}")
    if isinstance(kind, OneOf):  # any case, as names are typed ("apg"); the field's check names what is allowed
        return [{name.lower(): name for name in kind.names}.get(entry.lower(), entry)]
    return [entry]


def parse_values(name: str, text: str, base: StableDiffusionProcessing) -> list:
    """The values of axis `name` typed as `text`; ValueError naming the field and what went wrong."""
    axes = typable_axes(base)
    if name not in axes:
        raise ValueError(f"{name}: cannot be typed as a sweep axis; valid: {', '.join(axes)}")
    entries = split_entries(text)
    if not entries:
        raise ValueError(f"{name}: no values; type a comma list or a range such as 1-5")
    if name == PROMPT_SR:
        return entries
    declaration = generation_fields.declaration_of(sweepable_fields(base)[name])
    values = []
    for entry in entries:
        try:
            values += kind_entry(declaration.kind, entry)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    if not values:
        raise ValueError(f"{name}: {text!r} gives no values")
    for value in values:
        declaration.check(value, name)
    return values
