"""pyproject.toml and environment.yml list the same packages, and the pins CI depends on hold."""

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def conda_pip_requirements():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    return sorted(requirement for section in pip_sections for requirement in section)


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = pyproject()["project"]
    extras = [requirement for name in ("test", "ray") for requirement in project["optional-dependencies"][name]]
    assert conda_pip_requirements() == sorted(project["dependencies"] + extras)


def test_torch_is_pinned_and_torchvision_is_absent():
    project = pyproject()["project"]
    everything = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert "torch==2.13.0" in project["dependencies"]
    assert not [requirement for requirement in everything if requirement.startswith("torchvision")]


def test_ci_runs_the_readme_test_command_and_ruff():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
    assert "ruff check" in ci and "lint-imports" in ci
    assert "--cov-fail-under=80" in (ROOT / "scripts" / "test.sh").read_text()
