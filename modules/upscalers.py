"""Upscalers with the webui's names: latent upscale modes (hires fix only), image upscalers, and ESRGAN-family model
files from `models/ESRGAN/` and `models/RealESRGAN/` (SERENA_ESRGAN_DIR, SERENA_REALESRGAN_DIR).

Model files run on the architectures written in modules.upscaler_models (ESRGAN's RRDBNet in both key layouts,
Real-ESRGAN x4plus/x2plus, SRVGGNetCompact), detected and sized from their keys: spandrel, which would load them,
requires torchvision, which Serena keeps out of its environment. A file none of those layouts fits is run by
spandrel where the user has installed it; without it, it is refused with that reason.
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


def models_dirs() -> list[Path]:
    return [
        Path(os.environ.get("SERENA_ESRGAN_DIR", "models/ESRGAN")),
        Path(os.environ.get("SERENA_REALESRGAN_DIR", "models/RealESRGAN")),
    ]


def model_files(folders: list[Path] | None = None) -> dict[str, Path]:
    """ESRGAN-family model files by name (file stem), in name order; the ESRGAN folder wins on a name clash."""
    found: dict[str, Path] = {}
    for folder in folders or models_dirs():
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.suffix in MODEL_SUFFIXES:
                    found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def spandrel_problem() -> str | None:
    """Why spandrel cannot run a model here, or None when it imports."""
    try:
        import spandrel  # noqa: F401
    except ImportError as error:
        return f"spandrel is not installed (it needs torchvision): {error}"
    return None


_loaded: dict[tuple, object] = {}
LOADED_MODELS = 2  # model upscalers kept loaded (a hires job upscales each image of its batch)


def load_model(path: Path):
    """The model in `path` (modules.upscaler_models; spandrel's for layouts Serena lacks, where it imports)."""
    from modules import upscaler_models

    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _loaded:
        try:
            model = upscaler_models.load_upscaler(path)
        except ValueError as error:
            if spandrel_problem():
                raise ValueError(f"{error}; {spandrel_problem()}") from None
            from spandrel import ModelLoader

            model = ModelLoader().load_from_file(str(path)).eval()
        while len(_loaded) >= LOADED_MODELS:
            _loaded.pop(next(iter(_loaded)))
        _loaded[key] = model
    return _loaded[key]


def model_scale(path: Path) -> float:
    """The scale the model's weights say (4 when the file cannot be read: it is refused when used)."""
    try:
        return float(load_model(path).scale)
    except (ValueError, OSError, RuntimeError):
        return 4.0


def image_upscalers() -> list[UpscalerInfo]:
    listed = [UpscalerInfo(name, scale=4 if name != "None" else 1) for name in IMAGE_UPSCALERS]
    listed += [
        UpscalerInfo(name, model_name=name, model_path=str(path), scale=model_scale(path))
        for name, path in model_files().items()
    ]
    return listed


def image_upscaler_names() -> list[str]:
    """The image upscalers' names in image_upscalers()'s order, without reading the model files for their scales."""
    return [*IMAGE_UPSCALERS, *model_files()]


def names() -> list[str]:
    """Every name `hr_upscaler` takes: the latent modes, then the image upscalers."""
    return [*LATENT_MODES, *image_upscaler_names()]


def check_name(field: str, name: str) -> None:
    valid = names()
    if name not in valid:
        raise ValueError(f"{field}: unknown upscaler {name!r}; valid: {', '.join(valid)}")


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


def upscale_with_model(image: Image.Image, path: Path, tile: int | None = None, overlap: int | None = None):
    """One pass of an ESRGAN-family model (its own scale) over `image`, in tiles of the webui's ESRGAN_tile and
    ESRGAN_tile_overlap (192 and 8 px; tile 0: the whole image at once)."""
    import numpy as np
    import torch

    from modules import upscaler_models

    model = load_model(path)
    tile = upscaler_models.DEFAULT_TILE if tile is None else tile
    overlap = upscaler_models.DEFAULT_TILE_OVERLAP if overlap is None else overlap
    if isinstance(model, upscaler_models.UpscalerModel):
        return upscaler_models.upscale(model, image.convert("RGB"), tile, overlap)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():  # spandrel's model: whole image
        output = model(pixels)[0].clamp(0, 1)
    return Image.fromarray((output.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
