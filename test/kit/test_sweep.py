"""Sweeps: one generation per distinct cell, the same seed everywhere unless swept, a labelled X/Y/Z grid."""

import re
import shutil

import numpy as np
import pytest
from helpers import max_pixel_difference, png_of
from PIL import Image

import serena_kit as sk
from modules.default_model import DEFAULT_MODEL_DIR
from modules.grids import CELL_GAP, CELL_SIZE, upscale_for_display
from modules.sweeps import axes as sweep_axes
from modules.sweeps import executors as sweep_executors
from modules.sweeps.executors import run_distinct

BASE = dict(prompt="a red circle on a blue background", steps=4, seed=21)


def counting_executor(calls):
    def execute(processings):
        calls.append(len(processings))
        return run_distinct(processings)

    return execute


def slot_from_bottom_right(grid, rows, columns, row, column):
    """The pixels of cell (row, column): cells fill the grid's bottom-right corner, CELL_GAP apart."""
    pitch = CELL_SIZE + CELL_GAP
    left = grid.width - (columns - column) * pitch + CELL_GAP
    top = grid.height - (rows - row) * pitch + CELL_GAP
    return grid.crop((left, top, left + CELL_SIZE, top + CELL_SIZE))


def test_cfg_by_steps_grid_cells_are_byte_identical_to_single_txt2img_calls():
    """In exact mode; the default batched mode is within 1/255 (next test)."""
    cfg_values, step_values = [3.0, 7.0, 12.0], [4, 8]
    result = sk.sweep(BASE | {"exact": True}, x=("cfg_scale", cfg_values), y=("steps", step_values))

    assert len(result.cells) == 6 and result.generated_count == 6
    for cell in result.cells:
        single = sk.txt2img(BASE["prompt"], seed=21, steps=cell.y, cfg_scale=cell.x, do_not_save_samples=True)
        assert png_of(cell.image) == png_of(single.images[0])

    grid = result.grid()
    assert grid.width > 3 * CELL_SIZE and grid.height > 2 * CELL_SIZE  # cells plus label margins
    for row, steps in enumerate(step_values):
        for column, cfg in enumerate(cfg_values):
            expected = upscale_for_display(result.cell(cfg, steps).image)
            assert slot_from_bottom_right(grid, 2, 3, row, column).tobytes() == expected.tobytes()


def test_batched_sweep_cells_are_within_one_level_of_single_calls(monkeypatch):
    batches = []
    real_process_images = sweep_executors.process_images
    monkeypatch.setattr(
        sweep_executors, "process_images", lambda p: batches.append(p.batch_size) or real_process_images(p)
    )
    result = sk.sweep(BASE, x=("cfg_scale", [3.0, 7.0, 12.0]), y=("seed", [21, 22]))
    assert batches == [6]  # seeds and CFG vary per image: one batch
    for cell in result.cells:
        single = sk.txt2img(BASE["prompt"], seed=cell.y, steps=4, cfg_scale=cell.x, do_not_save_samples=True)
        assert max_pixel_difference(cell.image, single.images[0]) <= 1
        assert cell.processed.infotexts[0] == single.infotexts[0]
        assert (cell.processed.seed, cell.processed.cfg_scale) == (cell.y, cell.x)


def test_grid_labels_every_column_and_row_in_the_margins():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7, 12]), y=("steps", [4, 8]))
    assert [result.x.label(value) for value in result.x.values] == ["CFG scale: 3", "CFG scale: 7", "CFG scale: 12"]
    assert [result.y.label(value) for value in result.y.values] == ["Steps: 4", "Steps: 8"]
    pixels = np.asarray(result.grid().convert("L"))
    pitch = CELL_SIZE + CELL_GAP
    left_margin = pixels.shape[1] - 3 * pitch + CELL_GAP
    top_margin = pixels.shape[0] - 2 * pitch + CELL_GAP
    for column in range(3):  # some ink above every column
        start = left_margin + column * pitch
        assert (pixels[:top_margin, start : start + CELL_SIZE] < 128).any()
    for row in range(2):  # and left of every row
        start = top_margin + row * pitch
        assert (pixels[start : start + CELL_SIZE, :left_margin] < 128).any()


def test_axis_labels_use_the_infotexts_names():
    base = sk.StableDiffusionProcessingImg2Img(init_images=[Image.new("RGB", (32, 32))], prompt="a circle")

    def label(name, value):
        return sweep_axes.parse_axis("x", (name, [value]), base).label(value)

    assert label("subseed_strength", 0.25) == "Variation seed strength: 0.25"
    assert label("denoising_strength", 0.5) == "Denoising strength: 0.5"
    assert label("initial_noise_multiplier", 0.8) == "Noise multiplier: 0.8"
    assert label("model", None) == "Model: default"
    assert label("sampler", "DDIM") == "Sampler: DDIM"


def test_identical_parameter_sets_are_generated_once():
    calls = []
    result = sk.sweep(
        BASE, x=("cfg_scale", [7, 7.0, 5]), y=("sampler", ["Euler", "euler"]), execute=counting_executor(calls)
    )
    assert len(result.cells) == 6
    assert calls == [2]  # 7 == 7.0, and "euler" is the sampler "Euler"
    assert result.generated_count == 2
    assert result.cell(7, "Euler").processed is result.cell(7.0, "euler").processed
    assert [cell.generated for cell in result.cells] == [True, False, True, False, False, False]


def test_a_random_base_seed_is_drawn_once_for_every_cell():
    result = sk.sweep(BASE | {"seed": -1}, x=("cfg_scale", [4, 9]))
    seeds = {record["seed"] for record in result.to_records()}
    assert len(seeds) == 1 and seeds != {-1}


def test_a_seed_axis_gives_each_column_its_seed_and_draws_random_ones_once():
    result = sk.sweep(BASE | {"exact": True}, x=("seed", [5, 6, -1]), y=("cfg_scale", [3, 8]))
    drawn = result.x.values[2]
    assert result.x.values[:2] == (5, 6) and drawn != -1
    assert [cell.processed.seed for cell in result.cells] == [5, 6, drawn, 5, 6, drawn]
    single = sk.txt2img(BASE["prompt"], seed=6, steps=4, cfg_scale=8, do_not_save_samples=True)
    assert png_of(result.cell(6, 8).image) == png_of(single.images[0])


def test_prompt_sr_replaces_the_first_value_in_prompt_and_negative_prompt():
    base = BASE | {"negative_prompt": "red noise"}
    result = sk.sweep(base, x=("prompt_sr", ["red", "green", "white"]))
    assert [cell.processing.prompt for cell in result.cells] == [
        "a red circle on a blue background",
        "a green circle on a blue background",
        "a white circle on a blue background",
    ]
    assert [cell.processing.negative_prompt for cell in result.cells] == ["red noise", "green noise", "white noise"]
    assert [result.x.label(value) for value in result.x.values] == ["red", "green", "white"]


def test_prompt_sr_search_text_must_be_in_the_prompt():
    with pytest.raises(ValueError, match="^x: prompt_sr search text 'purple' is not in the prompt"):
        sk.sweep(BASE, x=("prompt_sr", ["purple", "green"]))


def test_sampler_axis_labels_and_runs_each_sampler():
    result = sk.sweep(BASE, x=("sampler", ["Euler", "DDIM", "DPM++ 2M"]))
    assert [cell.processed.sampler_name for cell in result.cells] == ["Euler", "DDIM", "DPM++ 2M"]
    assert result.x.label("DDIM") == "Sampler: DDIM"
    assert len({png_of(image) for image in result.images}) == 3


def test_model_axis_runs_each_checkpoint(tmp_path):
    copy = tmp_path / "tiny-copy"
    shutil.copytree(DEFAULT_MODEL_DIR, copy)
    result = sk.sweep(BASE, x=("model", [None, str(copy)]))
    assert [record["model"] for record in result.to_records()] == ["serena-default", "tiny-copy"]
    assert result.images[0].tobytes() == result.images[1].tobytes()  # the same weights under two names
    assert [result.x.label(value) for value in result.x.values] == ["Model: default", "Model: tiny-copy"]


def test_z_axis_makes_one_grid_per_value_placed_side_by_side():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("steps", [2, 4]), z=("seed", [1, 2]))
    assert len(result.cells) == 8
    first, second = result.grids()
    assert first.size == second.size
    assert result.grid().width > 2 * first.width and result.grid().height == first.height
    assert result.cell(3, 2, 2).processed.seed == 2


def test_invalid_axis_values_fail_before_anything_is_generated():
    calls = []
    with pytest.raises(ValueError, match="^steps: 0 is out of range"):
        sk.sweep(BASE, x=("steps", [4, 0]), execute=counting_executor(calls))
    with pytest.raises(ValueError, match="^sampler_name: unknown sampler 'Nope'"):
        sk.sweep(BASE, x=("sampler", ["Euler", "Nope"]), execute=counting_executor(calls))
    assert calls == []


def test_axes_name_what_cannot_be_swept():
    valid = (
        "prompt_sr, lora:NAME, controlnet.weight, controlnet.guidance_start, controlnet.guidance_end, "
        "controlnet.model, style, sampler, model, vae, refiner, hr_sampler, hr_model, prompt, negative_prompt, "
        "styles, steps, sampler_name, scheduler, cfg_scale, distilled_cfg_scale, "
        "guidance, guidance_rescale, guidance_start, guidance_end, "
        "apg_eta, apg_norm_threshold, apg_momentum, zero_init_steps, perturbed_scale, perturbed_layers, seed, "
        "width, height, sd_model_checkpoint, sd_vae, "
        "refiner_checkpoint, refiner_switch_at, subseed, "
        "subseed_strength, seed_resize_from_w, seed_resize_from_h, denoising_strength, inpainting_mask_weight, "
        "clip_skip, emphasis, eta, eta_noise_seed_delta, enable_hr, hr_scale, hr_resize_x, hr_resize_y, hr_upscaler, "
        "hr_second_pass_steps, hr_sampler_name, hr_scheduler, hr_prompt, hr_negative_prompt, hr_checkpoint_name, "
        "exact, override_settings, extra_generation_params"
    )
    with pytest.raises(ValueError, match=f"^x: 'cfg' cannot be swept; valid: {re.escape(valid)}$"):
        sk.sweep(BASE, x=("cfg", [1, 2]))
    with pytest.raises(ValueError, match="^x: 'outpath_samples' cannot be swept"):  # saving, not the image
        sk.sweep(BASE, x=("outpath_samples", ["a", "b"]))
    with pytest.raises(ValueError, match="^y: 'batch_size' cannot be swept"):
        sk.sweep(BASE, y=("batch_size", [1, 2]))
    with pytest.raises(ValueError, match="^x: 'steps' needs a non-empty list of values"):
        sk.sweep(BASE, x=("steps", []))
    with pytest.raises(ValueError, match="a parameter appears on two axes"):
        sk.sweep(BASE, x=("steps", [2]), y=("steps", [3]))
    with pytest.raises(TypeError, match="^x: expected \\(parameter name, list of values\\)"):
        sk.sweep(BASE, x="steps")


def test_records_hold_parameters_timings_and_image_hashes():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7]), y=("steps", [2, 3]))
    records = result.to_records()
    assert [(record["cfg_scale"], record["steps"]) for record in records] == [(3, 2), (7, 2), (3, 3), (7, 3)]
    for record, cell in zip(records, result.cells):
        assert record["seed"] == 21 and record["sampler_name"] == "Euler a" and record["width"] == 32
        assert record["seconds"] > 0 and record["sample_seconds"] > 0
        assert record["png_sha256"] == cell.png_sha256() and record["infotext"] == cell.processed.info


def test_plot_draws_a_metric_against_a_parameter_one_line_per_y_value():
    result = sk.sweep(BASE, x=("cfg_scale", [3, 7, 12]), y=("steps", [2, 4]))
    ax = result.plot("brightness")
    assert ax.get_xlabel() == "cfg_scale" and ax.get_ylabel() == "brightness"
    assert [line.get_label() for line in ax.get_lines()] == ["steps = 2", "steps = 4"]
    # At the x values, moved a little apart (1.5 % of the range per line) so that equal lines stay visible.
    assert np.allclose(ax.get_lines()[0].get_xdata(), [3, 7, 12], atol=0.015 * 9)
    timing = result.plot("batch_seconds", against="steps", by="cfg_scale")
    assert len(timing.get_lines()) == 3
    custom = result.plot(lambda image: float(np.asarray(image).mean()), against="cfg_scale")
    assert custom.get_ylabel() == "<lambda>"
    with pytest.raises(ValueError, match="^metric: unknown metric 'sharpness'"):
        result.plot("sharpness")


def test_axis_values_may_be_any_iterable_such_as_a_numpy_range():
    result = sk.sweep(BASE, x=("cfg_scale", np.linspace(4.0, 8.0, 3)), y=("steps", range(2, 4)))
    assert [cell.processed.cfg_scale for cell in result.cells[:3]] == [4.0, 6.0, 8.0]
    assert repr(result) == "SweepResult(x=cfg_scale [4.0, 6.0, 8.0], y=steps [2, 3]; 6 cells, 6 generated)"


def test_img2img_base_sweeps_denoising_strength_like_single_img2img_calls():
    init = Image.new("RGB", (32, 32), "teal")
    base = sk.StableDiffusionProcessingImg2Img(init_images=[init], prompt="a circle", seed=9, steps=8)
    result = sk.sweep(base, x=("denoising_strength", [0.25, 0.75]))
    for cell in result.cells:
        single = sk.img2img(init, "a circle", seed=9, steps=8, denoising_strength=cell.x, do_not_save_samples=True)
        assert png_of(cell.image) == png_of(single.images[0])


def test_cells_are_saved_only_when_asked(isolated_workdir):
    sk.sweep(BASE, x=("cfg_scale", [3, 7]))
    assert not (isolated_workdir / "outputs").exists()
    sk.sweep(BASE | {"outpath_samples": "sweep-out"}, x=("cfg_scale", [3, 7]), save=True)
    assert len(list((isolated_workdir / "sweep-out").rglob("*.png"))) == 2


def test_sweep_leaves_the_base_object_unchanged():
    base = sk.StableDiffusionProcessingTxt2Img(**(BASE | {"seed": -1, "batch_size": 2}))
    sk.sweep(base, x=("steps", [2, 3]))
    assert base.seed == -1 and base.batch_size == 2 and base.do_not_save_samples is False
