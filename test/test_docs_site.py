"""The documentation site (mkdocs.yml, scripts/build_docs.sh): built offline and strictly from the README, docs/ and
the notebooks' stored outputs; every notebook is a page, the README's links resolve, the sweep grid is the notebook's
own image and the model card's adherence tables are tables. Then the same build in a real browser: served by Python's
http.server on 127.0.0.1, opened in headless Chromium, the sweep notebook's grid image has loaded and the model card's
adherence tables are drawn (one build serves both)."""

import base64
import functools
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import yaml
from helpers import build_docs_site

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODEL_CARD = ROOT / "docs" / "default_model.md"
ADHERENCE_HEADER = "| sampler | CFG | colour | background | shape | all three |"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    build_docs_site(site_dir)
    return site_dir


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def stored_png_after_heading(notebook: Path, heading: str) -> bytes:
    """The first PNG a notebook's stored outputs show after the markdown cell that starts with `heading`."""
    cells = json.loads(notebook.read_text())["cells"]
    start = next(i for i, cell in enumerate(cells) if "".join(cell["source"]).startswith(heading))
    for cell in cells[start:]:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                return base64.b64decode(output["data"]["image/png"])
    raise AssertionError(f"no image after {heading!r} in {notebook.name}")


def test_every_notebook_is_in_the_nav_and_built(site):
    nav = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert [f"notebooks/{notebook.name}" for notebook in NOTEBOOKS] == [p for p in nav if p.startswith("notebooks/")]
    for notebook in NOTEBOOKS:
        assert (site / "notebooks" / f"{notebook.stem}.html").is_file()


def test_the_readme_is_the_home_page_and_its_links_resolve(site):
    home = (site / "index.html").read_text()
    assert "A notebook-first research toolkit" in home
    for page in ("default_model.html", "serena.html", "benchmarks.html"):
        assert f'href="{page}"' in home and (site / page).is_file()


def test_the_sweep_grid_is_the_notebooks_stored_image(site):
    html = (site / "notebooks" / "03_sweeps.html").read_text()
    section = html[html.index('<h2 id="cfg-scale-steps">') :]
    shown = re.search(r'<img [^>]*src="data:image/png;base64,([^"]+)"', section).group(1)
    assert base64.b64decode(shown) == stored_png_after_heading(ROOT / "notebooks" / "03_sweeps.ipynb", "## CFG scale")


def test_the_model_cards_adherence_tables_are_tables(site):
    expected = MODEL_CARD.read_text().count(ADHERENCE_HEADER)
    html = (site / "default_model.html").read_text()
    headers = re.findall(r"<table>\s*<thead>\s*<tr>(.*?)</tr>", html, flags=re.DOTALL)
    columns = ADHERENCE_HEADER.replace("|", " ").split()
    adherence = [header for header in headers if re.sub(r"<[^>]+>", " ", header).split() == columns]
    assert expected >= 1 and len(adherence) == expected


def adherence_headers() -> list[list[str]]:
    """The model card's adherence tables' header rows, as written in its Markdown."""
    rows = [line for line in MODEL_CARD.read_text().splitlines() if line.startswith("| sampler | CFG |")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would bury a failure's output
        pass


@pytest.fixture(scope="module")
def site_url(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_the_sweep_grid_is_shown_on_the_sweeps_page(site_url, page):
    page.goto(f"{site_url}/notebooks/03_sweeps.html", wait_until="load")
    grid = page.locator("xpath=//h2[@id='cfg-scale-steps']/following::img[1]")
    grid.wait_for()
    width, height = grid.evaluate("image => [image.complete && image.naturalWidth, image.naturalHeight]")
    assert width > 0 and height > 0


@pytest.mark.browser
def test_the_model_cards_adherence_tables_are_drawn(site_url, page):
    page.goto(f"{site_url}/default_model.html", wait_until="load")
    headers = page.locator("table thead tr").evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.innerText.trim()))"
    )
    expected = adherence_headers()
    assert expected and [header for header in headers if header in expected] == expected, headers
    assert page.get_by_role("cell", name="Euler a").first.is_visible()
