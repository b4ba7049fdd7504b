"""GPU speed: raw diffusers vs Serena's default path vs Serena's fast path, side by side in one run.

Builds a full SD 1.5-architecture pipeline from the shipped config with random weights (speed does not depend on
weight values; nothing is downloaded), fp16, 512x512, 20 steps DPM++ 2M with CFG, batch 1, 4 and 16, and prints:
raw diffusers eager it/s (pipeline call, output_type="latent"), Serena's default path and fast path (prompt encoding
+ sampling, from the engine's own synchronized phase timings), image-steps/s, the fraction of the fp16 roofline
(the SD 1.5 UNet costs about 1.61 TFLOP per step per image with CFG), compile warm-up, peak GPU memory, VAE decode
time, and the fast path's pixel difference from the default path at the same seed.

    python bench/gpu.py                 # on a CUDA machine
    python bench/gpu.py --tiny          # CPU smoke test with a tiny config (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

UNET_TFLOP_PER_IMAGE_STEP = 1.61  # SD 1.5 UNet at 64x64 latents, both CFG halves
FP16_DENSE_PEAK_TFLOPS = 989.0  # H100/H200 SXM datasheet, dense fp16/bf16 tensor cores
PROMPT = "a photograph of an astronaut riding a horse"


def log(message: str) -> None:
    print(message, flush=True)


def build_random_pipeline(folder: Path, tiny: bool, dtype: torch.dtype, device: torch.device) -> None:
    """A StableDiffusionPipeline with seeded random weights saved as a diffusers folder."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config_dir = ROOT / "modules" / "model_configs" / "sd15"
    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            unet = UNet2DConditionModel(
                sample_size=8,
                block_out_channels=(32, 64),
                layers_per_block=1,
                cross_attention_dim=32,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                attention_head_dim=4,
            )
            vae = AutoencoderKL(
                block_out_channels=(32, 32, 32, 32),
                latent_channels=4,
                norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4,
            )
            text_config = CLIPTextConfig(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                vocab_size=49408,
                max_position_embeddings=77,
            )
        else:
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config_dir / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(config_dir / "vae"))
            text_config = CLIPTextConfig.from_pretrained(config_dir / "text_encoder")
        text_encoder = CLIPTextModel(text_config)
    scheduler = DPMSolverMultistepScheduler.from_pretrained(config_dir / "scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(config_dir / "tokenizer", local_files_only=True)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(dtype=dtype).save_pretrained(folder, safe_serialization=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def raw_diffusers(folder: Path, batch: int, args, dtype, device, inference_mode: bool = False) -> dict:
    """The pipeline call as users make it (its own @torch.no_grad), or wrapped in torch.inference_mode (as the
    engine runs), to separate that effect from the engine's."""
    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True).to(device)
    pipeline.set_progress_bar_config(disable=True)

    def call(steps):
        return pipeline(
            prompt=[PROMPT] * batch,
            negative_prompt=[""] * batch,
            num_inference_steps=steps,
            guidance_scale=7.5,
            height=args.size,
            width=args.size,
            output_type="latent",
            generator=torch.Generator("cpu").manual_seed(0),
        )

    with torch.inference_mode(inference_mode):
        call(2)  # warm-up (cuDNN/cuBLAS heuristics, allocator)
        reset_peak(device)
        synchronize(device)
        start = time.perf_counter()
        call(args.steps)
        synchronize(device)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_gib": peak_gib(device)}


def serena_job(batch: int, args, seed: int = 0):
    """The job on the benchmark's model (named: a job without a checkpoint runs the embedded default model)."""
    from modules.processing import StableDiffusionProcessingTxt2Img

    return StableDiffusionProcessingTxt2Img(
        sd_model_checkpoint=str(args.model_folder),
        prompt=PROMPT,
        seed=seed,
        batch_size=batch,
        steps=args.steps,
        cfg_scale=7.5,
        sampler_name="DPM++ 2M",
        width=args.size,
        height=args.size,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )


def serena(batch: int, args, device) -> dict:
    """Prompt encoding + sampling seconds, from the engine's synchronized phase timings (like output_type=latent)."""
    from modules.processing import process_images

    warm_start = time.perf_counter()
    process_images(serena_job(batch, args))  # first call per shape: compiles on the fast path
    warm_up = time.perf_counter() - warm_start
    reset_peak(device)
    result = process_images(serena_job(batch, args))
    timings = result.timings
    log(
        f"  batch {batch}: {args.steps / (timings['encode_prompt'] + timings['sample']):.2f} it/s "
        f"(first call {warm_up:.1f} s), model {result.sd_model_name}"
    )
    return {
        "seconds": timings["encode_prompt"] + timings["sample"],
        "decode_seconds": timings["decode"],
        "warm_up_seconds": warm_up,
        "peak_gib": peak_gib(device),
        "image": result.images[0],
    }


def pixel_difference(a, b) -> tuple[float, int]:
    difference = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    return float(difference.mean()), int(difference.max())


def vae_decode_ms(model, size: int, device) -> float:
    latents = torch.randn((1, 4, size // 8, size // 8), generator=torch.Generator("cpu").manual_seed(0))
    latents = latents.to(device, model.dtype)
    with torch.inference_mode():
        model.pipeline.vae.decode(latents)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(5):
            model.pipeline.vae.decode(latents)
        synchronize(device)
    return (time.perf_counter() - start) / 5 * 1000


def matmul_tflops(device) -> float | None:
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    synchronize(device)
    return 2 * 8192**3 * 10 / (time.perf_counter() - start) / 1e12


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny config on CPU: a smoke test of this script")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument(
        "--compile-batches",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes for the compiled fast path (each compiles once)",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-fast", action="store_true", help="skip the fast path (a baseline-only rerun)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args(argv)

    from modules import fast_path, sd_models

    device = torch.device("cpu") if args.tiny or not torch.cuda.is_available() else torch.device("cuda")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    args.size = 64 if args.tiny else 512
    batches = args.batches or ([1, 2] if args.tiny else [1, 4, 16])
    compile_batches = args.compile_batches or ([] if device.type != "cuda" else [1, 16])
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    log(f"device={card} torch={torch.__version__} dtype={dtype} size={args.size} steps={args.steps}")

    report: dict = {"device": card, "torch": torch.__version__, "size": args.size, "steps": args.steps, "rows": []}
    with tempfile.TemporaryDirectory() as temp:
        folder = args.model_folder = Path(temp) / "sd15-random"
        build_random_pipeline(folder, args.tiny, dtype, device)
        default_model = sd_models.load_model(str(folder), device=device, dtype=dtype, speedups=None)
        report["vae_decode_ms_per_image"] = vae_decode_ms(default_model, args.size, device)
        default = {batch: serena(batch, args, device) for batch in batches}
        log("serena default path done")
        sd_models.model_cache.clear()

        raw = {batch: raw_diffusers(folder, batch, args, dtype, device) for batch in batches}
        raw_inference = {batch: raw_diffusers(folder, batch, args, dtype, device, True) for batch in batches}
        log("raw diffusers done")

        # On CPU (the --tiny smoke test) the fast path runs without torch.compile to keep CI short.
        options = fast_path.FastPath(compile_unet=device.type == "cuda")
        fast = {}
        if not args.no_fast:
            sd_models.load_model(str(folder), device=device, dtype=dtype, speedups=options)
            fast = {batch: serena(batch, args, device) for batch in (compile_batches or batches)}
            log("serena fast path done")

        for batch in batches:
            row = {"batch": batch, "raw_it_s": args.steps / raw[batch]["seconds"]}
            row["raw_inference_mode_it_s"] = args.steps / raw_inference[batch]["seconds"]
            row["default_it_s"] = args.steps / default[batch]["seconds"]
            row["raw_peak_gib"], row["default_peak_gib"] = raw[batch]["peak_gib"], default[batch]["peak_gib"]
            if batch in fast:
                row["fast_it_s"] = args.steps / fast[batch]["seconds"]
                row["fast_warm_up_s"] = fast[batch]["warm_up_seconds"]
                row["fast_peak_gib"] = fast[batch]["peak_gib"]
                row["fast_mean_diff"], row["fast_max_diff"] = pixel_difference(
                    fast[batch]["image"], default[batch]["image"]
                )
            for path in ("raw", "default", "fast"):
                if f"{path}_it_s" in row:
                    row[f"{path}_image_steps_s"] = row[f"{path}_it_s"] * batch
                    row[f"{path}_roofline"] = (
                        row[f"{path}_image_steps_s"] * UNET_TFLOP_PER_IMAGE_STEP / (FP16_DENSE_PEAK_TFLOPS)
                    )
            report["rows"].append(row)
    report["matmul_fp16_tflops"] = matmul_tflops(device)

    log(
        f"{'batch':>5} {'raw it/s':>9} {'raw+inference_mode it/s':>23} {'serena it/s':>11} {'fast it/s':>9} "
        f"{'fast/raw':>8} {'serena/raw':>10} "
        f"{'fast img-steps/s':>16} {'roofline':>8} {'warm-up s':>9} {'max diff':>8} {'peak GiB':>8}"
    )
    for row in report["rows"]:
        fast_it = row.get("fast_it_s")
        log(
            f"{row['batch']:>5} {row['raw_it_s']:>9.2f} {row['raw_inference_mode_it_s']:>23.2f} "
            f"{row['default_it_s']:>11.2f} "
            f"{fast_it or float('nan'):>9.2f} {(fast_it or float('nan')) / row['raw_it_s']:>8.2f} "
            f"{row['default_it_s'] / row['raw_it_s']:>10.3f} {row.get('fast_image_steps_s', float('nan')):>16.1f} "
            f"{row.get('fast_roofline', float('nan')):>8.3f} {row.get('fast_warm_up_s', float('nan')):>9.1f} "
            f"{row.get('fast_max_diff', -1):>8} {row.get('fast_peak_gib') or row['default_peak_gib'] or 0:>8.2f}"
        )
    log(
        f"vae_decode_ms_per_image={report['vae_decode_ms_per_image']:.1f} "
        f"matmul_fp16_tflops={report['matmul_fp16_tflops']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    log(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
