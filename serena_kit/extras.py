"""The optional faces' dependencies, and the error that names the extra to install when one is missing.

The plain install is the engine and the CLI; the notebook widgets and plots, the REST API and Ray sweeps need
pyproject.toml's extras of the same names (test/test_packaging.py checks this table against pyproject.toml).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Top-level module -> the extra that installs it.
EXTRA_FOR_MODULE = {
    "ipywidgets": "notebook",
    "matplotlib": "notebook",
    "pandas": "notebook",
    "skimage": "notebook",
    "fastapi": "api",
    "uvicorn": "api",
    "psutil": "api",  # /sdapi/v1/memory
    "ray": "ray",
}
# Where a module's distribution is named otherwise.
DISTRIBUTION_FOR_MODULE = {"skimage": "scikit-image"}


class MissingExtraError(ImportError):
    """An optional face's dependency is not installed; the message names the extra that installs it."""


def missing_extra_message(feature: str, extra: str) -> str:
    # No "pip install serena[...]": a different project owns the name "serena" on PyPI.
    return f"{feature} needs Serena's optional extra '{extra}': pip install -e '.[{extra}]' in Serena's folder"


def require(module: str, feature: str) -> ModuleType:
    """Import `module` (e.g. "matplotlib.pyplot") for `feature`; MissingExtraError if its distribution is absent."""
    top = module.partition(".")[0]
    extra = EXTRA_FOR_MODULE[top]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != top and not (error.name or "").startswith(top + "."):
            raise  # the package is there but something it needs is broken: show that, not an install hint
        raise MissingExtraError(missing_extra_message(feature, extra)) from error
