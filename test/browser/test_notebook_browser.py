"""The widget form in a real browser: JupyterLab on 127.0.0.1, notebook 02 in headless Chromium (Playwright).

nbval cannot click buttons; this test does. It runs the notebook's cells, clicks Generate and waits for the image
in the gallery and the progress bar at 100 %, then starts a long job and stops it with the Interrupt button.

Chromium and the `page` fixture: conftest.py. Select it with `pytest -m browser` (or `pytest test/browser`). On
failure a screenshot is saved as `failure.png` in the test's tmp folder and JupyterLab's log is printed.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "02_widgets.ipynb"
SERVER_START_TIMEOUT_S = 60
RUN_ALL_TIMEOUT_S = 90
GENERATION_TIMEOUT_S = 60

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"JupyterLab did not answer {url} in {SERVER_START_TIMEOUT_S} s:\n{log.read_text()}")


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on 127.0.0.1 serving a copy of notebook 02; yields (base url, token)."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # the server autosaves: never touch the committed notebook
    port, token = free_port(), secrets.token_hex(16)
    environment = os.environ | {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "OMP_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_OFFLINE": "1",
    }
    log = tmp_path / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp_path / 'lab-settings'}",
        f"--LabApp.workspaces_dir={tmp_path / 'lab-workspaces'}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells through JupyterLab's own commands
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries for extensions
    ]
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    with open(log, "wb") as log_file:
        server = subprocess.Popen(command, cwd=root, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_server(f"{base}/api/status?token={token}", server, log)
        yield base, token, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_all_cells(page) -> None:
    """What Run > Run All Cells does, awaited until every cell has executed."""
    page.wait_for_function("window.jupyterapp !== undefined", timeout=SERVER_START_TIMEOUT_S * 1000)
    page.evaluate(
        """async () => {
            const app = window.jupyterapp;
            await app.restored;
            let panel = app.shell.currentWidget;
            for (let i = 0; i < 600 && !(panel && panel.sessionContext); i++) {
                await new Promise(resolve => setTimeout(resolve, 100));
                panel = app.shell.currentWidget;
            }
            await panel.context.ready;
            await panel.sessionContext.ready;
            await app.commands.execute("notebook:run-all-cells");
        }"""
    )


def progress_percent(page) -> float:
    """The progress bar's drawn width, in % (ipywidgets draws IntProgress as a bar of that width)."""
    width = page.locator(".serena-progress .progress-bar").evaluate("bar => bar.style.width")
    return float(width.rstrip("%"))


def set_number(page, css_class: str, value: int) -> None:
    """Type into a number widget and commit it with Enter, which syncs the value to the kernel."""
    field = page.locator(f".{css_class} input")
    field.fill(str(value))
    field.press("Enter")


def save_failure_evidence(page, screenshot: Path, log: Path) -> None:
    """A screenshot and the server log's tail, without hiding the failure if the page is gone too."""
    try:
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
    except Exception as error:
        print(f"no screenshot: {error}")
    print(f"JupyterLab log:\n{log.read_text()[-5000:]}")


def test_generate_and_interrupt_buttons_in_jupyterlab(jupyterlab, page, tmp_path):
    base, token, log = jupyterlab
    try:
        page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
        page.wait_for_selector(".jp-NotebookPanel", timeout=SERVER_START_TIMEOUT_S * 1000)
        run_all_cells(page)
        form = page.locator(".serena-form")
        form.wait_for(timeout=RUN_ALL_TIMEOUT_S * 1000)
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        assert errors.count() == 0, errors.all_inner_texts()

        # A click generates: the image appears in the gallery, the bar reaches 100 %.
        set_number(page, "serena-seed", 4242)
        page.locator(".serena-generate").click()
        page.locator(".serena-infotext", has_text="Seed: 4242,").wait_for(timeout=GENERATION_TIMEOUT_S * 1000)
        page.locator(".serena-status", has_text="Done: 2 images. Seed 4242.").wait_for()
        assert page.locator(".serena-gallery img").count() == 2
        assert progress_percent(page) == 100
        assert page.locator(".serena-progress-text").inner_text().startswith("100%")

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
