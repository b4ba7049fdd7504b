"""The built documentation site in a real browser: served by Python's http.server on 127.0.0.1, opened in headless
Chromium; the sweep notebook's grid image has loaded and the model card's adherence tables are drawn."""

import functools
import http.server
import threading
from pathlib import Path

import pytest
from helpers import build_docs_site

pytestmark = [pytest.mark.browser, pytest.mark.whole_machine]  # Chromium, Jupyter, a kernel
MODEL_CARD = Path(__file__).resolve().parents[2] / "docs" / "default_model.md"


def adherence_headers() -> list[list[str]]:
    """The model card's adherence tables' header rows, as written in its Markdown."""
    rows = [line for line in MODEL_CARD.read_text().splitlines() if line.startswith("| sampler | CFG |")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would bury a failure's output
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    build_docs_site(site_dir)
    handler = functools.partial(QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_sweep_grid_is_shown_on_the_sweeps_page(site_url, page):
    page.goto(f"{site_url}/notebooks/03_sweeps.html", wait_until="load")
    grid = page.locator("xpath=//h2[@id='cfg-scale-steps']/following::img[1]")
    grid.wait_for()
    width, height = grid.evaluate("image => [image.complete && image.naturalWidth, image.naturalHeight]")
    assert width > 0 and height > 0


def test_the_model_cards_adherence_tables_are_drawn(site_url, page):
    page.goto(f"{site_url}/default_model.html", wait_until="load")
    headers = page.locator("table thead tr").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))"
    )
    expected = adherence_headers()
    assert expected and [header for header in headers if header in expected] == expected, headers
    assert page.get_by_role("cell", name="Euler a").first.is_visible()
