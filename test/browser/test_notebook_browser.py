"""The widget form in a real browser: JupyterLab on 127.0.0.1, notebook 02 in headless Chromium (Playwright).

nbval cannot click buttons; this test does. It runs the notebook's cells, clicks Generate and waits for the image
in the gallery and the progress bar at 100 %, then starts a long job and stops it with the Interrupt button.

Chromium, JupyterLab and the `page` fixture: conftest.py; driving the notebook: jupyterlab_page.py. Select it with
`pytest -m browser` (or `pytest test/browser`). On failure a screenshot is saved as `failure.png` in the test's tmp
folder and JupyterLab's log is printed.
"""

from pathlib import Path

import pytest
from jupyterlab_page import open_notebook, run_cells, save_failure_evidence, stderr_outputs

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_widgets.ipynb"
RUN_ALL_TIMEOUT_S = 90
GENERATION_TIMEOUT_S = 60

pytestmark = [pytest.mark.browser, pytest.mark.whole_machine]  # Chromium, Jupyter, a kernel


@pytest.fixture
def lab_notebook():
    """The notebook the `jupyterlab` fixture serves (a copy of it)."""
    return NOTEBOOK


def progress_percent(page) -> float:
    """The progress bar's drawn width, in % (ipywidgets draws IntProgress as a bar of that width)."""
    width = page.locator(".serena-progress .progress-bar").evaluate("bar => bar.style.width")
    return float(width.rstrip("%"))


def set_number(page, css_class: str, value: int) -> None:
    """Type into a number widget and commit it with Enter, which syncs the value to the kernel."""
    field = page.locator(f".{css_class} input")
    field.fill(str(value))
    field.press("Enter")


def test_generate_and_interrupt_buttons_in_jupyterlab(jupyterlab, page, tmp_path):
    _base, _token, log = jupyterlab
    try:
        open_notebook(page, jupyterlab, NOTEBOOK.name)
        run_cells(page)
        page.locator(".serena-form").wait_for(timeout=RUN_ALL_TIMEOUT_S * 1000)
        assert stderr_outputs(page) == []

        # A click generates: the image appears in the gallery, the bar reaches 100 %.
        set_number(page, "serena-seed", 4242)
        page.locator(".serena-generate").click()
        page.locator(".serena-infotext", has_text="Seed: 4242,").wait_for(timeout=GENERATION_TIMEOUT_S * 1000)
        page.locator(".serena-status", has_text="Done: 2 images. Seed 4242.").wait_for()
        assert page.locator(".serena-gallery img").count() == 2
        assert progress_percent(page) == 100
        assert page.locator(".serena-progress-text").inner_text().startswith("100%")
        # The captions break lines between words, whatever JupyterLab's stylesheet says of <pre>.
        caption = page.locator(".serena-infotext pre").first
        assert caption.evaluate("e => getComputedStyle(e).wordBreak") == "normal"
        assert caption.evaluate("e => getComputedStyle(e).overflowWrap") in ("break-word", "anywhere")

        # A long job stopped by the Interrupt button ends early, short of 100 %.
        set_number(page, "serena-steps", 1000)
        set_number(page, "serena-n-iter", 10)  # 10 batches of 2 x 1000 steps: minutes, if not interrupted
        page.locator(".serena-generate").click()
        page.locator(".serena-progress-text", has_text="step").wait_for(timeout=GENERATION_TIMEOUT_S * 1000)
        page.locator(".serena-interrupt").click()
        page.locator(".serena-status", has_text="Interrupted").wait_for(timeout=GENERATION_TIMEOUT_S * 1000)
        # Stopped within the first of the 10 batches: the interrupt did not wait for a batch (or the job) to end.
        assert progress_percent(page) < 10
        assert page.locator(".serena-status").inner_text().startswith("Interrupted: 0 images finished.")
        assert page.locator(".serena-gallery img").count() == 0
        assert page.locator(".serena-generate").is_enabled()
    except BaseException:
        save_failure_evidence(page, tmp_path / "failure.png", log)
        raise
