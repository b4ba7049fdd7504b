"""The sweep widget: axes typed in the webui's syntax, a grid that fills as cells finish, and its sweep as code."""

import re

import pytest
from helpers import png_of

import serena_kit as sk
from modules import images
from modules.sweeps import executors as sweep_executors
from serena_kit.sweep_form import PLACEHOLDER_GREY, Speed

BASE = {"prompt": "a red circle on a blue background", "steps": 4, "seed": 21}


def slot_images(form):
    return [slot["image"].value for slot in form._slots.values()]


def test_values_are_parsed_as_typed_with_errors_in_place_and_the_cell_count_and_estimate():
    form = sk.SweepForm(BASE)
    assert isinstance(form.speed, Speed) and form.speed.seconds_per_step > 0
    form.set_axis("x", "cfg_scale", "3-12 [4]")
    assert form.axis_preview["x"].value == "3.0, 6.0, 9.0, 12.0"
    form.set_axis("y", "steps", "2-6 (+2)")
    assert form.axis_preview["y"].value == "2, 4, 6"
    assert re.fullmatch(r"12 cells · about \d+\.\d s at this model's measured speed", form.summary.value)
    assert form.estimate_seconds() == pytest.approx(form.speed.seconds_for(_distinct(form)))
    assert not form.run_button.disabled

    form.set_axis("y", "steps", "2-x")
    assert "steps: &#x27;2-x&#x27; is not an integer or a range" in form.axis_preview["y"].value
    assert "color: #b00020" in form.axis_preview["y"].value
    assert form.summary.value == "Fix the values of the y axis before running." and form.run_button.disabled
    with pytest.raises(ValueError, match="^y: steps: '2-x' is not an integer"):
        form.run()
    form.set_axis("y", "prompt_sr", "green, red")
    assert "prompt_sr search text &#x27;green&#x27; is not in the prompt" in form.axis_preview["y"].value


def _distinct(form):
    from modules.sweeps import axes as sweep_axes
    from modules.sweeps import run as sweep_run

    axes = form.axes_or_error()
    parsed = [sweep_axes.parse_axis(position, axes.get(position), form.base) for position in "xyz"]
    return sweep_run.plan_cells(form.base, parsed)[1]


def test_run_fills_the_labelled_grid_and_a_cell_shows_large_with_its_infotext():
    form = sk.SweepForm(BASE, measure=False)
    form.set_axis("x", "cfg_scale", "3, 7")
    form.set_axis("y", "steps", "2, 3")
    filled_counts = []
    original = form._cell_finished

    def record_filled(cell):
        original(cell)
        grey = [images.open_image(value).getpixel((0, 0)) == PLACEHOLDER_GREY for value in slot_images(form)]
        filled_counts.append(grey.count(False))

    form._cell_finished = record_filled
    result = form.run()
    assert filled_counts == [1, 2, 3, 4]  # the grid fills in cell by cell
    assert result is form.result and len(result.cells) == 4
    assert (form.progress.value, form.progress.max) == (4, 4) and form.progress_text.value == "4/4 cells"
    for cell in result.cells:
        slot = form._slots[(cell.x, cell.y, cell.z)]
        assert images.open_image(slot["image"].value).getpixel((0, 0)) != PLACEHOLDER_GREY
        assert not slot["button"].disabled
    header, *rows = form.grid.children[0].children[1:]
    labels = [child.value for child in header.children[1:]]
    assert labels == ["CFG scale: 3.0", "CFG scale: 7.0"]
    # The x labels sit above their columns: the header's first cell is as wide as the y labels beside the rows.
    assert [row.children[0].value for row in rows] == ["Steps: 2", "Steps: 3"]
    assert {row.children[0].layout.width for row in rows} == {header.children[0].layout.width}
    assert form.detail.layout.display == "none"  # no empty (broken) image before a cell is shown
    form._slots[(7, 3, None)]["button"].click()
    assert form.detail.layout.display is None
    assert "CFG scale: 7" in form.detail_text.value and "Steps: 3" in form.detail_text.value
    assert form.detail_image.value and form.status.value == "Done: 4 cells, 4 generated."
    form.set_axis("y", "steps", "4")
    form.run()
    assert form.detail.layout.display == "none"  # the previous run's cell is not shown under the new grid


def test_code_reproduces_the_same_images_with_random_seeds_resolved():
    form = sk.SweepForm(BASE | {"seed": -1}, measure=False)
    form.set_axis("x", "sampler", "Euler a, DDIM")
    form.set_axis("y", "seed", "-1, 5")
    result = form.run()
    code = form.code()
    assert "'seed': -1" not in code and "-1]" not in code and "x=('sampler', ['Euler a', 'DDIM'])" in code
    namespace = {}
    exec(code, namespace)
    again = namespace["result"]
    assert [cell.png_sha256() for cell in again.cells] == [cell.png_sha256() for cell in result.cells]
    form.code_button.click()
    assert "result = sk.sweep(" in form.code_view.value


def test_interrupt_stops_after_the_batch_that_is_running(monkeypatch):
    batches = []
    real = sweep_executors.process_images
    monkeypatch.setattr(sweep_executors, "process_images", lambda p: batches.append(p.batch_size) or real(p))
    form = sk.SweepForm(BASE, measure=False)
    form.set_axis("x", "cfg_scale", "3, 7")
    form.set_axis("y", "steps", "2, 3")
    original = form._cell_finished
    form._cell_finished = lambda cell: (form.interrupt(), original(cell))
    assert form.run() is None and form.result is None
    assert batches == [2] and form.completed == 1
    assert form.status.value == "Interrupted: 1 of 4 cells finished."
    assert not form.run_button.disabled and form.interrupt_button.disabled


def test_the_run_button_runs_in_the_background_and_matches_sk_sweep():
    form = sk.SweepForm(BASE, measure=False)
    form.set_axis("x", "steps", "2, 4")
    form.run_button.click()
    form._thread.join(timeout=120)
    assert form.error is None and form.result is not None
    direct = sk.sweep(BASE, x=("steps", [2, 4]))
    assert [png_of(image) for image in form.result.images] == [png_of(image) for image in direct.images]


def test_bad_form_arguments_are_named():
    with pytest.raises(ValueError, match="^executor: expected 'local' or 'ray'"):
        sk.SweepForm(BASE, executor="dask", measure=False)
    with pytest.raises(ValueError, match="^threads: not an option of the form"):
        sk.SweepForm(BASE, threads=2, measure=False)
    form = sk.SweepForm(BASE, measure=False)
    with pytest.raises(ValueError, match="^x: 'styles' cannot be swept here"):
        form.set_axis("x", "styles", "a")


def test_changing_an_axis_after_a_run_shows_the_forms_code_and_none_clears_the_values():
    form = sk.SweepForm(BASE, measure=False)
    form.set_axis("x", "cfg_scale", "3, 7")
    form.set_axis("y", "sampler", "Euler a, DPM++ 2M")
    form.set_axis("z", "steps", "2, 3")
    form.run()
    assert "z=('steps', [2, 3])" in form.code()
    label = form.grid.children[0].children[3].children[0]  # the first z grid: title, x labels, y rows
    assert label.value == "Sampler: DPM++ 2M" and int(label.layout.width[:-2]) >= 8 * len(label.value)  # not cut
    form.code_button.click()
    form.set_axis("x", "cfg_scale", "1, 5")
    assert form.code_view.value == ""  # the last run's code is gone with the change
    assert "x=('cfg_scale', [1.0, 5.0])" in form.code() and "[3.0, 7.0]" not in form.code()
    form.axis_name["z"].value = "(none)"
    assert form.axis_values["z"].value == "" and "z=" not in form.code()
