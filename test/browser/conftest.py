"""JupyterLab for the notebook browser tests: the `jupyterlab` fixture serves a copy of the test module's
`lab_notebook`; jupyterlab_page.py drives it. Chromium (the `page` fixture) is set up in test/conftest.py."""

import os
import secrets
import shutil
import subprocess
import sys

import pytest
from helpers import unmeasured
from jupyterlab_page import free_port, wait_for_server


@pytest.fixture
def jupyterlab(tmp_path, lab_notebook):
    """A JupyterLab server on 127.0.0.1 serving a copy of `lab_notebook` (a fixture of the test module: the path of
    the notebook to open); yields (base url, token, log path)."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(lab_notebook, root / lab_notebook.name)  # the server autosaves: never touch the original
    port, token = free_port(), secrets.token_hex(16)
    # Unmeasured: coverage's hook slows a Python-heavy server (as the docs build); test/kit measures the widgets.
    environment = unmeasured() | {
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "OMP_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "HF_HUB_OFFLINE": "1",
    }
    # No "notified about official Jupyter news?" toast over the page (and its screenshots): the machine is offline.
    news = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')
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
