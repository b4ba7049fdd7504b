"""Fields written only when set (Seed resize from, Clip skip, Eta) replay to the same bytes; the prompt cache evicts
its oldest entry and gives the same embedding again."""

import pytest
import torch
from helpers import png_of

from modules import prompt_encoding, sd_models
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"seed_resize_from_w": 48, "seed_resize_from_h": 24, "width": 32, "height": 40}, "Seed resize from: 48x24"),
        ({"clip_skip": 2}, "Clip skip: 2"),
        ({"eta": 0.6, "sampler_name": "DDIM"}, "Eta: 0.6"),
    ],
    ids=["seed-resize", "clip-skip", "eta"],
)
def test_a_field_written_only_when_set_replays_to_the_same_bytes(fields, key):
    p = StableDiffusionProcessingTxt2Img(prompt="a red circle on a blue background", seed=4, steps=3, **fields)
    made = process_images(p).images[0]
    text = made.info["parameters"]
    assert key in text.splitlines()[-1]
    replay = processing_from_infotext(text)
    assert {name: getattr(replay, name) for name in fields} == fields
    assert png_of(process_images(replay).images[0]) == png_of(made)
    without_key = processing_from_infotext(text.replace(key + ", ", "").replace(", " + key, ""))
    assert png_of(process_images(without_key).images[0]) != png_of(made)  # the key is what carried it


def test_the_prompt_cache_drops_its_oldest_entry_and_re_encodes_it_the_same(monkeypatch):
    model = sd_models.load_model()
    model.prompt_cache.clear()
    monkeypatch.setattr(prompt_encoding, "PROMPT_CACHE_SIZE", 2)
    first = prompt_encoding.encode_text(model, "one", 1)
    prompt_encoding.encode_text(model, "two", 1)
    prompt_encoding.encode_text(model, "two", 2)  # clip skip is part of the key
    assert list(model.prompt_cache) == [("two", 1, "Original"), ("two", 2, "Original")]
    again = prompt_encoding.encode_text(model, "one", 1)
    assert again is not first and torch.equal(again, first)
    assert list(model.prompt_cache) == [("two", 2, "Original"), ("one", 1, "Original")]
