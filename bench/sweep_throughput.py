"""Sweep throughput: a 16-image sweep (4 seeds x 4 CFG values) through `sweep()` (cells batched, prompt encoded
once, one model load) vs the same 16 images as sequential single-image `txt2img` calls; speedup (target >= 2x on
CPU with the default model)."""

from __future__ import annotations

from bench.timing import alternate

SEEDS = [1, 2, 3, 4]
CFG_SCALES = [3.0, 5.0, 7.0, 9.0]
BASE = {"prompt": "a yellow square on a black background", "steps": 20, "do_not_save_samples": True}


def run(repeats: int = 3) -> dict:
    import serena_kit

    serena_kit.load_model()
    serena_kit.txt2img(BASE["prompt"], seed=0, steps=2, do_not_save_samples=True)  # warm-up

    def sweep():
        serena_kit.sweep(BASE, x=("cfg_scale", CFG_SCALES), y=("seed", SEEDS))

    def singles():
        for seed in SEEDS:
            for cfg_scale in CFG_SCALES:
                serena_kit.txt2img(BASE["prompt"], seed=seed, cfg_scale=cfg_scale, steps=20, do_not_save_samples=True)

    sweep_times, single_times = alternate([sweep, singles], repeats)
    speedup = min(single_times) / min(sweep_times)
    return {
        "name": "sweep_throughput",
        "speedup": speedup,
        "target": ">= 2x",
        "met": speedup >= 2,
        "sweep_s": min(sweep_times),
        "sequential_s": min(single_times),
        "images": len(SEEDS) * len(CFG_SCALES),
    }
