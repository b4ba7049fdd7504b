"""Packaging: ranges in pyproject.toml, the tested set in constraints.txt (this very environment), environment.yml
derived from both, extras that match the faces, and CI running the README's commands."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from serena_kit.extras import DISTRIBUTION_FOR_MODULE, EXTRA_FOR_MODULE, MissingExtraError, require

ROOT = Path(__file__).resolve().parent.parent


def load_lock_script():
    spec = importlib.util.spec_from_file_location("lock", ROOT / "scripts" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = load_lock_script()


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements) -> set[str]:
    return {Requirement(text).name for text in requirements}


def test_the_tested_environment_is_exactly_constraints_txt():
    """Everything Serena needs here is pinned at its installed version (add a dependency, rerun scripts/lock.py)."""
    assert (ROOT / "constraints.txt").read_text() == lock.expected_files()[lock.CONSTRAINTS]


def test_environment_yml_is_what_the_lock_script_writes():
    constraints = (ROOT / "constraints.txt").read_text()
    written = lock.environment_text(constraints, pyproject())
    assert (ROOT / "environment.yml").read_text() == written
    assert "  - python=3.11\n" in written and "      - torch==2.13.0\n" in written


def test_dependencies_are_ranges_and_torch_pins_no_build():
    project = pyproject()
    for text in project["dependencies"]:
        assert not any(spec.operator == "==" for spec in Requirement(text).specifier), text
    constraints = (ROOT / "constraints.txt").read_text()
    assert "\ntorch==2.13.0\n" in constraints and "+cpu" not in constraints  # the CPU and CUDA builds both match


def test_torchvision_is_absent():
    project = pyproject()
    extras = project["optional-dependencies"].values()
    assert "torchvision" not in names(project["dependencies"] + [text for extra in extras for text in extra])
    assert "torchvision==" not in (ROOT / "constraints.txt").read_text()


def test_extras_match_the_faces():
    project = pyproject()
    extras = project["optional-dependencies"]
    assert {"notebook", "api", "ray", "test"} <= set(extras)
    assert {"jupyterlab", "ipywidgets", "matplotlib", "pandas"} <= names(extras["notebook"])
    assert names(extras["api"]) == {"fastapi", "uvicorn", "psutil"}
    for module, extra in EXTRA_FOR_MODULE.items():  # the table that names a missing extra agrees with pyproject
        distribution = DISTRIBUTION_FOR_MODULE.get(module, module)
        assert distribution in names(extras[extra]) and distribution not in names(project["dependencies"])


def test_a_missing_extra_is_named(monkeypatch):
    for name in ("matplotlib", "matplotlib.pyplot"):  # as if the notebook extra were not installed (even if an
        monkeypatch.setitem(sys.modules, name, None)  # earlier test imported it)
    with pytest.raises(MissingExtraError, match=r"^Plotting needs Serena's optional extra 'notebook': pip install"):
        require("matplotlib.pyplot", "Plotting")


def test_serena_kit_and_the_cli_import_without_the_optional_extras():
    blocked = sorted(EXTRA_FOR_MODULE)
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r}))\n"
        "import serena_kit as sk, serena_kit.cli as cli\n"
        "cli.build_parser().parse_args(['txt2img', '--prompt', 'x'])\n"
        "try:\n    sk.GenerationForm\nexcept ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The widget form (GenerationForm) needs Serena's optional extra 'notebook'")


def test_ci_runs_the_readme_commands_and_the_wheel_check():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = '-c constraints.txt -e ".[test,ray]"'
    for command in (install, "bash scripts/test.sh"):
        assert command in readme and command in ci
    assert 'pip install -c constraints.txt -e ".[notebook]" && serena txt2img' in readme  # command 1
    assert "ruff check" in ci and "lint-imports" in ci and "bash scripts/check_wheel.sh" in ci
    assert "--cov-fail-under=80" in (ROOT / "scripts" / "test.sh").read_text()
