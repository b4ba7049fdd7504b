"""Where the model runs: CUDA, then MPS, then CPU; fp16 on CUDA, fp32 elsewhere. Both overridable.

SERENA_DEVICE ("cuda", "cuda:1", "mps", "cpu") and SERENA_DTYPE ("float16", "bfloat16", "float32") override the
choice for a whole process; `load_model(..., device=, dtype=)` overrides it for one load.
"""

from __future__ import annotations

import os

import torch

DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def default_device() -> torch.device:
    if os.environ.get("SERENA_DEVICE"):
        return torch.device(os.environ["SERENA_DEVICE"])
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"dtype: unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def default_dtype(device: torch.device) -> torch.dtype:
    if os.environ.get("SERENA_DTYPE"):
        return parse_dtype(os.environ["SERENA_DTYPE"])
    return torch.float16 if device.type == "cuda" else torch.float32
