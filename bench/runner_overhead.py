"""Runner overhead: the same generation through process_images (runner) and process_images_inner (direct).

Runs alternate (runner, direct, runner, ...) so drift on a shared machine hits both alike; the ratio is of the
medians. Last line: runner_overhead_ratio=<x> (target <= 1.01).

    python bench/runner_overhead.py [--runs 20] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import alternate  # noqa: E402


def measure(runs: int, steps: int) -> tuple[list[float], list[float]]:
    from modules import sd_models
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images, process_images_inner

    def job():
        return StableDiffusionProcessingTxt2Img(
            prompt="a red circle on a blue background", seed=1, steps=steps, do_not_save_samples=True
        )

    sd_models.load_model()
    process_images(job())  # warm-up: first-call allocations are not the runner's cost
    through_runner, direct = alternate([lambda: process_images(job()), lambda: process_images_inner(job())], runs)
    return through_runner, direct  # seconds per run, each path


def run(runs: int = 20, steps: int = 20) -> dict:
    through_runner, direct = measure(runs, steps)
    ratio = statistics.median(through_runner) / statistics.median(direct)
    return {
        "name": "runner_overhead",
        "ratio": ratio,
        "target": "<= 1.01",
        "met": ratio <= 1.01,
        "runner_ms": statistics.median(through_runner) * 1000,
        "direct_ms": statistics.median(direct) * 1000,
    }


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = run(args.runs, args.steps)
    print(f"runs={args.runs} steps={args.steps} threads={args.threads}")
    print(f"process_images median {result['runner_ms']:.2f} ms")
    print(f"process_images_inner median {result['direct_ms']:.2f} ms")
    print(f"runner_overhead_ratio={result['ratio']:.4f}")
    return result["ratio"]


if __name__ == "__main__":
    main()
