"""Small helpers the tests share."""

import hashlib
import io
import os

import numpy as np


def png_of(image) -> bytes:
    """The bytes the engine would save for `image` (its infotext included)."""
    from modules.images import png_bytes

    return png_bytes(image, image.info.get("parameters"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def max_pixel_difference(a, b) -> int:
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def load_png(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))


def png_files(folder):
    """{relative path: bytes} of every PNG under `folder`."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.png"))}


def build_docs_site(site_dir) -> None:
    """The README's command for the documentation site, `bash scripts/build_docs.sh`, into `site_dir`."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # Unmeasured: the build runs no Serena code, and coverage's hook made it slower (15-18 s against 8-11 s).
    venv_first = unmeasured() | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = ["bash", "scripts/build_docs.sh", "--site-dir", str(site_dir)]
    result = subprocess.run(command, cwd=root, env=venv_first, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def base_weights(module) -> dict:
    """A module's own parameters, under their base names whether or not PEFT wrapped it (LoRA tests)."""
    return {
        name.replace(".base_layer", ""): parameter.detach().clone()
        for name, parameter in module.named_parameters()
        if "lora_" not in name
    }


COVERAGE_HOOK = "COVERAGE_PROCESS_CONFIG"  # set by coverage's subprocess patch (pyproject: patch = ["subprocess"])


def unmeasured(environment: dict | None = None) -> dict:
    """An environment for a child process that coverage's hook would only slow down (2x for a torch process): one
    killed with SIGKILL (it never writes its data), one re-running engine code the suite measures in-process, or one
    running none of it (the docs build, JupyterLab's server)."""
    return {
        key: value
        for key, value in (os.environ if environment is None else environment).items()
        if key != COVERAGE_HOOK
    }


# The default model's 12 adherence captions (shape, colour, background) with a seed each: every shape, every colour as
# shape and as background at least once.
ADHERENCE_CASES = [
    ("circle", "red", "blue", 0),
    ("square", "green", "white", 1),
    ("triangle", "blue", "yellow", 2),
    ("circle", "yellow", "black", 3),
    ("square", "white", "purple", 4),
    ("triangle", "black", "orange", 5),
    ("circle", "orange", "green", 6),
    ("square", "purple", "red", 7),
    ("triangle", "red", "white", 8),
    ("circle", "blue", "orange", 9),
    ("square", "black", "yellow", 10),
    ("triangle", "green", "purple", 11),
]
