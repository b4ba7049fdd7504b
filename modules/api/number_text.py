"""Numbers and flags written as text, as webui clients send them ("7", " 2 ", "0.5", "true"): one grammar for what
the server reads (modules.api.lax) and what its schema says it reads (modules.api.schema), so the two cannot disagree.

The grammar: optional spaces, an optional sign, decimal digits with an optional fraction (no exponent, no "inf" or
"nan", no underscores), optional spaces. An integer field takes an integral value ("3", "3.0", "+003"); a number field
any value. `integer_pattern` and `number_pattern` write regular expressions for the texts whose value lies in a range,
so a schema can say which texts the server's bounds accept. Pure functions.
"""

from __future__ import annotations

import re
from decimal import Decimal

INTEGER_TEXT = re.compile(r"^[ \t\n\r]*(?P<sign>[+-]?)(?P<digits>[0-9]+)(?:\.0*)?[ \t\n\r]*$")
NUMBER_TEXT = re.compile(r"^[ \t\n\r]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[ \t\n\r]*$")
_SPACE = r"[ \t\n\r]*"
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def any_case(word: str) -> str:
    """A regex for `word` in any case."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


FLAG_TEXT = re.compile(f"^{_SPACE}(?:" + "|".join(map(any_case, TRUE_WORDS + FALSE_WORDS)) + f"){_SPACE}$")
FALSE_TEXT = re.compile(f"^{_SPACE}(?:" + "|".join(map(any_case, FALSE_WORDS)) + f"){_SPACE}$")


def read_integer(text: str) -> int | None:
    match = INTEGER_TEXT.match(text)
    if match is None:
        return None
    value = int(match["digits"])
    return -value if match["sign"] == "-" else value


def read_number(text: str) -> float | None:
    return float(text) if NUMBER_TEXT.match(text) else None


def read_flag(text: str) -> bool | None:
    return text.strip(" \t\n\r").lower() in TRUE_WORDS if FLAG_TEXT.match(text) else None


def _same_length(low: str, high: str) -> str:
    """Digit strings of one length from `low` to `high` (no leading-zero handling: both have the same length)."""
    if low == high:
        return low
    if len(low) == 1:
        return f"[{low}-{high}]"
    if low[0] == high[0]:
        return low[0] + "(?:" + _same_length(low[1:], high[1:]) + ")"
    rest = len(low) - 1
    parts = [low[0] + "(?:" + _same_length(low[1:], "9" * rest) + ")"]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}][0-9]{{{rest}}}")
    parts.append(high[0] + "(?:" + _same_length("0" * rest, high[1:]) + ")")
    return "(?:" + "|".join(parts) + ")"


def digits_in_range(low: int, high: int) -> str:
    """A regex for the canonical digits (no leading zeros) of the integers low..high, 0 <= low <= high."""
    parts = []
    for length in range(len(str(low)), len(str(high)) + 1):
        first = max(low, 10 ** (length - 1) if length > 1 else 0)
        last = min(high, 10**length - 1)
        if first <= last:
            parts.append(_same_length(str(first), str(last)))
    return "(?:" + "|".join(parts) + ")"


def _anchored(body: str) -> str:
    return f"^{_SPACE}(?:{body}){_SPACE}$"


def integer_pattern(low: int, high: int) -> str:
    """The texts INTEGER_TEXT reads as an integer in low..high."""
    alternatives = []
    if low <= 0 <= high:
        alternatives.append(r"[+-]?0+")  # zero, with any sign
    if high >= 1:
        alternatives.append(r"\+?0*" + digits_in_range(max(low, 1), high))
    if low <= -1:
        alternatives.append("-0*" + digits_in_range(max(-high, 1), -low))
    return _anchored("(?:" + "|".join(alternatives) + r")(?:\.0*)?")


def values_pattern(values: list[int]) -> str:
    """The texts INTEGER_TEXT reads as one of `values`."""
    alternatives = []
    if positive := [value for value in values if value > 0]:
        alternatives.append(r"\+?0*(?:" + "|".join(str(value) for value in positive) + ")")
    if negative := [-value for value in values if value < 0]:
        alternatives.append("-0*(?:" + "|".join(str(value) for value in negative) + ")")
    if 0 in values:
        alternatives.append(r"[+-]?0+")
    return _anchored("(?:" + "|".join(alternatives) + r")(?:\.0*)?")


def _tenths(value: float) -> tuple[int, int]:
    """A bound as (whole part, tenths digit); bounds of number fields have at most one decimal."""
    exact = Decimal(str(value))
    if exact * 10 != (exact * 10).to_integral_value() or exact < 0:
        raise ValueError(f"number_pattern: {value} needs more than one decimal or is negative")
    whole = int(exact)
    return whole, int((exact - whole) * 10)


def _fraction_at_least(tenth: int) -> str:
    return r"(?:\.[0-9]*)?" if tenth == 0 else rf"\.[{tenth}-9][0-9]*"


def _fraction_at_most(tenth: int) -> str:
    if tenth == 0:
        return r"(?:\.0*)?"
    below = rf"[0-{tenth - 1}][0-9]*|"
    return rf"(?:\.(?:{below}{tenth}0*)?)?"


def _fraction_between(low_tenth: int, high_tenth: int) -> str:
    """Fractions f with low/10 <= f <= high/10, for one whole part."""
    parts = [r"(?:\.0*)?"] if low_tenth == 0 else []  # the whole number itself
    if low_tenth < high_tenth:
        parts.append(rf"\.[{low_tenth}-{high_tenth - 1}][0-9]*")
    if high_tenth > 0:
        parts.append(rf"\.{high_tenth}0*")
    return "(?:" + "|".join(parts) + ")"


def number_pattern(low: float, high: float) -> str:
    """The texts NUMBER_TEXT reads as a number in low..high; bounds with at most one decimal, low >= 0 or a range
    around zero (-1..1: the magnitudes 0..1 with either sign)."""
    if low < 0 <= high:
        alternatives = _magnitude_alternatives(0, high, r"\+?") + _magnitude_alternatives(0, -low, "-")
        return _anchored("|".join(alternatives))
    alternatives = _magnitude_alternatives(low, high, r"\+?")
    if low == 0:
        alternatives.append(r"-(?:0+(?:\.0*)?|\.0+)")  # minus zero
    return _anchored("|".join(alternatives))


def _magnitude_alternatives(low: float, high: float, sign: str) -> list[str]:
    """Texts of the numbers low..high (>= 0) after `sign`."""
    low_whole, low_tenth = _tenths(low)
    high_whole, high_tenth = _tenths(high)
    if low_whole == high_whole:
        branches = [(low_whole, low_whole, _fraction_between(low_tenth, high_tenth))]
    else:
        branches = [(low_whole, low_whole, _fraction_at_least(low_tenth))]
        if high_whole - low_whole > 1:
            branches.append((low_whole + 1, high_whole - 1, r"(?:\.[0-9]*)?"))
        branches.append((high_whole, high_whole, _fraction_at_most(high_tenth)))
    alternatives = []
    for first, last, fraction in branches:
        alternatives.append(sign + "0*" + digits_in_range(first, last) + fraction)
        if first == 0:  # ".5": no whole digits, then at least one fraction digit
            alternatives.append(sign + r"(?=\.[0-9])" + fraction)
    return alternatives
