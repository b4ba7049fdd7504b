"""Write down the tested environment: constraints.txt (the exact versions CI installs) and environment.yml.

    python scripts/lock.py           # rewrite both from the running venv and pyproject.toml
    python scripts/lock.py --check   # exit 1 if either differs from what they would be now

constraints.txt pins every distribution that Serena with all its extras needs, followed through their own
requirements, at the version installed in the running environment: the venv's `pip freeze`, limited to what Serena
uses and without Serena itself. environment.yml is derived from constraints.txt and pyproject.toml.
To move to newer versions: in a fresh venv, `pip install torch==NEW -e ".[notebook,api,ray,test]"` (without -c),
run the tests (bash scripts/test.sh), then `python scripts/lock.py` and commit both files.
"""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
ENVIRONMENT = ROOT / "environment.yml"
PYTHON_LINE = re.compile(r"^# Tested with Python (\d+\.\d+) on (\S+)\.$", re.MULTILINE)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def project_requirements(project: dict) -> list[Requirement]:
    """The project's own requirements with every extra (an extra that names the project itself is already in)."""
    texts = project["dependencies"] + [text for extra in project["optional-dependencies"].values() for text in extra]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if canonicalize_name(r.name) != canonicalize_name(project["name"])]


def applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def installed_closure(requirements: list[Requirement]) -> dict[str, str]:
    """{canonical name: installed version} of `requirements` and, recursively, of what they require here."""
    versions: dict[str, str] = {}
    pending = [(r.name, set(r.extras)) for r in requirements if applies(r, set())]
    done: set[tuple[str, frozenset]] = set()
    while pending:
        name, extras = pending.pop()
        key = (canonicalize_name(name), frozenset(extras))
        if key in done:
            continue
        done.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"lock: {name} is required but not installed; install Serena with all extras in this venv first")
        versions[key[0]] = distribution.version
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if applies(requirement, extras):
                pending.append((requirement.name, set(requirement.extras)))
    return versions


def constraints_text(versions: dict[str, str]) -> str:
    # A local label (torch's "+cpu") names a build; without it, "==" matches the CPU and the CUDA build alike.
    pins = [f"{name}=={Version(version).public}" for name, version in sorted(versions.items())]
    header = [
        "# The exact set Serena's CI installs and tests: pip install -c constraints.txt ...",
        "# Written by `python scripts/lock.py` from the tested venv (see that script to regenerate); do not edit.",
        f"# Tested with Python {platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}"
        f" on {sys.platform}-{platform.machine()}.",
    ]
    return "\n".join(header + pins) + "\n"


def environment_text(constraints: str, project: dict) -> str:
    python, system = PYTHON_LINE.search(constraints).groups()
    pins = [line for line in constraints.splitlines() if line and not line.startswith("#")]
    extras = ",".join(project["optional-dependencies"])
    lines = [
        "# Conda environment for Serena: constraints.txt (the set CI tests, all extras) in conda's Python.",
        "# Written by `python scripts/lock.py` from pyproject.toml and constraints.txt; do not edit.",
        f"# Tested on {system}; on Linux, pip's torch is the CUDA build (README: Installing).",
        "# Use: conda env create -f environment.yml && conda activate serena &&",
        f'#      pip install -e ".[{extras}]" --no-deps',
        f"name: {project['name']}",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={python}",
        "  - pip",
        "  - pip:",
        *[f"      - {pin}" for pin in pins],
    ]
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    project = pyproject()
    constraints = constraints_text(installed_closure(project_requirements(project)))
    return {CONSTRAINTS: constraints, ENVIRONMENT: environment_text(constraints, project)}


def main(argv: list[str]) -> int:
    expected = expected_files()
    if "--check" in argv:
        stale = [path.name for path, text in expected.items() if not path.exists() or path.read_text() != text]
        if stale:
            print(f"lock: out of date: {', '.join(stale)}; run python scripts/lock.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected.items():
        path.write_text(text)
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
