"""Driving a notebook open in JupyterLab from Playwright: what the JupyterLab browser tests share (the server itself
is the `jupyterlab` fixture in conftest.py)."""

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

SERVER_START_TIMEOUT_S = 60


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


def open_notebook(page, jupyterlab, name: str) -> None:
    """Open notebook `name` of the `jupyterlab` fixture's server in `page`."""
    base, token, _log = jupyterlab
    page.goto(f"{base}/lab/tree/{name}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel", timeout=SERVER_START_TIMEOUT_S * 1000)


def run_cells(page, command: str = "notebook:run-all-cells", active_cell: int | None = None) -> None:
    """A notebook command through JupyterLab's own command registry (Run > Run All Cells by default), awaited until
    its cells have executed. `active_cell`: the index of the cell to make active first (for "notebook:run-all-above",
    the first cell not run)."""
    page.wait_for_function("window.jupyterapp !== undefined", timeout=SERVER_START_TIMEOUT_S * 1000)
    page.evaluate(
        """async ([command, activeCell]) => {
            const app = window.jupyterapp;
            await app.restored;
            let panel = app.shell.currentWidget;
            for (let i = 0; i < 600 && !(panel && panel.sessionContext); i++) {
                await new Promise(resolve => setTimeout(resolve, 100));
                panel = app.shell.currentWidget;
            }
            await panel.context.ready;
            await panel.sessionContext.ready;
            if (activeCell !== null) {
                panel.content.activeCellIndex = activeCell;
            }
            await app.commands.execute(command);
        }""",
        [command, active_cell],
    )


def stderr_outputs(page) -> list[str]:
    """The text of every stderr output in the notebook (warnings, tracebacks printed by libraries)."""
    return page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()


def save_failure_evidence(page, screenshot: Path, log: Path) -> None:
    """A screenshot and the server log's tail, without hiding the failure if the page is gone too."""
    try:
        page.screenshot(path=str(screenshot), full_page=True)
        print(f"screenshot: {screenshot}")
    except Exception as error:
        print(f"no screenshot: {error}")
    print(f"JupyterLab log:\n{log.read_text()[-5000:]}")
