"""GPU speed (issue 20): raw diffusers vs Serena's default path vs its fast path, and candidate speed-ups of the fast
path, side by side in one run; then the same comparison on SDXL (issue 17).

Builds a full SD 1.5-architecture pipeline with random weights (bench/gpu_model.py), fp16, 512x512, 20 steps
DPM++ 2M with CFG, and measures in this order, saving the JSON after each part (a run stopped by its time budget
keeps what it measured):

1. Serena's default path per batch: prompt encoding + sampling from the engine's synchronized phase timings (the
   work of raw diffusers' output_type="latent"), VAE decode, end-to-end images/s (whole job), and eager VAE decode
   per image at batch 1 and the variant batch; the kernel profile of one default call;
2. raw diffusers eager per batch (its pipeline call as users make it, and under torch.inference_mode);
3. the fast path (fused QKV + torch.compile "reduce-overhead" with CUDA graphs) per compile batch, its compile
   warm-up and its pixel difference from the default path; the kernel profile of one compiled call; a warm start: a
   second process with the same shapes and the same compile cache, timed from launch to its first image;
4. each --variants entry (bench/gpu_variants.py) at the variant batch while the budget keeps the SDXL part's estimate:
   a fresh load and compile, timed and checked against the default path's images (max pixel difference <= 2, mean
   <= 0.1);
5. SDXL (--no-sdxl skips it): a full SDXL base with random weights (bench/gpu_model.py), 1024x1024, the same steps
   and sampler, per --sdxl-batches: Serena's default path, raw diffusers' StableDiffusionXLPipeline and the fast path
   (pixel-checked against the default path), each model loaded fresh;
6. the flow-matching transformers (--flow, issue 31): SD 3.5 Medium and FLUX.1 dev with random weights
   (bench/gpu_model.py, the shipped configs), bf16, 1024x1024, the same steps with Euler (their own scheduler), per
   --flow-batches: Serena's default path against the raw diffusers pipeline (StableDiffusion3Pipeline at CFG 7;
   FluxPipeline at distilled guidance 3.5 and real CFG 1, Serena likewise);
7. an 8192^3 fp16 matmul, the peak this chip reaches in practice.

It then prints markdown tables (bench/gpu_report.py).

    python bench/gpu.py                 # on a CUDA machine; bench/gpu_run.sh is the whole issue-20 run
    python bench/gpu.py --tiny          # CPU smoke test with a tiny config (CI); CUDA-only variants are skipped
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import modules  # noqa: E402, F401  (CPU kernel caps: they must be set before torch loads)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import gpu_profile, gpu_report, gpu_variants, gpu_warm_start  # noqa: E402
from bench.gpu_model import (  # noqa: E402
    PIXEL_MAX_DIFF,
    PIXEL_MEAN_DIFF,
    PROMPT,
    build_random_flux_pipeline,
    build_random_pipeline,
    build_random_sd3_pipeline,
    build_random_sdxl_pipeline,
    peak_fraction,
    serena_job,
)
from modules import sd_models  # noqa: E402
from modules.fast_path import FastPath  # noqa: E402
from modules.images import replace_file  # noqa: E402
from modules.processing import process_images  # noqa: E402

WARM_START_TIMEOUT_S = 120
PROFILE_STEPS = 5  # enough to show the per-step mix; the decode counts once per job, as in a real job
# Rough priors for a fresh H200, used only to skip a part that would not fit --budget-s.
FAST_COMPILE_S = 70
PROFILE_S = 10
WARM_START_S = 40
SDXL_S = 150  # build, load and eager calls of raw diffusers and the default path at batch 1 and 4
SDXL_COMPILE_S = 100  # per fast-path batch
FLOW_S = 240  # per flow model: build and save the random weights (FLUX.1 with T5: ~33 GB in bf16), load, calls


@dataclass(frozen=True)
class FlowPart:
    title: str
    build: Callable
    pipeline_class: str
    serena_fields: dict  # the Serena job's sampler and guidance
    raw_call: dict  # the same for the raw pipeline call


FLOW_PARTS = {
    "sd35": FlowPart(
        "SD 3.5 Medium",
        build_random_sd3_pipeline,
        "StableDiffusion3Pipeline",
        {"cfg_scale": 7.0},
        {"guidance_scale": 7.0},
    ),
    "flux": FlowPart(
        "FLUX.1 dev",
        build_random_flux_pipeline,
        "FluxPipeline",
        {"cfg_scale": 1.0, "distilled_cfg_scale": 3.5},
        {"guidance_scale": 3.5},
    ),
}


def log(message: str) -> None:
    print(message, flush=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


class Budget:
    """Seconds left of the run's budget (none: unlimited), and the seconds each part took."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds
        self.parts: dict[str, float] = {}

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.monotonic()

    def lacks(self, seconds: float) -> str | None:
        """Why a part estimated at `seconds` is skipped, or None when it fits."""
        left = self.left()
        return f"time budget: needs ~{seconds:.0f} s, {left:.0f} s left" if left < seconds else None

    @contextlib.contextmanager
    def part(self, name: str):
        start = time.monotonic()
        try:
            yield
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + time.monotonic() - start


def pixel_check(images, reference) -> dict:
    """Difference from the default path's images at the same seeds, over the whole batch (0-255 scale)."""
    difference = np.abs(
        np.stack([np.asarray(image, dtype=np.int16) for image in images])
        - np.stack([np.asarray(image, dtype=np.int16) for image in reference])
    )
    max_diff, mean_diff = int(difference.max()), float(difference.mean())
    return {
        "max_diff": max_diff,
        "mean_diff": mean_diff,
        "pixels_ok": max_diff <= PIXEL_MAX_DIFF and mean_diff <= PIXEL_MEAN_DIFF,
    }


def serena(folder: Path, size: int, batch: int, args, device, reference=None, **fields) -> tuple[dict, list]:
    """One path's figures at `batch` on the loaded model `folder`, and its images. The first call is the warm-up (it
    compiles on the fast path); then the median of --repeats calls. `fields`: the job's own (serena_job)."""

    def call():
        start = time.perf_counter()
        result = process_images(serena_job(folder, batch, size, args.steps, **fields))
        return result, time.perf_counter() - start  # the last phase (decode) ends synchronized

    _, warm_up = call()
    reset_peak(device)
    calls = [call() for _ in range(args.repeats)]
    sampling = statistics.median(r.timings["encode_prompt"] + r.timings["sample"] for r, _ in calls)
    decode = statistics.median(r.timings["decode"] for r, _ in calls)
    job = statistics.median(seconds for _, seconds in calls)
    entry = {
        "it_s": args.steps / sampling,
        "image_steps_s": args.steps * batch / sampling,
        "peak_fraction": peak_fraction(args.steps * batch / sampling),
        "warm_up_s": warm_up,
        "decode_ms_per_image": decode / batch * 1000,
        "e2e_images_s": batch / job,
        "peak_gib": peak_gib(device),
    }
    images = calls[0][0].images
    if reference is not None:
        entry.update(pixel_check(images, reference))
    log(
        f"  batch {batch}: {entry['it_s']:.2f} it/s, {entry['e2e_images_s']:.2f} images/s end to end "
        f"(first call {warm_up:.1f} s), model {calls[0][0].sd_model_name}"
        + (f", max pixel diff {entry['max_diff']} (mean {entry['mean_diff']:.3f})" if reference else "")
    )
    return entry, images


def raw_diffusers(
    pipeline_class, folder: Path, size: int, batches: list[int], args, dtype, device, call: dict | None = None
) -> dict[int, dict]:
    """The pipeline call as users make it (its own @torch.no_grad), and wrapped in torch.inference_mode (as the
    engine runs), to separate that effect from the engine's. The sampler is the engine's job's (DPM++ 2M at CFG 7.5),
    or with `call` (the flow models: their guidance) the pipeline's own scheduler."""
    from diffusers import DPMSolverMultistepScheduler

    pipeline = pipeline_class.from_pretrained(folder, dtype=dtype, local_files_only=True)
    if call is None:
        pipeline.scheduler = DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)

    def timed(batch: int, steps: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        pipeline(
            prompt=[PROMPT] * batch,
            negative_prompt=[""] * batch,
            num_inference_steps=steps,
            **(call or {"guidance_scale": 7.5}),
            height=size,
            width=size,
            output_type="latent",
            generator=torch.Generator("cpu").manual_seed(0),
        )
        synchronize(device)
        return time.perf_counter() - start

    figures = {}
    for batch in batches:
        entry = {}
        for inference_mode in (False, True):
            with torch.inference_mode(inference_mode):
                timed(batch, 2)  # warm-up (cuDNN/cuBLAS heuristics, allocator)
                reset_peak(device)
                seconds = statistics.median(timed(batch, args.steps) for _ in range(args.repeats))
            key = "inference_mode_it_s" if inference_mode else "it_s"
            entry[key] = args.steps / seconds
            if not inference_mode:
                entry["peak_gib"] = peak_gib(device)
        entry["image_steps_s"] = entry["it_s"] * batch
        entry["peak_fraction"] = peak_fraction(entry["image_steps_s"])
        log(f"  batch {batch}: {entry['it_s']:.2f} it/s ({entry['inference_mode_it_s']:.2f} under inference_mode)")
        figures[batch] = entry
    return figures


def other_model_figures(entry: dict) -> dict:
    del entry["peak_fraction"]  # counted with SD 1.5's UNet FLOPs: meaningless for other models
    return entry


def vae_decode_ms(model, size: int, device, batch: int, repeats: int) -> float:
    """Eager VAE decode per image at `batch`, without the engine's conversion to PIL images."""
    latents = torch.randn((batch, 4, size // 8, size // 8), generator=torch.Generator("cpu").manual_seed(0))
    latents = latents.to(device, model.dtype)
    with torch.inference_mode():
        model.pipeline.vae.decode(latents)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model.pipeline.vae.decode(latents)
        synchronize(device)
    return (time.perf_counter() - start) / repeats / batch * 1000


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


def fresh_compile_state(device) -> None:
    """Forget compiled graphs and CUDA-graph pools, so the next load compiles (from the on-disk cache where it
    can) and records its own graphs."""
    sd_models.model_cache.clear()
    torch._dynamo.reset()
    gc.collect()  # diffusers pipelines hold reference cycles
    if device.type == "cuda":
        torch.cuda.empty_cache()


def profile_serena(args, device) -> dict:
    """Kernel-time shares of one job of the loaded model at the variant batch."""
    steps = min(args.steps, PROFILE_STEPS)
    summary = gpu_profile.profile_call(
        lambda: process_images(serena_job(args.model_folder, args.variant_batch, args.size, steps)), device
    )
    summary["steps"] = steps
    top = ", ".join(f"{category} {share * 100:.0f} %" for category, share in summary["categories"].items())
    log(f"  profile ({summary['total_ms']:.0f} ms profiled in {summary['wall_ms']:.0f} ms): {top}")
    return summary


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny config on CPU: a smoke test of this script")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument(
        "--compile-batches",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes for the fast path, in this order (each compiles once); a subset of --batches; "
        "default: the variant batch, then the smallest",
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (median)")
    parser.add_argument("--no-fast", action="store_true", help="skip the fast path and its variants (not SDXL's)")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help=f"fast-path variants at the variant batch, knobs joined by '+'; knobs: {', '.join(gpu_variants.KNOBS)} "
        "(default: all, most promising first; 'none': no variants)",
    )
    parser.add_argument("--variant-batch", type=int, default=None, help="default: the largest of --batches")
    parser.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--sdxl", action=argparse.BooleanOptionalAction, default=True, help="the SDXL part")
    parser.add_argument("--sdxl-batches", type=int, nargs="+", default=None, help="default: 1 4 (--tiny: 1 2)")
    parser.add_argument(
        "--flow",
        nargs="*",
        default=None,
        help=f"the flow-matching models' parts: {', '.join(FLOW_PARTS)} (default: all; 'none': none)",
    )
    parser.add_argument("--flow-batches", type=int, nargs="+", default=None, help="default: 1 4 (--tiny: 1 2)")
    parser.add_argument("--budget-s", type=float, default=None, help="skip parts that would not end within this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args(argv)
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 4, 16])
    args.variant_batch = args.variant_batch or max(args.batches)
    if args.variant_batch not in args.batches:
        parser.error("--variant-batch must be one of --batches (its images are the pixel reference)")
    default_compile = list(dict.fromkeys([args.variant_batch, min(args.batches)]))
    args.compile_batches = [] if args.no_fast else args.compile_batches or default_compile
    if not set(args.compile_batches) <= set(args.batches):
        parser.error("--compile-batches must be a subset of --batches (their images are the pixel reference)")
    args.repeats = args.repeats or (1 if args.tiny else 3)
    names = gpu_variants.DEFAULT_VARIANTS if args.variants is None else args.variants
    try:
        args.variants = [gpu_variants.parse_variant(name) for name in names if name != "none"]
    except ValueError as error:
        parser.error(str(error))
    args.size = 64 if args.tiny else 512
    args.sdxl_batches = args.sdxl_batches or ([1, 2] if args.tiny else [1, 4])
    args.sdxl_size = 64 if args.tiny else 1024
    args.flow = [name for name in (list(FLOW_PARTS) if args.flow is None else args.flow) if name != "none"]
    if unknown := set(args.flow) - set(FLOW_PARTS):
        parser.error(f"--flow: unknown part {sorted(unknown)[0]!r}; allowed: {', '.join(FLOW_PARTS)}, none")
    args.flow_batches = args.flow_batches or ([1, 2] if args.tiny else [1, 4])
    args.flow_size = 64 if args.tiny else 1024
    return args


class Run:
    """One benchmark run: its settings, its report (saved after every part) and the default path's images."""

    def __init__(self, args, budget: Budget):
        import diffusers

        self.args, self.budget = args, budget
        self.device = torch.device("cpu") if args.tiny or not torch.cuda.is_available() else torch.device("cuda")
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.compiling = self.device.type == "cuda"  # on CPU (the smoke test) the fast path runs without compile
        self.options = FastPath(compile_unet=self.compiling)
        self.default_images: dict[int, list] = {}
        card = torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu"
        self.report: dict = {
            "device": card,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "dtype": str(self.dtype).removeprefix("torch."),
            "size": args.size,
            "steps": args.steps,
            "repeats": args.repeats,
            "variant_batch": args.variant_batch,
            "fast_path": self.options.infotext_value() + (f" ({self.options.compile_mode})" if self.compiling else ""),
            "budget_s": args.budget_s,
            "sections_s": budget.parts,
            "rows": [{"batch": batch} for batch in args.batches],
            "variants": [],
        }
        self.rows = {row["batch"]: row for row in self.report["rows"]}
        log(f"device={card} torch={torch.__version__} dtype={self.dtype} size={args.size} steps={args.steps}")

    def save(self) -> None:
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.args.out, json.dumps(self.report, indent=2).encode())

    def load(self, folder: Path, speedups, dtype=None):
        return sd_models.load_model(str(folder), device=self.device, dtype=dtype or self.dtype, speedups=speedups)

    def default_path(self) -> None:
        args = self.args
        model = self.load(args.model_folder, speedups=None)
        self.report["vae_decode_ms_per_image"] = {
            str(batch): vae_decode_ms(model, args.size, self.device, batch, args.repeats)
            for batch in sorted({1, args.variant_batch})
        }
        for batch in args.batches:
            self.rows[batch]["default"], self.default_images[batch] = serena(
                args.model_folder, args.size, batch, args, self.device
            )
        if args.profile:
            self.report["profile"] = {"eager default": profile_serena(args, self.device)}
        fresh_compile_state(self.device)

    def raw_diffusers(self) -> None:
        from diffusers import StableDiffusionPipeline

        args = self.args
        figures = raw_diffusers(
            StableDiffusionPipeline, args.model_folder, args.size, args.batches, args, self.dtype, self.device
        )
        for batch, entry in figures.items():
            self.rows[batch]["raw"] = entry
        fresh_compile_state(self.device)  # frees the raw pipeline's GPU memory before the fast path loads

    def fast_path(self) -> dict | None:
        """The fast path per compile batch; its figures at the variant batch (the variants' reference) or None."""
        args = self.args
        self.load(args.model_folder, speedups=self.options)
        for batch in args.compile_batches:
            if reason := self.budget.lacks(FAST_COMPILE_S):
                log(f"  batch {batch}: skipped, {reason}")
                continue
            self.rows[batch]["fast"], _ = serena(
                args.model_folder, args.size, batch, args, self.device, self.default_images[batch]
            )
            self.save()
        return self.rows[self.args.variant_batch].get("fast")

    def profile_fast(self) -> None:
        reason = self.budget.lacks(PROFILE_S)
        self.report["profile"]["compiled fast"] = (
            {"skipped": reason} if reason else profile_serena(self.args, self.device)
        )

    def warm_start(self, reference: dict) -> None:
        args = self.args
        if reason := self.budget.lacks(WARM_START_S):
            warm = {"skipped": reason}
        else:
            warm = gpu_warm_start.measure(
                args.model_folder,
                args.variant_batch,
                args.size,
                args.steps,
                self.device,
                self.dtype,
                self.options,
                timeout=min(WARM_START_TIMEOUT_S, self.budget.left()),
            )
        warm["cold_first_call_s"] = reference["warm_up_s"]
        self.report["warm_start"] = warm
        log(f"warm start: {warm}")

    def variants(self, reference: dict | None) -> None:
        for variant in self.args.variants:
            no_reference = None if reference else f"no fast-path figures at batch {self.args.variant_batch}"
            reason = no_reference or variant.skip_reason(self.device, self.compiling)
            # The variants take what is left but the SDXL part's estimate: else they would always cut it.
            kept_for_sdxl = SDXL_S if self.args.sdxl else 0
            if reason := reason or self.budget.lacks(variant.seconds + kept_for_sdxl):
                self.report["variants"].append({"name": variant.name, "status": "skipped", "reason": reason})
                log(f"  {variant.name}: skipped, {reason}")
                continue
            log(f"variant {variant.name}")
            with self.budget.part("variants"):
                self.report["variants"].append(self.measure_variant(variant))
            self.save()

    def measure_variant(self, variant) -> dict:
        entry = {"name": variant.name, "help": "; ".join(knob.help for knob in variant.knobs)}
        fresh_compile_state(self.device)
        try:
            with variant.settings():
                model = self.load(
                    self.args.model_folder, speedups=variant.fast_path(self.options), dtype=variant.dtype(self.dtype)
                )
                entry["fast_path"] = model.fast_path.infotext_value()
                entry["dtype"] = str(model.dtype).removeprefix("torch.")
                args = self.args
                figures, _ = serena(
                    args.model_folder,
                    args.size,
                    args.variant_batch,
                    args,
                    self.device,
                    self.default_images[args.variant_batch],
                )
            entry.update(figures, status="measured")
        except Exception as error:  # one knob that fails here (a kernel missing on this GPU) must not end the run
            entry.update(status="error", reason=f"{type(error).__name__}: {str(error).strip()[:300]}")
            log(f"  {variant.name}: {entry['reason']}")
        fresh_compile_state(self.device)
        return entry

    def sdxl(self, folder: Path) -> None:
        """Issue 17's table: an SDXL base built in `folder`, raw diffusers vs the default path vs the fast path per
        --sdxl-batches, each model loaded fresh (one at a time: the full SDXL is ~7 GB in fp16)."""
        from diffusers import StableDiffusionXLPipeline

        args, device = self.args, self.device
        size, batches = args.sdxl_size, args.sdxl_batches
        sdxl = self.report["sdxl"] = {"size": size, "rows": [{"batch": batch} for batch in batches]}
        rows = {row["batch"]: row for row in sdxl["rows"]}
        if reason := self.budget.lacks(SDXL_S):
            sdxl["skipped"] = reason
            log(f"sdxl: skipped, {reason}")
            return
        build_random_sdxl_pipeline(folder, args.tiny, self.dtype, device)
        self.load(folder, speedups=None)
        default_images = {}
        for batch in batches:
            entry, default_images[batch] = serena(folder, size, batch, args, device)
            rows[batch]["default"] = other_model_figures(entry)
        fresh_compile_state(device)
        log("sdxl default path done")
        self.save()
        figures = raw_diffusers(StableDiffusionXLPipeline, folder, size, batches, args, self.dtype, device)
        for batch, entry in figures.items():
            rows[batch]["raw"] = other_model_figures(entry)
        fresh_compile_state(device)
        log("sdxl raw diffusers done")
        self.save()
        self.load(folder, speedups=self.options)
        for batch in batches:
            if reason := self.budget.lacks(SDXL_COMPILE_S):
                rows[batch]["fast"] = {"skipped": reason}
                log(f"  batch {batch}: skipped, {reason}")
                continue
            entry, _ = serena(folder, size, batch, args, device, default_images[batch])
            rows[batch]["fast"] = other_model_figures(entry)
            self.save()
        fresh_compile_state(device)
        log("sdxl fast path done")

    def flow_model(self, name: str, folder: Path) -> None:
        """Issue 31's table for one flow model: random weights built in `folder` (bf16 on CUDA), Serena's default path
        against the raw pipeline per --flow-batches; the folder is removed after (tens of GB at full size)."""
        import diffusers

        args, device, part = self.args, self.device, FLOW_PARTS[name]
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        size, batches = args.flow_size, args.flow_batches
        entry = self.report.setdefault("flow", {})[name] = {
            "title": part.title,
            "size": size,
            "dtype": str(dtype).removeprefix("torch."),
            "rows": [{"batch": batch} for batch in batches],
        }
        rows = {row["batch"]: row for row in entry["rows"]}
        if reason := self.budget.lacks(FLOW_S):
            entry["skipped"] = reason
            log(f"{name}: skipped, {reason}")
            return
        try:
            part.build(folder, args.tiny, dtype, device)
            self.load(folder, speedups=None, dtype=dtype)
            fields = part.serena_fields | {"sampler_name": "Euler"}
            for batch in batches:
                figures, _ = serena(folder, size, batch, args, device, **fields)
                rows[batch]["default"] = other_model_figures(figures)
            sd_models.model_cache.clear()
            fresh_compile_state(device)
            self.save()
            pipeline_class = getattr(diffusers, part.pipeline_class)
            raw = raw_diffusers(pipeline_class, folder, size, batches, args, dtype, device, part.raw_call)
            for batch, figures in raw.items():
                rows[batch]["raw"] = other_model_figures(figures)
        finally:
            sd_models.model_cache.clear()
            fresh_compile_state(device)
            shutil.rmtree(folder, ignore_errors=True)
        log(f"{name} done")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    run = Run(args, budget)
    with tempfile.TemporaryDirectory() as temp:
        args.model_folder = Path(temp) / "sd15-random"
        with budget.part("build model"):
            build_random_pipeline(args.model_folder, args.tiny, run.dtype, run.device)
        run.save()
        with budget.part("default path"):
            run.default_path()
        log("serena default path done")
        run.save()
        with budget.part("raw diffusers"):
            run.raw_diffusers()
        log("raw diffusers done")
        run.save()
        if args.compile_batches:
            with budget.part("fast path"):
                reference = run.fast_path()
            log("serena fast path done")
            if reference and args.profile:
                with budget.part("profile"):
                    run.profile_fast()
            if reference and args.warm_start:
                with budget.part("warm start"):
                    run.warm_start(reference)
            run.save()
            run.variants(reference)
            fresh_compile_state(run.device)
        if args.sdxl:
            with budget.part("sdxl"):
                run.sdxl(Path(temp) / "sdxl-random")
            run.save()
        for name in args.flow:
            with budget.part(name):
                run.flow_model(name, Path(temp) / f"{name}-random")
            run.save()
    run.report["matmul_fp16_tflops"] = matmul_tflops(run.device)
    run.save()
    log(gpu_report.markdown(run.report))
    log(f"wrote {args.out}")
    return run.report


if __name__ == "__main__":
    main()
