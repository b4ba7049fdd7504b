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


def memory_report() -> dict:
    """RAM and CUDA memory in bytes, in the webui's /sdapi/v1/memory shape ("cuda" holds an "error" without CUDA)."""
    import psutil

    ram = psutil.virtual_memory()
    report = {"ram": {"free": ram.available, "used": ram.total - ram.available, "total": ram.total}}
    if not torch.cuda.is_available():
        return report | {"cuda": {"error": "CUDA is not available"}}
    free, total = torch.cuda.mem_get_info()
    stats = torch.cuda.memory_stats()

    def current_and_peak(name: str) -> dict:
        return {"current": stats.get(f"{name}.all.current", 0), "peak": stats.get(f"{name}.all.peak", 0)}

    return report | {
        "cuda": {
            "system": {"free": free, "used": total - free, "total": total},
            "active": current_and_peak("active_bytes"),
            "allocated": current_and_peak("allocated_bytes"),
            "reserved": current_and_peak("reserved_bytes"),
            "inactive": current_and_peak("inactive_split_bytes"),
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    }
