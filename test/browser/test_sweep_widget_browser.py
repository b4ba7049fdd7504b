"""The sweep widget in a real browser: JupyterLab on 127.0.0.1, a small notebook made here, headless Chromium.

The test chooses two axes in the dropdowns, types their values in the webui's syntax, reads the parsed values and
the cell count the form shows, clicks Run and waits until every cell of the grid shows its image. It saves a
screenshot of the widget to build/screenshots/sweep_widget.png, then runs the notebook's last cell by keyboard: it
executes `form.code()` and prints whether that call made the same images (sha256 of each cell's PNG bytes, infotext
included) as the run the browser started.

Chromium, JupyterLab and the `page` fixture: conftest.py; driving the notebook: jupyterlab_page.py. On failure a
screenshot is saved as `failure.png` in the test's tmp folder and JupyterLab's log is printed.
"""

import re
from pathlib import Path

import nbformat
import pytest
from jupyterlab_page import open_notebook, run_cells, save_failure_evidence, stderr_outputs
from playwright.sync_api import expect

SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "sweep_widget.png"
# Hang guards only, generous for a shared 2-core machine; nothing here asserts a duration.
SETUP_TIMEOUT_S = 120  # JupyterLab's kernel, torch and serena_kit imported
KERNEL_REPLY_TIMEOUT_S = 30  # a typed value parsed in the kernel and shown
SWEEP_TIMEOUT_S = 180  # four 32 px cells of at most 8 steps
CHECK_TIMEOUT_S = 120  # the same sweep again from form.code()

X_AXIS, X_VALUES, X_PARSED = "CFG scale (cfg_scale)", "3, 7", "3.0, 7.0"
Y_AXIS, Y_VALUES, Y_PARSED = "Steps (steps)", "4-8 [2]", "4, 8"
CELLS = 4

SETUP = """\
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import serena_kit as sk  # first: it sets the portable CPU kernels before torch loads
import torch
from diffusers.utils import logging as diffusers_logging

torch.set_num_threads(1)
diffusers_logging.disable_progress_bar()"""

# The default model at its native size; seed -1, so the form must resolve the random seed for code() to repeat it.
FORM = """\
form = sk.SweepForm({"prompt": "a red circle on a blue background", "steps": 8, "seed": -1}, measure=False)
form"""

CHECK = """\
namespace = {}
exec(form.code(), namespace)
clicked = [cell.png_sha256() for cell in form.result.cells]
from_code = [cell.png_sha256() for cell in namespace["result"].cells]
print("SAME" if clicked == from_code else "DIFFERENT", len(clicked), len(from_code))"""
CHECK_CELL = 2

pytestmark = [pytest.mark.browser, pytest.mark.whole_machine]  # Chromium, Jupyter, a kernel


@pytest.fixture
def lab_notebook(tmp_path):
    """Setup, the form, and the check the test runs last (not part of Run All)."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in (SETUP, FORM, CHECK)]
    path = tmp_path / "source" / "sweep_widget.ipynb"
    path.parent.mkdir()
    nbformat.write(notebook, path)
    return path


def choose_axis(page, position: str, label: str, values: str) -> None:
    """Pick the axis in its dropdown and type its values key by key, as a user would."""
    page.locator(f".serena-axis-{position}-name select").select_option(label=label)
    box = page.locator(f".serena-axis-{position}-values input")
    box.click()
    box.press_sequentially(values)


def unfilled_cells(page) -> list[int]:
    """Indexes of the grid's images that are not (yet) a generated image: not loaded, or the form's uniformly grey
    placeholder. Each image is drawn into a canvas and its pixels compared with the placeholder's grey."""
    return page.locator(".serena-sweep-grid .serena-sweep-cell img").evaluate_all(
        """async images => {
            const unfilled = [];
            for (const [index, image] of images.entries()) {
                try { await image.decode(); } catch (error) { unfilled.push(index); continue; }
                const canvas = document.createElement("canvas");
                canvas.width = image.naturalWidth;
                canvas.height = image.naturalHeight;
                const context = canvas.getContext("2d");
                context.drawImage(image, 0, 0);
                const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
                let grey = true;
                for (let i = 0; i < pixels.length && grey; i += 4) {
                    grey = pixels[i] === 200 && pixels[i + 1] === 200 && pixels[i + 2] === 200;
                }
                if (grey || canvas.width === 0) unfilled.push(index);
            }
            return unfilled;
        }"""
    )


def column_offsets(page) -> list[int]:
    """Per x label of the grid's header: its left edge minus its column's (the first row's cell), in whole px."""
    return page.locator(".serena-sweep-grid").evaluate(
        """grid => {
            const [header, firstRow] = [...grid.querySelectorAll(".widget-hbox")].filter(
                row => row.parentElement.parentElement === grid);
            const labels = [...header.children].slice(1);
            const cells = [...firstRow.querySelectorAll(".serena-sweep-cell")];
            return labels.map((label, i) =>
                Math.round(label.getBoundingClientRect().left - cells[i].getBoundingClientRect().left));
        }"""
    )


def broken_images(form) -> list[str]:
    """The class names of the form's displayed images that did not load (a browser draws those as broken)."""
    return form.locator("img").evaluate_all(
        """images => images.filter(image => image.offsetParent !== null && !(image.complete && image.naturalWidth))
            .map(image => image.className)"""
    )


def test_sweep_widget_runs_in_jupyterlab_and_its_code_makes_the_same_images(jupyterlab, page, lab_notebook, tmp_path):
    _base, _token, log = jupyterlab
    try:
        open_notebook(page, jupyterlab, lab_notebook.name)
        run_cells(page, "notebook:run-all-above", active_cell=CHECK_CELL)  # setup and the form, not the check
        form = page.locator(".serena-sweep-form")
        form.wait_for(timeout=SETUP_TIMEOUT_S * 1000)
        assert stderr_outputs(page) == []

        # Two axes chosen and typed; the form shows each axis's parsed values and the cell count.
        choose_axis(page, "x", X_AXIS, X_VALUES)
        choose_axis(page, "y", Y_AXIS, Y_VALUES)
        reply = KERNEL_REPLY_TIMEOUT_S * 1000
        expect(page.locator(".serena-axis-x-preview")).to_have_text(X_PARSED, timeout=reply)
        expect(page.locator(".serena-axis-y-preview")).to_have_text(Y_PARSED, timeout=reply)
        expect(page.locator(".serena-sweep-summary")).to_have_text(f"{CELLS} cells", timeout=reply)
        run = page.locator(".serena-sweep-run")
        expect(run).to_be_enabled(timeout=reply)

        # Run: the grid is laid out with placeholders and filled as cells finish.
        run.click()
        status = page.locator(".serena-sweep-status")
        expect(status).to_have_text(f"Done: {CELLS} cells, {CELLS} generated.", timeout=SWEEP_TIMEOUT_S * 1000)
        expect(page.locator(".serena-sweep-progress-text")).to_have_text(f"{CELLS}/{CELLS} cells")
        cell_images = page.locator(".serena-sweep-grid .serena-sweep-cell img")
        assert cell_images.count() == CELLS
        page.wait_for_function(
            f"document.querySelectorAll('.serena-sweep-grid .serena-sweep-cell button:enabled').length === {CELLS}",
            timeout=reply,
        )
        assert unfilled_cells(page) == []
        grid_text = page.locator(".serena-sweep-grid").inner_text()
        for label in ("CFG scale: 3", "CFG scale: 7", "Steps: 4", "Steps: 8"):
            assert label in grid_text, grid_text
        offsets = column_offsets(page)
        assert len(offsets) == 2 and all(abs(offset) <= 4 for offset in offsets), offsets  # x labels over columns

        # A cell's button shows it large with its infotext (the last cell: CFG 7, 8 steps).
        page.locator(".serena-sweep-cell-button").last.click()
        expect(page.locator(".serena-sweep-detail-text")).to_contain_text("CFG scale: 7", timeout=reply)
        expect(page.locator(".serena-sweep-detail-text")).to_contain_text("Steps: 8")
        assert broken_images(form) == []
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        form.screenshot(path=str(SCREENSHOT))
        print(f"sweep widget screenshot: {SCREENSHOT}")

        # The check cell, run by keyboard: form.code() executed in the kernel makes the same images.
        check = page.locator(".jp-Notebook .jp-Cell").nth(CHECK_CELL)
        check.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        verdict = check.locator(".jp-OutputArea-output", has_text=re.compile(r"(SAME|DIFFERENT) \d+ \d+"))
        verdict.wait_for(timeout=CHECK_TIMEOUT_S * 1000)
        assert verdict.inner_text().strip() == f"SAME {CELLS} {CELLS}"
        assert stderr_outputs(page) == []
    except BaseException:
        save_failure_evidence(page, tmp_path / "failure.png", log)
        raise
