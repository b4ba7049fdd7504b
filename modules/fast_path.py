"""The fast path: optional speed-ups applied to a loaded model, switched on per load or by SERENA_FAST_PATH=1.

Each option says whether it can change pixels; those that do are written into the infotext ("Fast path: ..."), so
an image made on the fast path says so and a replay knows what it is comparing against.

- fused QKV projections (one matmul for query/key/value): changes float rounding;
- channels_last memory format: same maths, sometimes faster convolutions (measured slower at large batch on H200);
- torch.compile of the UNet, "reduce-overhead" mode captures CUDA graphs (removes launch overhead at small batch):
  changes float rounding; the first call per shape compiles (warm-up), and torch's inductor cache makes later
  processes faster (kept under SERENA_COMPILE_CACHE, default ~/.cache/serena/inductor);
- VAE slicing (decode a batch one image at a time) and tiling (decode large images in overlapping tiles) bound the
  decoder's memory for large images and batches: both can change pixels (tiling visibly at seams, slicing in
  rounding), so both are recorded;
- model CPU offload for small cards (weights move to the GPU per component): same pixels, slower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class FastPath:
    fuse_qkv: bool = True
    channels_last: bool = False
    compile_unet: bool = True
    compile_mode: str = "reduce-overhead"
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False

    def infotext_value(self) -> str | None:
        """The pixel-changing options in use, for the infotext; None when none is on."""
        pixel_changing = {
            "fused-qkv": self.fuse_qkv,
            "compile": self.compile_unet,
            "vae-slicing": self.vae_slicing,
            "vae-tiling": self.vae_tiling,
        }
        return "+".join(name for name, on in pixel_changing.items() if on) or None


def from_environment() -> FastPath | None:
    return FastPath() if os.environ.get("SERENA_FAST_PATH", "") not in ("", "0") else None


def compile_cache_dir() -> Path:
    return Path(os.environ.get("SERENA_COMPILE_CACHE", Path.home() / ".cache" / "serena" / "inductor"))


def apply(pipeline, options: FastPath, device: torch.device) -> None:
    """Apply `options` to a pipeline already on `device` (in place)."""
    if options.fuse_qkv:
        pipeline.unet.fuse_qkv_projections()
    if options.channels_last:
        pipeline.unet.to(memory_format=torch.channels_last)
    if options.compile_unet:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache_dir()))
        mode = options.compile_mode if device.type == "cuda" else None  # CUDA graphs exist only on CUDA
        pipeline.unet = torch.compile(pipeline.unet, mode=mode, fullgraph=True, dynamic=False)
    if options.vae_slicing:
        pipeline.vae.enable_slicing()
    if options.vae_tiling:
        pipeline.vae.enable_tiling()
    if options.cpu_offload and device.type == "cuda":
        pipeline.enable_model_cpu_offload(device=device)
