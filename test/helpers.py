"""Small helpers the tests share."""

import functools
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


@functools.cache
def meta_tensor_count(class_name: str, config_file: str) -> int:
    """The tensors of a weights file (parameters and persistent buffers) of the architecture `config_file` describes,
    built on the meta device once per distinct config (T5-XXL's takes seconds to build and recurs)."""
    from pathlib import Path

    import diffusers
    import torch
    import transformers

    folder = Path(config_file).parent
    with torch.device("meta"):  # buffers too: SD 3.5's position table is not computed
        if hasattr(diffusers, class_name):
            cls = getattr(diffusers, class_name)
            module = cls.from_config(cls.load_config(folder))
        else:
            cls = getattr(transformers, class_name)
            module = cls(cls.config_class.from_pretrained(folder))
    tensors = {id(tensor): tensor for tensor in module.state_dict(keep_vars=True).values()}
    return sum(tensor.numel() for tensor in tensors.values())


def api_request(app, method: str, path: str, body=None):
    """One request to an app made by `modules.api.create_app`, in this process (no server)."""
    import asyncio

    import httpx

    async def call():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=60) as client:
            return await client.request(method, path, json=body)

    return asyncio.run(call())


def models_folder_fixtures(name: str, builds: dict):
    """Two fixtures for tests on models built into a temporary models folder: `<name>_root` (module-scoped: each of
    `builds`, folder name -> function of the folder, runs once; the model cache is cleared after the module, as
    later modules expect the default model in it) and `name` (points SERENA_MODELS_DIR at it for one test)."""
    import pytest

    from modules import sd_models

    @pytest.fixture(scope="module", name=f"{name}_root")
    def root(tmp_path_factory):
        folder = tmp_path_factory.mktemp(name)
        for model, build in builds.items():
            build(folder / "Stable-diffusion" / model)
        yield folder
        sd_models.model_cache.clear()

    @pytest.fixture(name=name)
    def models(request, monkeypatch):
        folder = request.getfixturevalue(f"{name}_root")
        monkeypatch.setenv("SERENA_MODELS_DIR", str(folder / "Stable-diffusion"))
        return folder

    return root, models
