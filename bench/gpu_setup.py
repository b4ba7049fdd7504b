"""Install what the GPU benchmark needs and this Python lacks, and nothing else (bench/gpu_run.sh's first step).

A GPU machine brings its own CUDA torch and most packages, at versions other than this project's pins: those are
kept (a CUDA wheel is gigabytes, and the figures compare paths within one run). A missing package is installed at
its constraints.txt pin, from bench/wheels/ when that folder holds wheels (for machines without a package index; fill
it on a machine with one: `python bench/gpu_setup.py --download diffusers`), else from the package index.

    python bench/gpu_setup.py               # check and install
    python bench/gpu_setup.py --download diffusers [NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "bench" / "wheels"
# What `bench/gpu.py` imports, directly or through the engine (torch is checked by gpu_run.sh itself).
BENCH_PACKAGES = (
    "diffusers",
    "lark",
    "transformers",
    "tokenizers",
    "safetensors",
    "accelerate",
    "numpy",
    "pillow",
    "pyyaml",
)


def pins() -> dict[str, str]:
    """name -> requirement, from constraints.txt (the exact versions this project tests)."""
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {requirement.name.lower(): str(requirement) for requirement in requirements}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing(packages, requirements: dict[str, str], version_of=installed_version) -> list[str]:
    """The requirements of `packages` that are not installed at any version."""
    return [requirements[name] for name in packages if version_of(name) is None]


def pip_install_command(requirements: list[str], wheels: Path) -> list[str]:
    """From the carried wheels without an index (no dependency resolution there), else from the index."""
    command = [sys.executable, "-m", "pip", "install", "--quiet"]
    if any(wheels.glob("*.whl")):
        command += ["--no-index", "--no-deps", "--find-links", str(wheels)]
    return command + requirements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--download", nargs="+", metavar="NAME", help="fetch these packages' pinned wheels")
    args = parser.parse_args(argv)
    requirements = pins()
    if args.download:
        specs = [requirements[name.lower()] for name in args.download]
        return subprocess.call(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(WHEELS), *specs]
        )
    for name in BENCH_PACKAGES:
        version = installed_version(name)
        if version is not None and not Requirement(requirements[name]).specifier.contains(version):
            print(f"{name} {version} (this project pins {requirements[name]}): kept")
    needed = missing(BENCH_PACKAGES, requirements)
    if not needed:
        print("all benchmark packages present")
        return 0
    command = pip_install_command(needed, WHEELS)
    print("installing:", " ".join(command), flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
