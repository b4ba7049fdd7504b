"""Cross-attention maps (modules.attention_maps): captured beside the image without changing its bytes, per token
and per word, bounded in memory, and meaningful on the default model: the shape word's map lies on the shape."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import serena_kit as sk
from modules import sd_models
from modules.attention_maps import AttentionCapture, words_of
from modules.default_model import scoring
from serena_kit.attention import heat_colours
from serena_kit.cli import main

PROMPTS = [
    "a red circle on a blue background",
    "a yellow square on a purple background",
    "a green triangle on a white background",
]
NO_FILES = {"do_not_save_samples": True, "do_not_save_grid": True}


def test_capturing_changes_no_byte_and_gives_each_image_its_own_words():
    prompts = [PROMPTS[0], "an orange circle on a black background, (blue:1.3) glow"]
    plain = sk.txt2img(prompts, seed=11, batch_size=2, steps=6, **NO_FILES)
    unet = sd_models.model_cache.loaded.pipeline.unet
    processors = {name: type(processor) for name, processor in unet.attn_processors.items()}
    captured = sk.txt2img(prompts, seed=11, batch_size=2, steps=6, attention=True, **NO_FILES)
    assert [np.asarray(image).tobytes() for image in captured.images] == [
        np.asarray(image).tobytes() for image in plain.images
    ]
    assert {name: type(processor) for name, processor in unet.attn_processors.items()} == processors  # restored
    first, second = captured.attention_maps
    assert [word for word, _ in first.words] == PROMPTS[0].split()
    assert first.positions == list(range(1, 8))  # after the start token
    # Emphasis syntax is read as the encoder reads it; a word outside the vocabulary is several byte tokens.
    assert second.words[-3:] == [(",", [7]), ("blue", [8]), ("glow", [9, 10, 11, 12])]
    assert second.positions == list(range(1, 14))
    assert first.sums.shape == (77, 8, 8)  # the sequence over the 8x8 latent grid: bounded by neither steps nor layers
    circle = first.word_map("circle")
    assert circle.shape == (32, 32) and circle.min() == 0 and circle.max() == 1
    assert np.array_equal(first.word_map(2), circle)  # by index in `words`
    assert sk.txt2img(PROMPTS[0], seed=11, steps=6, **NO_FILES).attention_maps == []  # off by default


def test_capturing_joint_attention_on_sd3_changes_no_byte():
    job = dict(seed=11, batch_size=2, steps=6, sd_model_checkpoint="serena-flow", sampler_name="Euler", **NO_FILES)
    plain = sk.txt2img(PROMPTS[:2], **job)
    captured = sk.txt2img(PROMPTS[:2], attention=True, **job)
    assert [np.asarray(image).tobytes() for image in captured.images] == [
        np.asarray(image).tobytes() for image in plain.images
    ]
    first = captured.attention_maps[0]
    assert [word for word, _ in first.words] == PROMPTS[0].split() and first.sums.shape == (77, 8, 8)
    assert first.word_map("circle").max() == 1


def test_words_join_their_byte_pair_tokens():
    assert words_of(["a</w>", "sun", "flower</w>", "field"]) == [("a", [0]), ("sunflower", [1, 2]), ("field", [3])]


def test_step_ranges_layers_and_per_step_maps():
    capture = AttentionCapture(keep_steps=True)
    maps = sk.txt2img(PROMPTS[1], seed=2, steps=6, attention=capture, **NO_FILES).attention_maps[0]
    assert len(maps.per_step) == 6
    assert np.allclose(sum(maps.per_step).numpy(), maps.sums.numpy(), atol=1e-5)
    late = maps.word_map("square", steps=range(3, 6))
    assert late.shape == (32, 32)
    half = AttentionCapture(steps=(0.0, 0.5), layers=("up_blocks",))
    early = sk.txt2img(PROMPTS[1], seed=2, steps=6, attention=half, **NO_FILES).attention_maps[0]
    assert early.sums.sum() < maps.sums.sum()  # fewer steps and layers summed
    with pytest.raises(ValueError, match="^steps: per-step maps were not kept"):
        early.word_map("square", steps=range(2))
    with pytest.raises(ValueError, match=r"^steps: range\(0, 9\) is not allowed; allowed step indices 0..5"):
        maps.word_map("square", steps=range(9))
    with pytest.raises(ValueError, match="^word: 'circle' is not in the prompt; its words: a, yellow, square"):
        maps.word_map("circle")
    with pytest.raises(ValueError, match=r"^steps: \(0.5, 0.2\) is not allowed"):
        AttentionCapture(steps=(0.5, 0.2))


@pytest.mark.parametrize(
    "model", [{}, {"sd_model_checkpoint": "serena-flow", "sampler_name": "Euler"}], ids=["unet", "sd3-flow"]
)
def test_the_shape_words_map_lies_on_the_shape_and_the_background_colours_mostly_off_it(model):
    """24 images (3 prompts x 8 seeds) at each model's defaults; the object mask is the scorer's shape region. On the
    flow model (SD 3's joint attention: each word's attention to the image's tokens) the shape word's map lies on the
    shape too (0.58 measured), but the background colour word's does not stay off it (0.75 of its mass on the shape,
    every block and step; docs/families.md): only the first holds there."""
    shape_iou, background_inside = [], []
    for prompt in PROMPTS:
        words = prompt.split()
        result = sk.txt2img(prompt, seed=100, batch_size=8, attention=True, **NO_FILES, **model)
        for image, maps in zip(result.images, result.attention_maps):
            pixels = scoring.as_rgb_array(image)
            region = scoring.largest_foreground_region(pixels, scoring.border_median(pixels))
            shape = maps.word_map(words[2]) >= 0.5
            shape_iou.append((shape & region).sum() / (shape | region).sum())
            background = maps.word_map(words[5])
            background_inside.append(background[region].sum() / background.sum())
    assert np.mean(shape_iou) >= 0.5, np.round(shape_iou, 2)
    if not model:
        assert np.mean(background_inside) < 0.5, np.round(background_inside, 2)


def test_the_notebook_draws_each_words_map_over_its_image():
    result = sk.txt2img(PROMPTS[0], seed=5, steps=4, attention=True, **NO_FILES)
    grid = sk.attention_grid(result)
    overlay = sk.attention_overlay(result.images[0], result.attention_maps[0].word_map("circle"))
    assert overlay.size == (96, 96)  # 32 px upscaled by a whole factor for display
    assert grid.width > 8 * overlay.width  # the image and its seven words in one row
    assert heat_colours(np.array([0.0, 1.0])).tolist() == [[0, 0, 4], [252, 255, 164]]
    with pytest.raises(ValueError, match=r"^word_map: shape \(8, 8\) is not the image's \(32, 32\)"):
        sk.attention_overlay(result.images[0], np.zeros((8, 8)))
    with pytest.raises(ValueError, match="^result: it has no attention maps"):
        sk.attention_grid(sk.txt2img(PROMPTS[0], seed=5, steps=2, **NO_FILES))


def test_the_cli_saves_each_words_map_beside_each_image(capsys, isolated_workdir):
    code = main(["txt2img", "--prompt", PROMPTS[2], "--steps", "4", "--seed", "9", "--attention-maps", "--quiet"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    image, *maps = lines
    assert [Path(line).name.split("-attention-")[1] for line in maps] == [
        f"{number:02d}-{word}.png" for number, word in enumerate(PROMPTS[2].split())
    ]
    triangle = Image.open(isolated_workdir / maps[2])
    assert triangle.mode == "L" and triangle.size == Image.open(isolated_workdir / image).size
    expected = sk.txt2img(PROMPTS[2], steps=4, seed=9, attention=True, **NO_FILES).attention_maps[0].word_map(2)
    assert np.array_equal(np.asarray(triangle), (expected * 255).round().astype(np.uint8))
