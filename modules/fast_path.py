"""The fast path: optional speed-ups applied to a loaded model, switched on per load or by SERENA_FAST_PATH=1.

Each option says whether it can change pixels; those that do are written into the infotext ("Fast path: ..."), so
an image made on the fast path says so and a replay knows what it is comparing against.

- fused QKV projections (one matmul for query/key/value): changes float rounding;
- channels_last memory format: same maths, sometimes faster convolutions (measured slower at large batch on H200);
- torch.compile of the UNet, "reduce-overhead" mode captures CUDA graphs (removes launch overhead at small batch):
  changes float rounding; the first call per shape compiles (warm-up), and torch's inductor cache makes later
  processes faster (kept under SERENA_COMPILE_CACHE, default ~/.cache/serena/inductor);
- torch.compile of the VAE decoder (no CUDA graphs: its activations are large): changes float rounding;
- attention backend: the scaled-dot-product-attention kernel family the UNet tries first ("flash", "efficient",
  "cudnn", "math"; the others stay as fallbacks for shapes it cannot take): changes float rounding;
- VAE slicing (decode a batch one image at a time) and tiling (decode large images in overlapping tiles) bound the
  decoder's memory for large images and batches: both can change pixels (tiling visibly at seams, slicing in
  rounding), so both are recorded;
- model CPU offload for small cards (weights move to the GPU per component): same pixels, slower.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# Option value -> torch.nn.attention.SDPBackend member.
ATTENTION_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}


@dataclass(frozen=True)
class FastPath:
    fuse_qkv: bool = True
    channels_last: bool = False
    compile_unet: bool = True
    compile_mode: str = "reduce-overhead"
    compile_vae: bool = False
    attention_backend: str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False

    def __post_init__(self):
        if self.attention_backend is not None and self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention_backend: {self.attention_backend!r}; allowed: None, {', '.join(ATTENTION_BACKENDS)}"
            )

    def infotext_value(self) -> str | None:
        """The pixel-changing options in use, for the infotext; None when none is on."""
        pixel_changing = {
            "fused-qkv": self.fuse_qkv,
            "compile": self.compile_unet,
            "compile-vae": self.compile_vae,
            f"sdpa-{self.attention_backend}": self.attention_backend is not None,
            "vae-slicing": self.vae_slicing,
            "vae-tiling": self.vae_tiling,
        }
        return "+".join(name for name, on in pixel_changing.items() if on) or None


def from_environment() -> FastPath | None:
    return FastPath() if os.environ.get("SERENA_FAST_PATH", "") not in ("", "0") else None


def compile_cache_dir() -> Path:
    return Path(os.environ.get("SERENA_COMPILE_CACHE", Path.home() / ".cache" / "serena" / "inductor"))


def with_attention_backend(forward, backend: str):
    """`forward` with `backend` first in SDPA's priority order. The context sits inside the function so that
    torch.compile traces it and bakes the choice into the graph (and into the graph's cache key)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    chosen = getattr(SDPBackend, ATTENTION_BACKENDS[backend])
    order = [chosen] + [getattr(SDPBackend, name) for name in ATTENTION_BACKENDS.values() if name != chosen.name]

    @functools.wraps(forward)
    def run(*args, **kwargs):
        with sdpa_kernel(order, set_priority=True):
            return forward(*args, **kwargs)

    return run


def apply(pipeline, options: FastPath, device: torch.device) -> None:
    """Apply `options` to a pipeline already on `device` (in place)."""
    denoiser_name = "transformer" if getattr(pipeline, "transformer", None) is not None else "unet"
    denoiser = getattr(pipeline, denoiser_name)
    if options.fuse_qkv:
        denoiser.fuse_qkv_projections()
    if options.channels_last:
        denoiser.to(memory_format=torch.channels_last)
    if options.attention_backend is not None:
        denoiser.forward = with_attention_backend(denoiser.forward, options.attention_backend)
    if options.compile_unet or options.compile_vae:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
    if options.compile_unet:
        mode = options.compile_mode if device.type == "cuda" else None  # CUDA graphs exist only on CUDA
        setattr(pipeline, denoiser_name, torch.compile(denoiser, mode=mode, fullgraph=True, dynamic=False))
    if options.compile_vae:
        pipeline.vae.decoder = torch.compile(pipeline.vae.decoder, fullgraph=True, dynamic=False)
    if options.vae_slicing:
        pipeline.vae.enable_slicing()
    if options.vae_tiling:
        pipeline.vae.enable_tiling()
    if options.cpu_offload and device.type == "cuda":
        pipeline.enable_model_cpu_offload(device=device)
