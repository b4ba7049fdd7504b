"""Candidate speed-ups of the fast path (issue 20) as named knobs, each measured by `bench/gpu.py --variants`.

A variant is one knob or several joined by '+' (e.g. "channels-last+cudnn-benchmark"), applied on top of the fast
path's defaults (fused QKV + torch.compile "reduce-overhead"). Every variant is a fresh load and compile of the
benchmark model, timed and image-checked against the default path in the same run. `seconds` is a rough prior for
a fresh H200 (load, compile, warm-up and timed calls), used only to skip what would not fit a time budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import torch

from modules.fast_path import FastPath


@dataclass(frozen=True)
class Knob:
    help: str
    fast_path: dict = field(default_factory=dict)  # FastPath fields it sets
    dtype: torch.dtype | None = None
    cudnn_benchmark: bool = False
    needs_cuda: bool = False  # the backend or flag exists only there
    needs_compile: bool = False  # changes how torch.compile runs (the CPU smoke test does not compile)
    seconds: int = 45


KNOBS = {
    "cudnn-benchmark": Knob(
        "torch.backends.cudnn.benchmark: cuDNN times its convolution algorithms once per shape",
        cudnn_benchmark=True,
        needs_cuda=True,
        seconds=40,
    ),
    "channels-last": Knob(
        "UNet in channels_last (NHWC) before compile: no NCHW<->NHWC transposes around cuDNN convolutions",
        {"channels_last": True},
        seconds=60,
    ),
    "sdpa-cudnn": Knob("attention: cuDNN's fused kernel first", {"attention_backend": "cudnn"}, needs_cuda=True),
    "sdpa-efficient": Knob(
        "attention: the memory-efficient (xFormers-style) kernel first",
        {"attention_backend": "efficient"},
        needs_cuda=True,
    ),
    "sdpa-flash": Knob("attention: FlashAttention-2 first", {"attention_backend": "flash"}),
    "sdpa-math": Knob("attention: plain matmul + softmax first (the reference maths)", {"attention_backend": "math"}),
    "compile-vae": Knob(
        "VAE decoder compiled too (no CUDA graphs): shows in decode time and end-to-end images/s",
        {"compile_vae": True},
        needs_compile=True,
        seconds=60,
    ),
    "bf16": Knob("bfloat16 weights and activations instead of float16", dtype=torch.bfloat16, seconds=60),
    "no-cudagraphs": Knob(
        'torch.compile mode "default": the same kernels without CUDA graphs (their worth at batch 16)',
        {"compile_mode": "default"},
        needs_compile=True,
    ),
    "max-autotune": Knob(
        'torch.compile mode "max-autotune": benchmarks Triton/cuBLAS matmul and conv choices (slow to compile)',
        {"compile_mode": "max-autotune"},
        needs_compile=True,
        seconds=300,
    ),
}

# Most likely wins first, so a time budget cuts the least promising. The eager H200 profile (torch 2.11) already ran
# cuDNN's attention kernels, so "sdpa-cudnn" is probably what the fast path does anyway and "sdpa-flash" the change.
DEFAULT_VARIANTS = [
    "channels-last",
    "compile-vae",
    "sdpa-flash",
    "cudnn-benchmark",
    "bf16",
    "sdpa-efficient",
    "no-cudagraphs",
    "sdpa-cudnn",
    "sdpa-math",
    "max-autotune",
]


@dataclass(frozen=True)
class Variant:
    name: str
    knobs: tuple[Knob, ...]

    @property
    def seconds(self) -> int:
        return max(knob.seconds for knob in self.knobs)

    def fast_path(self, base: FastPath) -> FastPath:
        changes: dict = {}
        for knob in self.knobs:
            changes.update(knob.fast_path)
        return dataclasses.replace(base, **changes)

    def dtype(self, default: torch.dtype) -> torch.dtype:
        return next((knob.dtype for knob in self.knobs if knob.dtype is not None), default)

    def skip_reason(self, device: torch.device, compiling: bool) -> str | None:
        """Why this variant cannot run here, or None."""
        if device.type != "cuda" and any(knob.needs_cuda for knob in self.knobs):
            return "needs CUDA"
        if not compiling and any(knob.needs_compile for knob in self.knobs):
            return "changes torch.compile, which this run does not use (the CPU smoke test)"
        return None

    @contextlib.contextmanager
    def settings(self):
        """Process-wide flags the variant needs while it loads, compiles and runs (restored afterwards)."""
        before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = before or any(knob.cudnn_benchmark for knob in self.knobs)
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = before


def parse_variant(name: str) -> Variant:
    unknown = [part for part in name.split("+") if part not in KNOBS]
    if unknown:
        raise ValueError(f"unknown knob {unknown[0]!r} in variant {name!r}; known: {', '.join(KNOBS)}")
    return Variant(name, tuple(KNOBS[part] for part in name.split("+")))
