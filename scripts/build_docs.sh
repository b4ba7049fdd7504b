#!/usr/bin/env bash
# The documentation site, offline, into build/site: the README, docs/ and the notebooks with their stored outputs
# (mkdocs.yml; nothing is executed). --strict: a broken link or a page missing from the build fails it. Run it in the
# project's venv (the docs extra, which test includes). Extra arguments go to `mkdocs build`, e.g. --site-dir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m mkdocs build --strict "$@"
