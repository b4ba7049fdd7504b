"""Portable deterministic CPU generation: the same kernel code paths, so the same bytes, on every x86-64 CPU.

PyTorch's own CPU kernels, MKL and oneDNN each pick code paths by the CPU's instruction set (AVX-512 where the CPU
has it), and the paths round differently: one job gave other bytes on another CPU generation. Portable mode caps
all three at AVX2, which every x86-64 CPU of the last decade has. Each library reads its cap lazily, at its first
CPU operation, not when torch loads (measured: docs/serena.md, issue 33), so importing `modules` (which `serena_kit`,
the CLI, the API server and Ray workers all do first) sets them in time whatever was imported before it, `import
torch` included; child processes (notebook kernels, servers, actors) inherit them. Only a CPU tensor operation run
before that import (torch then fixed its paths to this CPU's) keeps the caps from taking effect: on a CPU with
AVX-512 the first generation then warns once, with the fix (on an AVX2 CPU the native paths are the capped ones).

`SERENA_CPU_KERNELS=native` lets each library pick the fastest path of this CPU (bytes then depend on the CPU
generation). The cost of portable mode is measured in docs/serena.md (issue 12).

This module must not import torch at module level: it runs before torch is loaded.
"""

from __future__ import annotations

import os
import platform
import warnings
from contextlib import contextmanager

MODE_VARIABLE = "SERENA_CPU_KERNELS"
PORTABLE, NATIVE = "portable", "native"
PORTABLE_CAPABILITY = "AVX2"  # what torch.backends.cpu.get_cpu_capability() reports under the caps
# Each library's own switch; any one alone left bytes CPU-dependent (measured on an AVX-512 machine).
PORTABLE_ENVIRONMENT = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
KERNELS_KEY = "Kernels"  # the infotext key that records non-portable kernels
PORTABLE_DESCRIPTION = "avx2 portable"  # how replay names the setting an infotext without a Kernels key records

_warned = False


def requested_mode() -> str:
    value = os.environ.get(MODE_VARIABLE, PORTABLE).strip().lower() or PORTABLE
    if value not in (PORTABLE, NATIVE):
        raise ValueError(f"{MODE_VARIABLE}: {value!r} is not allowed; allowed {PORTABLE!r} or {NATIVE!r}")
    return value


def applies_here() -> bool:
    """The caps are x86-64 instruction sets; elsewhere (Arm) each library has one path anyway."""
    return platform.machine().lower() in ("x86_64", "amd64")


def apply_caps() -> None:
    """Set the caps for this process and its children. They take effect if no CPU operation has run yet, whether
    or not torch is loaded; `check_cpu_kernels` warns at the first CPU generation where they could not."""
    if requested_mode() == PORTABLE and applies_here():
        os.environ.update(PORTABLE_ENVIRONMENT)


def caps_in_environment() -> bool:
    return all(os.environ.get(name) == value for name, value in PORTABLE_ENVIRONMENT.items())


def portable_in_effect() -> bool:
    """Portable mode is asked for, the three caps are in the environment, and torch reports the capped path (it
    does not where a CPU operation ran before the caps were set, on a CPU with AVX-512)."""
    import torch

    capped = caps_in_environment()
    return requested_mode() == PORTABLE and capped and torch.backends.cpu.get_cpu_capability() == PORTABLE_CAPABILITY


def cpu_kernels() -> dict:
    """What decides CPU bytes besides the job: the kernel path, the caps, the thread count, torch's version."""
    import torch

    return {
        "mode": PORTABLE if portable_in_effect() else NATIVE,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
    }


def describe(kernels: dict) -> str:
    """One line for infotexts: "avx512 native, 2 threads"."""
    threads = kernels["threads"]
    return f"{kernels['cpu_capability'].lower()} {kernels['mode']}, {threads} thread{'s' if threads != 1 else ''}"


def infotext_value(device) -> str | None:
    """The infotext's `Kernels` value: None (no key) for portable CPU generation, whose bytes are the same on every
    x86-64 CPU at any thread count; otherwise what must match for the same bytes (CPU path and threads, GPU model)."""
    import torch

    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return device.type
    kernels = cpu_kernels()
    return None if kernels["mode"] == PORTABLE else describe(kernels)


def job_kernels(device) -> dict:
    """For Processed.js(): the device, and on the CPU the kernel path, thread count and torch version."""
    import torch

    if device.type == "cuda":
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__}
    return {"device": device.type} | (cpu_kernels() if device.type == "cpu" else {"torch": torch.__version__})


@contextmanager
def generation_kernels(device):
    """Around one generation on `device`: in portable mode on the CPU, ATen's convolutions instead of oneDNN's,
    whose results depend on the thread count (measured: docs/serena.md, issue 12)."""
    import torch

    if device.type != "cpu":
        yield
        return
    check_cpu_kernels()
    if not portable_in_effect():
        yield
        return
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


def check_cpu_kernels() -> None:
    """Warn once when portable mode was asked for but the kernels are not capped: a CPU operation ran before
    `modules` was imported (or the caps were changed in the environment since)."""
    global _warned
    if _warned or requested_mode() != PORTABLE or not applies_here() or portable_in_effect():
        return
    _warned = True
    import torch

    caps = " ".join(f"{name}={value}" for name, value in PORTABLE_ENVIRONMENT.items())
    warnings.warn(
        f"Serena: a CPU tensor operation ran before serena_kit/modules was imported, so torch fixed its CPU kernels "
        f"at {torch.backends.cpu.get_cpu_capability()} and images may differ on other CPUs. Fix: import serena_kit "
        f"(or modules) before any tensor work (after `import torch` is fine), or start Python with {caps}; restart "
        f"the kernel/process for it to take effect.",
        RuntimeWarning,
        stacklevel=3,
    )
