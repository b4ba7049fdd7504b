"""Diagnostic: where the GPU time goes in one raw-diffusers call vs one Serena call (same model, batch, steps).

Prints the top CUDA kernels of each under torch.profiler, and the UNet call's input dtypes/shapes/strides in each
path, to explain a speed difference between them. Uses bench/gpu.py's random SD 1.5 pipeline.

    python bench/gpu_profile.py [--batch 16] [--steps 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu import PROMPT, build_random_pipeline  # noqa: E402


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
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

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
            process_images(
                StableDiffusionProcessingTxt2Img(
                    sd_model_checkpoint=str(folder),
                    prompt=PROMPT,
                    seed=0,
                    batch_size=args.batch,
                    steps=args.steps,
                    cfg_scale=7.5,
                    sampler_name="DPM++ 2M",
                    width=512,
                    height=512,
                    do_not_save_samples=True,
                    do_not_save_grid=True,
                )
            )

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
