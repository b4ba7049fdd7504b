"""Forge's "additional modules": text encoders and VAEs in files of their own that a single-file SD 3 or FLUX
checkpoint is loaded with (BFL's FLUX files hold the transformer alone; SAI's SD 3.5 files lack the text encoders).

A job names them in `additional_modules` (Forge's option `forge_additional_modules`, which clients send as full
paths: a path is matched by its file name), from the text-encoder folder (`SERENA_TEXT_ENCODER_DIR`, default
`models/text_encoder`) and the VAE folder. They are part of the loaded model: the same checkpoint with other modules
is another model. The infotext writes them as Forge does ("Module 1: ae, Module 2: clip_l, ...").
"""

from __future__ import annotations

from pathlib import Path

from modules import sd_models
from modules.transformer_single_file import text_encoder_dir

FIELD = "additional_modules"


def list_modules() -> list[Path]:
    """The module files: text encoders, then VAEs (`GET /sdapi/v1/sd-modules`)."""
    folder = text_encoder_dir()
    encoders = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".safetensors") if folder.is_dir() else []
    return encoders + sd_models.list_vaes()


def resolve(names) -> tuple[Path, ...]:
    """The files `names` select (a path, a file name or its stem); ValueError naming the field and the choices."""
    if not names:
        return ()  # most jobs: no folder is read
    files = list_modules()
    chosen = []
    for index, name in enumerate(names or ()):
        wanted = Path(str(name)).name
        found = next((path for path in files if wanted in (path.name, path.stem)), None)
        if found is None:
            choices = ", ".join(path.name for path in files) or "none"
            raise ValueError(
                f"{FIELD}[{index}]: {name!r} is not a module file in {text_encoder_dir()} or {sd_models.vae_dir()}; "
                f"allowed: {choices}"
            )
        chosen.append(found.resolve())
    return tuple(chosen)
