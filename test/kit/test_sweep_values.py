"""The webui's X/Y/Z value syntax, as the sweep widget parses what a user types."""

import pytest

import serena_kit as sk
from serena_kit.sweep_values import parse_values, split_entries, typable_axes

BASE = sk.StableDiffusionProcessingTxt2Img(prompt="a red circle on a blue background", steps=4, seed=21)


@pytest.mark.parametrize(
    ("name", "text", "values"),
    [
        ("steps", "1-5", [1, 2, 3, 4, 5]),
        ("steps", "1-5 (+2)", [1, 3, 5]),
        ("steps", "10-30 [5]", [10, 15, 20, 25, 30]),
        ("steps", "5-1", [5, 4, 3, 2, 1]),
        ("steps", "10-1 (-3)", [10, 7, 4, 1]),
        ("steps", "2, 4-6, 9", [2, 4, 5, 6, 9]),
        ("steps", "1-10 [4]", [1, 4, 7, 10]),
        ("seed", "-1, 5", [-1, 5]),
        ("cfg_scale", "3, 7.5, 12", [3.0, 7.5, 12.0]),
        ("cfg_scale", "2-4 (+0.5)", [2.0, 2.5, 3.0, 3.5, 4.0]),
        ("cfg_scale", "1-2 [3]", [1.0, 1.5, 2.0]),
        ("width", "32-64 (+32)", [32, 64]),
        ("sampler", "Euler a, DPM++ 2M", ["Euler a", "DPM++ 2M"]),
        ("model", "default, other.safetensors", [None, "other.safetensors"]),
        ("prompt_sr", '"red", green, "dark, blue"', ["red", "green", "dark, blue"]),
        ("guidance", "CFG, apg, CFG-Zero*", ["CFG", "APG", "CFG-Zero*"]),  # a name in any case, as written
        ("perturbed_layers", 'mid, "mid,up.1"', ["mid", "mid,up.1"]),
        ("emphasis", "no norm, Original", ["No norm", "Original"]),
    ],
)
def test_values_typed_as_in_the_webui_parse_to_the_axis_values(name, text, values):
    assert parse_values(name, text, BASE) == values


@pytest.mark.parametrize(
    ("name", "text", "error"),
    [
        ("steps", "abc", r"^steps: 'abc' is not an integer or a range"),
        ("steps", "0-2", r"^steps: 0 is out of range"),
        ("steps", "1-5 (-1)", r"^steps: '1-5 \(-1\)' gives no values"),
        ("cfg_scale", "99", r"^cfg_scale: 99.0 is out of range"),
        ("width", "30", r"^width: 30"),
        ("sampler", "Euler z", r"^sampler: unknown sampler 'Euler z'; valid samplers: Euler, "),  # the axis typed
        ("steps", " , ", r"^steps: no values"),
        ("styles", "x", r"^styles: cannot be typed as a sweep axis; valid: prompt_sr, "),
        ("guidance", "CFG, PAG++", r"^guidance: 'PAG\+\+' is not allowed; allowed CFG, APG, CFG-Zero\*, PAG, SLG"),
        ("perturbed_layers", "middle", r"^perturbed_layers: 'middle' is not allowed; allowed mid, down.N or up.N"),
    ],
)
def test_bad_values_name_the_axis_and_what_is_wrong(name, text, error):
    with pytest.raises(ValueError, match=error):
        parse_values(name, text, BASE)


def test_the_axes_offered_are_every_sweepable_field_whose_values_can_be_typed():
    axes = typable_axes(BASE)
    assert list(axes)[0] == "prompt_sr" and axes["cfg_scale"] == "CFG scale" and axes["sampler"] == "Sampler"
    assert {"steps", "seed", "scheduler", "subseed", "subseed_strength", "model", "clip_skip"} <= set(axes)
    assert not {"sampler_name", "init_image", "override_settings", "styles"} & set(axes)
    assert "denoising_strength" in axes  # the hires pass's, in txt2img
    img2img = sk.StableDiffusionProcessingImg2Img(prompt="a circle")
    assert "denoising_strength" in typable_axes(img2img)


def test_quoted_entries_keep_their_commas_and_blanks_are_dropped():
    assert split_entries('a, "b, c",, d ') == ["a", "b, c", "d"]
