import pytest

from modules.infotext import create_infotext, parse_infotext

WEBUI_INFOTEXT = """masterpiece, a cat, (fluffy:1.2)
wearing a hat
Negative prompt: blurry, lowres
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 3735928559, Size: 512x768, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, Lora hashes: "add_detail: 7c6bad76eb54, other: 1234", Version: v1.6.0"""


def test_create_writes_the_webui_layout():
    text = create_infotext(
        "a red circle",
        "blurry",
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 1, "Size": "64x64", "Skipped": None},
    )
    assert (
        text == "a red circle\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64"
    )


def test_values_with_commas_are_quoted_and_read_back():
    text = create_infotext("p", "", {"Steps": 1, "Sampler": "Euler", "Seed": 2, "Note": 'a, b: "c"'})
    assert 'Note: "a, b: \\"c\\""' in text
    assert parse_infotext(text)["Note"] == 'a, b: "c"'


def test_parses_a_webui_infotext_keeping_unknown_keys():
    parsed = parse_infotext(WEBUI_INFOTEXT)
    assert parsed["Prompt"] == "masterpiece, a cat, (fluffy:1.2)\nwearing a hat"
    assert parsed["Negative prompt"] == "blurry, lowres"
    assert parsed["Steps"] == "30"
    assert parsed["Sampler"] == "DPM++ 2M Karras"
    assert parsed["CFG scale"] == "6.5"
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert parsed["Lora hashes"] == "add_detail: 7c6bad76eb54, other: 1234"
    assert parsed["Version"] == "v1.6.0"


def test_prompt_without_parameters_or_negative():
    assert parse_infotext("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}


def test_round_trip_of_our_own_infotext():
    parameters = {
        "Steps": 20,
        "Sampler": "Euler a",
        "CFG scale": 7.5,
        "Seed": 5,
        "Size": "32x32",
        "Seed resize from": "64x64",
    }
    parsed = parse_infotext(create_infotext("a\nb", "c", parameters))
    assert parsed["Prompt"] == "a\nb" and parsed["Negative prompt"] == "c"
    assert parsed["CFG scale"] == "7.5" and parsed["Seed resize from-1"] == "64"


def test_replay_reads_the_declared_pairs_keeps_inert_ones_and_warns_about_the_rest():
    from modules.replay import ReplayWarning, processing_from_infotext, unread_parameters

    # "Lora hashes" is read (replay checks the LoRAs it names: modules.extra_networks); "Face restoration" is not.
    text = WEBUI_INFOTEXT.replace('Lora hashes: "add_detail: 7c6bad76eb54, other: 1234"', "Face restoration: GFPGAN")
    parsed = parse_infotext(text)
    assert unread_parameters(parsed) == {"Face restoration": "GFPGAN", "Version": "v1.6.0"}
    with pytest.warns(ReplayWarning, match="^replay: infotext keys Serena does not honour: Face restoration "):
        p = processing_from_infotext(text.replace("Model: v1-5-pruned-emaonly", "Model: serena-default"))
    assert (p.sampler_name, p.scheduler, p.cfg_scale, p.seed, p.width, p.height) == (
        "DPM++ 2M",
        "Karras",
        6.5,
        3735928559,
        512,
        768,
    )
    assert p.extra_generation_params == {"Version": "v1.6.0"}  # describes the image, changes nothing: kept


def test_every_size_pair_is_split_into_width_and_height_as_the_webui_does():
    # The webui's parse_generation_parameters splits a WxH value into KEY-1 / KEY-2; these three keys carry one.
    parsed = parse_infotext("a cat\nSteps: 20, Size: 512x768, Seed resize from: 640x480, Hires resize: 1024x1536")
    assert (parsed["Size-1"], parsed["Size-2"]) == ("512", "768")
    assert (parsed["Seed resize from-1"], parsed["Seed resize from-2"]) == ("640", "480")
    assert (parsed["Hires resize-1"], parsed["Hires resize-2"]) == ("1024", "1536")
    assert "Steps-1" not in parsed
