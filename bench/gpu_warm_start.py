"""Warm start: a second process with the same shapes, timed from its launch to its first image.

`bench/gpu.py` calls `measure` after its own fast-path compiles have filled the compile cache (TORCHINDUCTOR_CACHE_DIR,
which the fast path points at SERENA_COMPILE_CACHE; inductor's FX graph cache and AOTAutograd's cache are on by
default). The child process runs this file: it imports, loads the model with the same fast path, makes one image
batch (the first call: dynamo traces again, compiled code comes from the cache) and a second (steady state), and
prints its timeline as one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(folder: Path, batch: int, size: int, steps: int, device, dtype, options, timeout: float) -> dict:
    """The child's timeline in seconds since its launch, plus the caches' settings; or an error."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--model-folder",
        str(folder),
        "--batch",
        str(batch),
        "--size",
        str(size),
        "--steps",
        str(steps),
        "--device",
        str(device),
        "--dtype",
        str(dtype).removeprefix("torch."),
        "--fast-path",
        json.dumps(dataclasses.asdict(options)),
        "--launched-at",
        repr(time.time()),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"error": f"no image within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-2000:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-folder", type=Path, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--fast-path", required=True, help="FastPath fields as JSON")
    parser.add_argument("--launched-at", type=float, required=True, help="time.time() when the parent launched us")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import modules  # noqa: F401  (CPU kernel caps: they must be set before torch loads)

    # isort: split
    import torch

    from bench.gpu_model import serena_job
    from modules import fast_path, sd_models
    from modules.processing import process_images

    imported = time.time()
    options = fast_path.FastPath(**json.loads(args.fast_path))
    sd_models.load_model(str(args.model_folder), device=args.device, dtype=getattr(torch, args.dtype), speedups=options)
    loaded = time.time()
    first = process_images(serena_job(args.model_folder, args.batch, args.size, args.steps))
    first_image = time.time()
    process_images(serena_job(args.model_folder, args.batch, args.size, args.steps))
    steady_call = time.time() - first_image
    from torch._functorch import config as functorch_config
    from torch._inductor import config as inductor_config

    print(
        json.dumps(
            {
                "imports_s": imported - args.launched_at,
                "model_loaded_s": loaded - args.launched_at,
                "first_image_s": first_image - args.launched_at,
                "first_call_s": first_image - loaded,
                "first_call_sample_s": first.timings["sample"],
                "steady_call_s": steady_call,
                "inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR"),
                "fx_graph_cache": bool(inductor_config.fx_graph_cache),
                "autograd_cache": bool(functorch_config.enable_autograd_cache),
            }
        )
    )


if __name__ == "__main__":
    main()
