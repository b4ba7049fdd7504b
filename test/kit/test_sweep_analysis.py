"""A sweep's analysis: one table row per cell, built-in and custom metrics, plots with confidence intervals."""

import math

import numpy as np
import pytest
import transformers
from PIL import Image

import serena_kit as sk
from modules.default_model import DEFAULT_MODEL_DIR
from modules.sweeps.executors import run_distinct
from serena_kit import metrics, plots

BASE = dict(prompt="a red circle on a blue background", steps=4, seed=21)
STUDY = dict(prompt="a red circle on a blue background", steps=20)


def test_dataframe_has_one_row_per_cell_with_parameters_seed_timings_hash_file_and_metrics(tmp_path):
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("seed", [1, 2]), outdir=tmp_path / "out")
    result.score("brightness")
    frame = result.to_dataframe()
    assert len(frame) == 4
    assert list(frame["cfg_scale"]) == [3, 7, 3, 7] and list(frame["seed"]) == [1, 1, 2, 2]
    assert list(frame["png_sha256"]) == [cell.png_sha256() for cell in result.cells]
    assert all(Image.open(path).size == (32, 32) for path in frame["file"])
    assert list(frame["brightness"]) == [metrics.brightness(image) for image in result.images]
    assert (frame["batch_seconds"] > 0).all()


def test_batched_cells_say_their_timings_are_per_batch_and_are_not_plotted_as_per_cell():
    batched = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("steps", [2, 3]))
    frame = batched.to_dataframe()
    assert list(frame["batch_size"]) == [2, 2, 2, 2] and set(frame["timing"]) == {"per batch"}
    assert "not measured per cell" in frame.attrs["timing"]
    assert np.allclose(frame["batch_seconds"], frame["seconds"] * 2)
    with pytest.raises(ValueError, match="^metric: 'seconds' of batched cells .* plot 'batch_seconds'"):
        batched.plot("seconds", against="steps", by="cfg_scale")
    assert len(batched.plot("batch_seconds", against="steps", by="cfg_scale").get_lines()) == 2

    distinct = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("steps", [2, 3]), execute=run_distinct)
    frame = distinct.to_dataframe()
    assert set(frame["timing"]) == {"per cell"} and frame.attrs["timing"].endswith("measured per cell")
    assert len(distinct.plot("seconds", against="steps", by="cfg_scale").get_lines()) == 2


def test_adherence_scores_each_cell_against_its_own_prompt():
    """The default model draws what the prompt says at CFG 7: its scorer agrees with each cell's own prompt and not
    with the other cell's colour."""
    result = sk.sweep(STUDY, x=("prompt_sr", ["red", "yellow"]), y=("seed", [1, 2, 3, 4]))
    scores = result.score("adherence")
    assert sum(scores) >= 7
    assert set(result.metrics) == {"adherence", "adherence_colour", "adherence_background", "adherence_shape"}
    swapped = ["a yellow circle on a blue background", "a red circle on a blue background"] * 4
    assert sum(metrics.adherence(result.images, swapped)["adherence_colour"]) <= 1
    with pytest.raises(ValueError, match="^prompt: 'a cat' does not name a shape"):
        metrics.adherence(result.images[:1], ["a cat"])


def test_ssim_and_psnr_compare_cells_with_a_reference_cell_or_image():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("seed", [1, 2]))
    ssim = result.score("ssim", reference={"x": 3, "y": 1})
    psnr = result.score("psnr", reference=result.cell(3, 1))
    assert ssim[0] == pytest.approx(1.0) and psnr[0] == math.inf
    assert all(value < 0.999 for value in ssim[1:]) and all(value < 60 for value in psnr[1:])
    # Against an image: more noise, less similar.
    reference = result.images[0]
    pixels = np.asarray(reference, dtype=np.float64)
    noise = np.random.default_rng(0).normal(size=pixels.shape)
    noisy = [Image.fromarray(np.clip(pixels + level * noise, 0, 255).astype(np.uint8)) for level in (4, 16, 64)]
    similarity = [metrics.ssim(image, reference) for image in noisy]
    ratios = [metrics.psnr(image, reference) for image in noisy]
    assert similarity == sorted(similarity, reverse=True) and ratios == sorted(ratios, reverse=True)
    with pytest.raises(ValueError, match="^reference: ssim compares against a reference"):
        result.score("ssim")
    with pytest.raises(ValueError, match=r"^reference: psnr needs the reference's size, \(64, 64\)"):
        result.score("psnr", reference=Image.new("RGB", (64, 64)))


def tiny_clip(folder):
    """A randomly initialised CLIP built from a config, with the default model's tokenizer: plumbing only."""
    tokenizer = transformers.CLIPTokenizer.from_pretrained(DEFAULT_MODEL_DIR / "tokenizer")
    layers = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=77, **layers),
        vision_config=dict(image_size=32, patch_size=8, **layers),
        projection_dim=16,
    )
    model = transformers.CLIPModel(config).eval()
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    transformers.CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return model


def features(output):
    """transformers 5 returns a model output holding the projected embeddings; older versions the tensor itself."""
    return getattr(output, "pooler_output", output)


def test_clip_score_from_a_local_clip_folder_is_the_cosine_of_its_embeddings(tmp_path):
    import torch

    torch.manual_seed(0)
    model = tiny_clip(tmp_path / "clip")
    result = sk.sweep(BASE, x=("prompt_sr", ["red", "green"]))
    scores = result.score("clip", clip_model=tmp_path / "clip")
    processor = transformers.CLIPProcessor.from_pretrained(tmp_path / "clip", use_fast=False)
    for cell, score in zip(result.cells, scores):
        with torch.no_grad():
            image = features(model.get_image_features(**processor(images=[cell.image], return_tensors="pt")))
            text = features(model.get_text_features(**processor(text=[cell.processed.prompt], return_tensors="pt")))
        cosine = torch.nn.functional.cosine_similarity(image, text).item()
        assert score == pytest.approx(100 * max(cosine, 0.0), abs=1e-3)
    with pytest.raises(ValueError, match="^clip_model: the CLIP score needs a local CLIP model"):
        result.score("clip")
    with pytest.raises(ValueError, match="is not a folder"):
        result.score("clip", clip_model=tmp_path / "missing")


def test_any_function_of_an_image_is_a_metric_and_unknown_names_are_refused():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]))

    def red_share(image):
        pixels = np.asarray(image, dtype=np.float64)
        return float((pixels[..., 0] > 150).mean())

    values = result.score(red_share)
    assert values == [red_share(image) for image in result.images]
    assert result.to_records()[1]["red_share"] == values[1]
    with pytest.raises(ValueError, match="^metric: unknown metric 'sharpness'; valid: adherence, ssim"):
        result.score("sharpness")


def test_plot_over_seeds_draws_the_mean_with_a_confidence_band():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("seed", [1, 2, 3]))
    values = result.score("brightness")
    ax = result.plot("brightness", against="cfg_scale", over="seed")
    (line,) = ax.get_lines()
    means = [np.mean(values[0::2]), np.mean(values[1::2])]
    assert np.allclose(line.get_ydata(), means)
    (band,) = ax.collections
    edges = band.get_paths()[0].vertices[:, 1]
    for mean, cells in zip(means, (values[0::2], values[1::2])):
        half_width = t_interval(cells)
        assert half_width > 0
        assert np.isclose(edges, mean + half_width).any() and np.isclose(edges, mean - half_width).any()
    assert ax.get_ylabel() == "brightness\n(mean over seed, 95% CI)"  # two lines: it stays beside the axes
    with pytest.raises(ValueError, match="^over: each"):
        sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("seed", [1, 2]), z=("steps", [2, 3])).plot(
            "brightness", against="cfg_scale", over="seed"
        )


def test_a_share_gets_the_wilson_interval_inside_0_1_and_lines_that_agree_stay_visible():
    records = [
        {"cfg_scale": cfg, "sampler": sampler, "seed": seed}
        for sampler in ("A", "B")
        for cfg in (3, 7)
        for seed in range(8)
    ]
    values = [1] * 16 + [1] * 8 + [0, 1, 1, 1, 1, 1, 1, 1]  # A: 8/8, 8/8; B: 8/8, 7/8
    rows = plots.summarize(records, values, "cfg_scale", by="sampler", over="seed")
    full = rows[0]
    assert full["mean"] == 1.0 and full["high"] == 1.0 and 0.6 < full["low"] < 0.7  # Wilson's 8/8: [0.676, 1]
    assert full["interval"] is None and (rows[3]["low"], rows[3]["high"]) == pytest.approx(plots.wilson_interval(7, 8))
    ax = plots.plot_metric(records, values, "adherence", against="cfg_scale", by="sampler", over="seed")
    first, second = ax.get_lines()
    assert list(first.get_ydata()) == [1.0, 1.0] and list(second.get_ydata())[0] == 1.0
    assert not np.allclose(first.get_xdata(), second.get_xdata())  # moved apart, so neither hides the other
    assert first.get_marker() != second.get_marker()
    for band in ax.collections:
        assert band.get_paths()[0].vertices[:, 1].max() <= 1.0
    assert ax.get_ylabel() == "adherence\n(mean over seed, 95% Wilson CI)"


def t_interval(values):
    """The 95 % Student-t half-width, written out."""
    from scipy import stats

    return stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
