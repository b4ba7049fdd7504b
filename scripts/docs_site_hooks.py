"""MkDocs hooks (mkdocs.yml): the site's pages that live outside docs/, the README as the home page and the notebooks.

MkDocs reads pages from one docs_dir and refuses a site_dir inside it, so docs_dir stays docs/ and these files join
the build from the repository root, at the same paths (MkDocs serves a README.md as its folder's index.html);
mkdocs-jupyter renders the notebooks from their stored outputs.
"""

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
HOME = "README.md"


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the notebooks into pages
def on_files(files, config):
    notebooks = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "notebooks").glob("*.ipynb"))
    for source in [HOME, *notebooks]:
        files.append(File(source, str(ROOT), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown, page, config, files):
    # The README links to docs/x.md from the repository root; on the site it is the home page beside x.md.
    return markdown.replace("](docs/", "](") if page.file.src_uri == HOME else markdown
