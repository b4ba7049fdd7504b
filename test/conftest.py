"""Shared test setup: portable CPU kernels whatever the default, one torch thread, outputs in tmp folders; headless
Chromium for the tests marked `browser`: Debian's `chromium` (/usr/bin/chromium) driven by Playwright, no browser
download (without it those tests are skipped)."""

import os
from pathlib import Path

# The suite always runs with portable kernels (the committed goldens and notebook hashes are made that way), and
# they must be set before torch loads: importing modules does it. Child processes (CLI, server, kernels) inherit it.
os.environ.pop("SERENA_CPU_KERNELS", None)
import modules  # noqa: E402, F401

# isort: split
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)  # the default for reproducible timings; bytes do not depend on it in portable mode
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def isolated_workdir(tmp_path, monkeypatch):
    """Relative output folders and styles.csv resolve inside the test's tmp folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SERENA_STYLES", raising=False)
    monkeypatch.delenv("SERENA_MODELS_DIR", raising=False)
    return tmp_path


@pytest.fixture(autouse=True)
def plain_path_after_each_test():
    """A test that switched the fast path on must not leave it on for the next (it changes pixels)."""
    yield
    from modules import sd_models

    if sd_models.model_cache.loaded is not None and sd_models.model_cache.loaded.fast_path is not None:
        sd_models.model_cache.clear()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",  # the machine is offline: no update, sync or component traffic
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items):
    if CHROMIUM.exists():
        return
    missing = pytest.mark.skip(reason="needs Debian's chromium at /usr/bin/chromium")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(missing)


@pytest.fixture
def page(tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
