"""Where the time goes: kernels (on CUDA) or aten ops (on CPU) of one call, grouped into categories by name.

`bench/gpu.py` profiles one eager default-path job and one compiled fast-path job at the variant batch (a few steps
and the VAE decode) with `profile_call`. Run alone, this is the older diagnostic: the top CUDA kernels of one
raw-diffusers call vs one Serena call (same model, batch, steps) and the UNet call's input dtypes/shapes/strides in
each path.

    python bench/gpu_profile.py [--batch 16] [--steps 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu_model import PROMPT, build_random_pipeline, serena_job  # noqa: E402

# First match wins, so the order matters: inductor names its Triton kernels after the ops they fuse
# ("triton_poi_fused_convolution_0" is a bias add), and cuDNN's convolution kernels contain "gemm" ("fprop").
CATEGORIES = (
    ("compiled Triton (fused)", ("triton_",)),
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("layout transposes", ("nchwtonhwc", "nhwctonchw")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad")),
    ("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "aten::mm", "addmm", "bmm", "matmul", "linear")),
    ("eager elementwise/norm", ("at::native", "aten::")),
    ("memcpy/memset", ("memcpy", "memset")),
)
TOP_KERNELS = 15


def kernel_category(name: str) -> str:
    lowered = name.lower()
    for category, patterns in CATEGORIES:
        if any(pattern in lowered for pattern in patterns):
            return category
    return "other"


def fuses_group_norm_and_silu(name: str) -> bool:
    """A compiled kernel that does GroupNorm and SiLU in one pass (inductor names fused kernels after their ops)."""
    lowered = name.lower()
    return "triton_" in lowered and "group_norm" in lowered and "silu" in lowered


def summarize(microseconds: dict[str, float], wall_ms: float) -> dict:
    """Shares of total time per category, of GroupNorm+SiLU fused kernels, and the top kernels; the profiled time
    over the call's wall time (on CUDA: how busy the GPU was)."""
    total = sum(microseconds.values()) or 1.0
    categories: dict[str, float] = defaultdict(float)
    for name, us in microseconds.items():
        categories[kernel_category(name)] += us / total
    top = sorted(microseconds.items(), key=lambda item: -item[1])[:TOP_KERNELS]
    return {
        "total_ms": sum(microseconds.values()) / 1000,
        "wall_ms": wall_ms,
        "categories": dict(sorted(categories.items(), key=lambda item: -item[1])),
        "group_norm_silu_fused_share": sum(us for name, us in microseconds.items() if fuses_group_norm_and_silu(name))
        / total,
        "top": [[name[:160], us / 1000, us / total] for name, us in top],
    }


def profile_call(call, device: torch.device) -> dict:
    """`summarize` of one call: CUDA kernel times on CUDA, aten ops' self CPU times on CPU."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1000
    microseconds: dict[str, float] = defaultdict(float)
    for event in prof.events():
        if cuda and event.device_type == DeviceType.CUDA:
            microseconds[event.name] += event.time_range.elapsed_us()
        elif not cuda and event.name.startswith("aten::"):
            microseconds[event.name] += event.self_cpu_time_total
    return summarize(microseconds, wall_ms)


def record_unet_inputs(unet, seen: list):
    def hook(module, args, kwargs):
        sample, timestep = args[0], args[1]
        hidden = kwargs.get("encoder_hidden_states")
        seen.append(
            (
                sample.dtype,
                tuple(sample.shape),
                sample.stride(),
                sample.is_contiguous(),
                type(timestep).__name__,
                getattr(timestep, "dtype", None),
                getattr(timestep, "device", None),
                hidden.dtype,
                tuple(hidden.shape),
                hidden.stride(),
            )
        )

    return unet.register_forward_pre_hook(hook, with_kwargs=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from torch.profiler import ProfilerActivity, profile

    from modules import sd_models
    from modules.processing import process_images

    device, dtype = torch.device("cuda"), torch.float16
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "sd15-random"
        build_random_pipeline(folder, False, dtype, device)
        model = sd_models.load_model(str(folder), device=device, dtype=dtype, speedups=None)
        raw = StableDiffusionPipeline(**model.pipeline.components)
        raw.scheduler = DPMSolverMultistepScheduler.from_config(model.pipeline.scheduler.config)
        raw.set_progress_bar_config(disable=True)

        def raw_call():
            raw(
                prompt=[PROMPT] * args.batch,
                negative_prompt=[""] * args.batch,
                num_inference_steps=args.steps,
                guidance_scale=7.5,
                height=512,
                width=512,
                output_type="pil",  # decodes, as Serena does
            )

        def serena_call():
            process_images(serena_job(folder, args.batch, 512, args.steps))

        for name, call in (("raw", raw_call), ("serena", serena_call)):
            call()  # warm-up
            seen: list = []
            handle = record_unet_inputs(model.pipeline.unet, seen)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                call()
                torch.cuda.synchronize()
            handle.remove()
            print(f"=== {name}: unet inputs {seen[0]}")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=70))


if __name__ == "__main__":
    main()
