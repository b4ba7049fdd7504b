"""The webui's prompt language, read the way the webui reads it. Pure functions, no torch.

Two stages, as in the webui:

1. Scheduling (`prompt_schedule`): prompt editing `[from:to:when]`, `[to:when]`, `[from::when]` and alternation
   `[a|b]` turn one prompt into plain texts, each used up to a sampling step. `when` as the webui (1.6 and later)
   reads it: a number written with a "." is a fraction of the steps (`0.5` half, `1.0` all), one without is a step
   number; `int()` rounds down, the result is capped at the step count, and an edit that switches before step 1
   (`when` 0, or negative) reads as its second text from the first step. In a hires fix's second pass the timeline
   goes on from the first pass: step numbers count on from its steps, fractions from 1.0 (so `[a:b:1.5]` switches
   halfway through the second pass). A prompt the grammar cannot read (an unbalanced `[`) is one text for every
   step, as in the webui.
2. Emphasis (`parse_emphasis`), on each of those texts: `(word)` x1.1, `[word]` /1.1, `(word:1.3)`, nesting,
   escapes `\\( \\) \\[ \\]`, and `BREAK`, which starts a new 75-token chunk. Unbalanced brackets are lenient: an
   unclosed one weights up to the end, a stray closing one is text.

Extra-network tags (`<lora:name:1>`) are plain text here; they are taken out of a prompt before it gets here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import lark

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_KEYWORD = "BREAK"

# Characters without which a text has no prompt syntax at all: such a text skips both parsers.
SYNTAX_CHARACTERS = frozenset("()[]\\")

# Stage 1. The webui's scheduling language: `[...]` with ':' is an edit, with '|' an alternation; emphasis groups are
# kept as text for stage 2 (`!` keeps their brackets), and stray brackets or colons at the top level are text.
SCHEDULE_GRAMMAR = r"""
start: (sequence | STRAY)*
sequence: (emphasis | edit | alternation | PLAIN | WHITESPACE)*
!emphasis: "(" sequence ")"
         | "(" sequence ":" sequence ")"
         | "[" sequence "]"
edit: "[" [sequence ":"] sequence ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternation: "[" sequence ("|" [sequence])+ "]"
STRAY: /[\]\[():]+/
WHITESPACE: /\s+/
PLAIN: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""

# Stage 2. Tokens only: the bracket weights are a lenient stack machine over them (`emphasis_fragments`), which a
# context-free grammar cannot express (unclosed brackets weight to the end, stray closers are text).
EMPHASIS_TOKENS = r"""
start: (ESCAPED | OPEN_ROUND | OPEN_SQUARE | WEIGHT_CLOSE | CLOSE_ROUND | CLOSE_SQUARE | TEXT | COLON)*
ESCAPED: /\\[()\[\]\\]?/
OPEN_ROUND: "("
OPEN_SQUARE: "["
WEIGHT_CLOSE: /:\s*[+-]?[.\d]+\s*\)/
CLOSE_ROUND: ")"
CLOSE_SQUARE: "]"
TEXT: /[^\\()\[\]:]+/
COLON: ":"
"""

BREAK_PATTERN = re.compile(rf"\s*\b{BREAK_KEYWORD}\b\s*", re.S)


@dataclass(frozen=True)
class Fragment:
    """Text with the weight its brackets give it."""

    text: str
    weight: float = 1.0


def has_syntax(text: str) -> bool:
    """Whether a text uses the prompt language; one that does not is encoded as it is."""
    return BREAK_KEYWORD in text or not SYNTAX_CHARACTERS.isdisjoint(text)


# Stage 1: scheduling ------------------------------------------------------------------------------------------------


@functools.cache
def schedule_parser() -> lark.Lark:
    return lark.Lark(SCHEDULE_GRAMMAR, parser="earley", maybe_placeholders=True)


@dataclass(frozen=True)
class Edit:
    before: object
    after: object
    when: str  # the NUMBER as written: its step depends on the step count


@dataclass(frozen=True)
class Alternation:
    options: tuple


class ScheduleTree(lark.Transformer):
    """The parse tree as nested parts: str, tuples (sequences), Edit, Alternation."""

    def start(self, children):
        return tuple(str(child) if isinstance(child, lark.Token) else child for child in children)

    def sequence(self, children):
        return tuple(str(child) if isinstance(child, lark.Token) else child for child in children)

    def emphasis(self, children):
        return tuple(str(child) if isinstance(child, lark.Token) else child for child in children)

    def edit(self, children):
        before, after, _, when, _ = children
        return Edit(before or (), after, str(when))

    def alternation(self, children):
        return Alternation(tuple(option or () for option in children))


def switch_step(when: str, steps: int, first_pass_steps: int | None = None) -> int:
    """The last step of an edit's first text; below 1 when the edit has switched before the first step.

    `first_pass_steps` is given for a hires fix's second pass: its timeline continues the first pass's."""
    value = float(when)
    second_pass = first_pass_steps is not None
    if "." in when:
        value = (value - (1.0 if second_pass else 0.0)) * steps
    else:
        value -= first_pass_steps if second_pass else 0
    return min(steps, int(value))


def switch_steps(part, steps: int, first_pass_steps: int | None = None) -> set[int]:
    """The steps at which some text changes; edits that switch before step 1 add none (the webui drops them)."""
    if isinstance(part, str):
        return set()
    if isinstance(part, Edit):
        step = switch_step(part.when, steps, first_pass_steps)
        nested = switch_steps(part.before, steps, first_pass_steps) | switch_steps(part.after, steps, first_pass_steps)
        return ({step} if step >= 1 else set()) | nested
    if isinstance(part, Alternation):
        nested = set().union(*(switch_steps(option, steps, first_pass_steps) for option in part.options))
        return set(range(1, steps + 1)) | nested
    return set().union(set(), *(switch_steps(child, steps, first_pass_steps) for child in part))


def text_at(part, step: int, steps: int, first_pass_steps: int | None = None) -> str:
    """The text a part reads as at `step` (the webui counts from 1 here; see `schedule_index`)."""
    if isinstance(part, str):
        return part
    if isinstance(part, Edit):
        chosen = part.before if step <= switch_step(part.when, steps, first_pass_steps) else part.after
        return text_at(chosen, step, steps, first_pass_steps)
    if isinstance(part, Alternation):
        return text_at(part.options[(step - 1) % len(part.options)], step, steps, first_pass_steps)
    return "".join(text_at(child, step, steps, first_pass_steps) for child in part)


def prompt_schedule(prompt: str, steps: int, first_pass_steps: int | None = None) -> list[tuple[int, str]]:
    """`[(end_at_step, text), ...]`: each text is used up to and including its end step; the last ends at `steps`.
    `first_pass_steps`: the first pass's steps, for the schedule of a hires fix's second pass of `steps` steps.

    >>> prompt_schedule("a [b:c:5] d", 10)
    [(5, 'a b d'), (10, 'a c d')]
    """
    if not ("[" in prompt and "]" in prompt):  # neither editing nor alternation: one text
        return [(steps, prompt)]
    try:
        tree = ScheduleTree().transform(schedule_parser().parse(prompt))
    except lark.exceptions.LarkError:
        return [(steps, prompt)]
    ends = sorted(switch_steps(tree, steps, first_pass_steps) | {steps})
    return [(step, text_at(tree, step, steps, first_pass_steps)) for step in ends]


def schedule_index(end_steps: list[int], step_index: int) -> int:
    """Which entry of a schedule (given its end steps) conditions sampling step `step_index` (0-based, one per
    model evaluation): the first whose end step is not below it, as the webui's denoiser picks."""
    for index, end_at_step in enumerate(end_steps):
        if step_index <= end_at_step:
            return index
    return len(end_steps) - 1


# Stage 2: emphasis ---------------------------------------------------------------------------------------------------


@functools.cache
def emphasis_lexer() -> lark.Lark:
    return lark.Lark(EMPHASIS_TOKENS, parser="lalr", lexer="basic")


def emphasis_fragments(text: str) -> list[Fragment | None]:
    """Fragments with their weights, None where BREAK stands, neighbours of equal weight not yet merged."""
    fragments: list[list] = []  # [text, weight], or None for BREAK; weights grow as brackets close
    open_round: list[int] = []
    open_square: list[int] = []

    def multiply_from(start: int, multiplier: float) -> None:
        for fragment in fragments[start:]:
            if fragment is not None:
                fragment[1] *= multiplier

    for token in emphasis_lexer().lex(text):
        value = str(token)
        kind = token.type
        if kind == "ESCAPED":
            fragments.append([value[1:], 1.0])
        elif kind == "OPEN_ROUND":
            open_round.append(len(fragments))
        elif kind == "OPEN_SQUARE":
            open_square.append(len(fragments))
        elif kind == "WEIGHT_CLOSE" and open_round and (weight := explicit_weight(value)) is not None:
            multiply_from(open_round.pop(), weight)
        elif kind == "CLOSE_ROUND" and open_round:
            multiply_from(open_round.pop(), ROUND_MULTIPLIER)
        elif kind == "CLOSE_SQUARE" and open_square:
            multiply_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            for index, part in enumerate(BREAK_PATTERN.split(value)):
                if index:
                    fragments.append(None)
                fragments.append([part, 1.0])
    for start in open_round:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        multiply_from(start, SQUARE_MULTIPLIER)
    return [None if fragment is None else Fragment(*fragment) for fragment in fragments]


def explicit_weight(token: str) -> float | None:
    """The number of a `:1.3)` token; None when it is not one (`:1.2.3)`), which then stays text."""
    try:
        return float(token[1:-1])
    except ValueError:
        return None


def parse_emphasis(text: str) -> list[list[Fragment]]:
    """The text's fragments, one list per BREAK-separated segment; neighbours of equal weight merged.

    >>> parse_emphasis("an (important) word")
    [[Fragment(text='an ', weight=1.0), Fragment(text='important', weight=1.1), Fragment(text=' word', weight=1.0)]]
    """
    segments: list[list[Fragment]] = [[]]
    for fragment in emphasis_fragments(text):
        if fragment is None:
            segments.append([])
            continue
        segment = segments[-1]
        if segment and segment[-1].weight == fragment.weight:
            segment[-1] = Fragment(segment[-1].text + fragment.text, fragment.weight)
        else:
            segment.append(fragment)
    if segments == [[]]:
        return [[Fragment("")]]
    return segments
