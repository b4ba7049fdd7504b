"""Upscalers with the webui's names: latent upscale modes (hires fix only), image upscalers, and ESRGAN-family model
files from `models/ESRGAN/` (through spandrel, an optional extra).

spandrel's package imports its whole architecture registry, two of whose architectures (LaMa, RestoreFormer) import
torchvision, and spandrel requires torchvision; Serena keeps torchvision out of its environment, so spandrel is not a
Serena dependency or extra. Model files are listed and used where the user has installed spandrel themselves; without
it, choosing one is refused with that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# The webui's latent upscale modes: torch.nn.functional.interpolate's mode and antialias.
LATENT_MODES = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_LATENT_MODE = "Latent"

# Image upscalers built on PIL's filters; "None" resizes too (the webui's resize_image does, with Lanczos).
IMAGE_UPSCALERS = {"None": Image.LANCZOS, "Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
MODEL_SUFFIXES = (".pth", ".safetensors")


@dataclass(frozen=True)
class UpscalerInfo:
    """One entry of GET /sdapi/v1/upscalers (the webui's shape)."""

    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float = 4


def models_dir() -> Path:
    return Path(os.environ.get("SERENA_ESRGAN_DIR", "models/ESRGAN"))


def model_files(folder: Path | None = None) -> dict[str, Path]:
    """ESRGAN-family model files by name (file stem), in name order."""
    folder = folder or models_dir()
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in sorted(folder.iterdir()) if path.suffix in MODEL_SUFFIXES}


def spandrel_problem() -> str | None:
    """Why model upscalers cannot run here, or None when spandrel imports."""
    try:
        import spandrel  # noqa: F401
    except ImportError as error:
        return f"model upscalers need spandrel, which needs torchvision (pip install spandrel): {error}"
    return None


def image_upscalers() -> list[UpscalerInfo]:
    listed = [UpscalerInfo(name, scale=4 if name != "None" else 1) for name in IMAGE_UPSCALERS]
    listed += [UpscalerInfo(name, model_name=name, model_path=str(path)) for name, path in model_files().items()]
    return listed


def names() -> list[str]:
    """Every name `hr_upscaler` takes: the latent modes, then the image upscalers."""
    return [*LATENT_MODES, *(info.name for info in image_upscalers())]


def check_name(field: str, name: str) -> None:
    valid = names()
    if name not in valid:
        raise ValueError(f"{field}: unknown upscaler {name!r}; valid: {', '.join(valid)}")
    if name in model_files() and (problem := spandrel_problem()):
        raise ValueError(f"{field}: {name}: {problem}")


def is_latent(name: str) -> bool:
    return name in LATENT_MODES


def upscale_latents(latents, height: int, width: int, mode_name: str):
    """Latents resized to (height, width) latent pixels with a latent mode, as the webui's hires fix does."""
    import torch

    mode, antialias = LATENT_MODES[mode_name]
    return torch.nn.functional.interpolate(latents, size=(height, width), mode=mode, antialias=antialias)


def upscale_image(image: Image.Image, width: int, height: int, name: str) -> Image.Image:
    """`image` resized to width x height with an image upscaler (a model upscales first, then PIL fits the size)."""
    if name in model_files():
        image = upscale_with_model(image, model_files()[name])
    if image.size == (width, height):
        return image
    return image.resize((width, height), IMAGE_UPSCALERS.get(name, Image.LANCZOS))


def upscale_with_model(image: Image.Image, path: Path) -> Image.Image:
    """One pass of an ESRGAN-family model (its own scale) over `image`."""
    import numpy as np
    import torch

    problem = spandrel_problem()
    if problem:
        raise RuntimeError(problem)
    from spandrel import ModelLoader

    descriptor = ModelLoader().load_from_file(str(path)).eval()
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        output = descriptor(pixels)[0].clamp(0, 1)
    return Image.fromarray((output.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
