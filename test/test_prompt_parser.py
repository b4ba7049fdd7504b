"""The prompt language reads as the webui reads it: the cases are the webui's documented examples (the doctests of
its prompt_parser.py and the wiki's), plus the lenient handling of malformed prompts."""

import pytest

from modules.prompt_parser import Fragment, has_syntax, parse_emphasis, prompt_schedule, schedule_index

# The webui's doctests of get_learned_conditioning_prompt_schedules, at 10 steps.
SCHEDULES_AT_10_STEPS = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(step, "a" if step % 2 else "(b:1.1)") for step in range(1, 11)]),
    ("[fe|]male", [(step, "female" if step % 2 else "male") for step in range(1, 11)]),
    ("[fe|||]male", [(step, "female" if step % 4 == 1 else "male") for step in range(1, 11)]),
    # Unreadable for the webui's own grammar too (its doctest says "not handling this right now"): one text.
    ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),
    ("a | b", [(10, "a | b")]),
    ("a ] b [c", [(10, "a ] b [c")]),
]


@pytest.mark.parametrize("prompt, expected", SCHEDULES_AT_10_STEPS)
def test_prompt_schedule_matches_the_webui_doctests(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_the_webui_readme_example_at_100_steps():
    prompt = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert prompt_schedule(prompt, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


# The webui's doctests with a hires fix's second pass (base 10 steps, second pass 10): its timeline goes on.
@pytest.mark.parametrize(
    "prompt, expected",
    [("a [b:.5] c", [(10, "a b c")]), ("a [b:1.5] c", [(5, "a  c"), (10, "a b c")])],
)
def test_the_second_pass_schedule_matches_the_webui_doctests(prompt, expected):
    assert prompt_schedule(prompt, 10, first_pass_steps=10) == expected


RED, GREEN = "a red circle", "a green circle"
# `when` at its edges, at 20 steps: a number with a "." is a fraction, one without a step number; int() rounds down,
# the step count caps it, and an edit switching before step 1 is its second text throughout (the webui drops it).
WHEN_EDGES = [
    ("0", [(20, GREEN)]),
    ("0.0", [(20, GREEN)]),
    ("-3", [(20, GREEN)]),
    ("0.04", [(20, GREEN)]),  # 0.8 of a step rounds down to 0
    ("0.05", [(1, RED), (20, GREEN)]),
    ("1", [(1, RED), (20, GREEN)]),
    ("0.5", [(10, RED), (20, GREEN)]),
    ("0.99", [(19, RED), (20, GREEN)]),
    ("19", [(19, RED), (20, GREEN)]),
    ("20", [(20, RED)]),
    ("25", [(20, RED)]),
    ("1.0", [(20, RED)]),  # a fraction: all the steps
    ("1.5", [(20, RED)]),
    ("20.0", [(20, RED)]),
]


@pytest.mark.parametrize("when, expected", WHEN_EDGES)
def test_when_at_its_edges_reads_as_the_webuis(when, expected):
    assert prompt_schedule(f"a [red:green:{when}] circle", 20) == expected


@pytest.mark.parametrize(
    "prompt, expected",
    [
        # A nested edit that switches at 0 leaves only the outer switch.
        ("a [[red:green:0]:blue:5] circle", [(5, "a green circle"), (10, "a blue circle")]),
        ("a [red:[green:blue:0]:5] circle", [(5, "a red circle"), (10, "a blue circle")]),
        ("a [red:[green:blue:7]:0.3] circle", [(3, "a red circle"), (7, "a green circle"), (10, "a blue circle")]),
        # "[x]" is emphasis, not a one-option alternation: one text; "[x|]" alternates with nothing.
        ("a [red] circle", [(10, "a [red] circle")]),
        ("a [red|] circle", [(step, "a red circle" if step % 2 else "a  circle") for step in range(1, 11)]),
        # An edit inside an alternation follows its own timeline.
        ("[a|[b:c:0]]", [(step, "a" if step % 2 else "c") for step in range(1, 11)]),
    ],
)
def test_nested_editing_and_alternation_at_their_edges(prompt, expected):
    assert prompt_schedule(prompt, 10) == expected


def test_an_edit_switching_at_0_conditions_the_first_model_evaluation_on_its_second_text():
    end_steps = [end for end, _ in prompt_schedule("a [green:red:0] circle", 20)]
    assert [schedule_index(end_steps, step) for step in range(20)] == [0] * 20
    assert prompt_schedule("a [green:red:0] circle", 20)[0][1] == "a red circle"


def test_the_step_a_schedule_entry_conditions_counts_from_0_like_the_webuis_denoiser():
    end_steps = [end for end, _ in prompt_schedule("a [red:green:0.5] circle", 20)]
    assert [schedule_index(end_steps, step) for step in range(20)] == [0] * 11 + [1] * 9
    alternating = [end for end, _ in prompt_schedule("[red|green]", 4)]
    assert [schedule_index(alternating, step) for step in range(4)] == [0, 0, 1, 2]


def test_model_evaluations_past_the_schedule_keep_its_last_text():
    """Heun and DPM2 evaluate the model about twice per step, so the step index runs past the last end step (19
    evaluations at 10 steps). [serena] they keep the last text; the webui's `reconstruct_cond_batch` falls back to
    the first (index 0), which would switch "[red:green:0.5]" back to red for Heun's second half."""
    end_steps = [end for end, _ in prompt_schedule("a [red:green:0.5] circle", 10)]
    assert end_steps == [5, 10]
    assert [schedule_index(end_steps, step) for step in range(19)] == [0] * 6 + [1] * 13
    assert schedule_index([10], 25) == 0


# The webui's doctests of parse_prompt_attention.
EMPHASIS = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    # not doctests: the webui merges equal neighbours into the previous fragment, here one past the first
    ("a (b)(c)", [("a ", 1.0), ("bc", 1.1)]),
    ("(a) b\\(c", [("a", 1.1), (" b(c", 1.0)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.1 * 1.1 * 1.3),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.1**4),
            (".", 1.1),
        ],
    ),
    ("((word))", [("word", 1.1 * 1.1)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("[[word]]", [("word", 1 / 1.1 / 1.1)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("(word: 1.3 )", [("word", 1.3)]),
    ("((word:1.5))", [("word", 1.5 * 1.1)]),
    ("(a [b] c)", [("a ", 1.1), ("b", 1.0), (" c", 1.1)]),
    ("(word:1.0)", [("word", 1.0)]),
    ("a \\(b\\) c", [("a (b) c", 1.0)]),
    ("word)", [("word)", 1.0)]),  # a stray closing bracket is text
    ("word]", [("word]", 1.0)]),
    ("[word", [("word", 1 / 1.1)]),
    ("a :1.2) b", [("a :1.2) b", 1.0)]),  # a weight without an open bracket is text
    ("(a:b)", [("a:b", 1.1)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize("text, expected", EMPHASIS)
def test_emphasis_matches_the_webui_doctests(text, expected):
    (segment,) = parse_emphasis(text)
    assert [fragment.text for fragment in segment] == [text for text, _ in expected]
    assert [fragment.weight for fragment in segment] == pytest.approx([weight for _, weight in expected])


def test_emphasis_weights_are_the_webuis_floats_exactly():
    (segment,) = parse_emphasis("a (((house:1.3)) (((sky)))")
    assert [fragment.weight for fragment in segment] == [1.0, 1.5730000000000004, 1.1, 1.4641000000000006]


@pytest.mark.parametrize(
    "text, segments",
    [
        ("a red circle BREAK a blue background", [["a red circle"], ["a blue background"]]),
        ("BREAK a", [[""], ["a"]]),
        ("a BREAK BREAK b", [["a"], [""], ["b"]]),
        ("a BREAKFAST", [["a BREAKFAST"]]),  # only the whole word
        ("a break b", [["a break b"]]),  # only in capitals
    ],
)
def test_break_separates_segments_and_eats_the_spaces_around_it(text, segments):
    assert [[fragment.text for fragment in segment] for segment in parse_emphasis(text)] == segments


def test_break_inside_brackets_keeps_the_weight_on_both_sides():
    assert parse_emphasis("(a BREAK b)") == [[Fragment("a", 1.1)], [Fragment("b", 1.1)]]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a red circle on a blue background", False),
        ("a red circle, on a blue background: nice | ok <lora:x:1>", False),
        ("a (red) circle", True),
        ("a [red:blue:5] circle", True),
        ("a red circle BREAK on blue", True),
        ("a \\ b", True),
        # every letter, digit and the punctuation of plain captions is text, only brackets and backslashes are syntax
        ("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789 .,;:!?'\"-_/<>{}|=+*&^%$#@~`", False),
    ],
)
def test_has_syntax_spots_every_construct(text, expected):
    assert has_syntax(text) is expected
