"""How far the default batched mode is from single-image runs, and that exact mode is identical.

For each sampler: a batch of 8 images vs the same 8 seeds run alone; prints the largest per-pixel difference
(0..255) for batched and for exact mode.

    python bench/batch_vs_single.py [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SAMPLERS = ("Euler a", "DPM++ 2M", "DDIM", "DPM++ 2M SDE")


def max_difference(sampler: str, exact: bool, count: int = 8) -> int:
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    def job(seed, batch_size):
        return StableDiffusionProcessingTxt2Img(
            prompt="a green triangle on a white background",
            seed=seed,
            batch_size=batch_size,
            steps=20,
            sampler_name=sampler,
            exact=exact,
            do_not_save_samples=True,
            do_not_save_grid=True,
        )

    batch = process_images(job(100, count)).images
    alone = [process_images(job(100 + i, 1)).images[0] for i in range(count)]
    return max(
        int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max()) for a, b in zip(batch, alone)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"{'sampler':<14} {'batched max diff':>17} {'exact max diff':>15}")
    for sampler in SAMPLERS:
        print(f"{sampler:<14} {max_difference(sampler, False):>17} {max_difference(sampler, True):>15}")


if __name__ == "__main__":
    main()
