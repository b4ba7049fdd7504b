"""Reading request bodies the webui's way: its clients send loosely typed JSON, and its (pydantic 1) models took it.

What `loosen` accepts, before the strict models check the result:
- `null` for any field: the field's default;
- numeric strings for numbers ("7", " 2 ", "0.5"; the grammar of modules.api.number_text: no exponents), integral
  floats for integers (3.0), 0/1 and "true"/"false"/"yes"/"no"/"on"/"off" in any case for flags;
- true/false for integer fields that hold codes (resize_mode, inpainting_mask_invert, ...), never for other integers
  (steps, batch_size, seed, sizes, id_live_preview): True steps is a mistake, not 1;
- unknown fields: dropped and reported (the response's X-Serena-Ignored-Fields header, and the log), except a name
  one typing slip away from a field the request lacks ("promt"), which the strict model refuses with 422.

Text where a number belongs, fractional values for integers, NaN and infinities still fail (422 naming the field).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import types
import typing
from typing import Any

from modules import generation_fields
from modules.api import number_text
from modules.field_types import Choice, Flag, OrNone

IGNORED_FIELDS_HEADER = "X-Serena-Ignored-Fields"


def header_value(names: list[str]) -> str:
    """Field names for a header: a name that is not plain printable ASCII (or is empty, has a comma or edge spaces)
    is written as a JSON string (a header is latin-1, and a line break in a client's name must not end the header)."""

    def plain(name: str) -> bool:
        return name.isascii() and name.isprintable() and name == name.strip() and name != "" and "," not in name

    return ", ".join(name if plain(name) else json.dumps(name) for name in names)


log = logging.getLogger("serena.api")


def report_ignored(response, *requests) -> None:
    """Name the unknown fields the requests (a body and the objects nested in it) dropped in the response's header."""
    ignored = [name for request in requests for name in request.ignored_fields]
    if ignored:
        response.headers[IGNORED_FIELDS_HEADER] = header_value(ignored)


def scalar_type(annotation) -> type | None:
    """int, float, bool or str when the annotation is one of them (or it or None); None for anything else."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return scalar_type(members[0]) if len(members) == 1 else None
    return annotation if annotation in (int, float, bool, str) else None


@functools.cache
def code_fields() -> frozenset[str]:
    """Names (field, API and option names) of the generation fields whose integers are codes (Choice kinds, such
    as resize_mode): only these take true/false for 1/0."""
    names = set()
    for declaration in generation_fields.FIELDS:
        kind = declaration.kind.kind if isinstance(declaration.kind, OrNone) else declaration.kind
        if isinstance(kind, (Choice, Flag)):
            names |= {declaration.name, declaration.api_name} | (
                {declaration.option.name} if declaration.option else set()
            )
    return frozenset(names)


def as_integer(value, bool_allowed: bool):
    if isinstance(value, bool):
        return int(value) if bool_allowed else value
    if isinstance(value, str):
        number = number_text.read_integer(value)
        return value if number is None else number
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def as_float(value):
    if isinstance(value, str):
        number = number_text.read_number(value)
        return value if number is None else number
    return value


def as_flag(value):
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and (flag := number_text.read_flag(value)) is not None:
        return flag
    return value


def loosen_value(name: str, annotation, value) -> Any:
    target = scalar_type(annotation)
    if target is int:
        return as_integer(value, bool_allowed=name in code_fields())
    if target is float and not isinstance(value, bool):
        return as_float(value)
    if target is bool:
        return as_flag(value)
    return value


def one_slip_apart(a: str, b: str) -> bool:
    """One character inserted, dropped, changed, or two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) == 1 or (
            len(differ) == 2
            and differ[1] == differ[0] + 1
            and a[differ[0]] == b[differ[1]]
            and a[differ[1]] == b[differ[0]]
        )
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def misspelled(name: str, known, given) -> str | None:
    """The field `name` looks like a slip for, when the request lacks that field."""
    if len(name) < 4:
        return None
    return next((field for field in known if field not in given and one_slip_apart(name, field)), None)


def loosen(fields: dict, data: dict) -> tuple[dict, list[str]]:
    """`data` with the webui's loose values read as the fields' types, and the unknown field names dropped.

    fields: the model's fields ({name: pydantic FieldInfo}). Returns (loosened data, ignored names)."""
    loosened, ignored = {}, []
    for name, value in data.items():
        field = fields.get(name)
        if field is None:
            if misspelled(name, fields, data):
                loosened[name] = value  # the strict model refuses it, naming it
            else:
                ignored.append(name)
            continue
        if value is not None:
            loosened[name] = loosen_value(name, field.annotation, value)
    if ignored:
        log.info("ignored unknown request fields: %s", ", ".join(ignored))
    return loosened, ignored
