"""Live preview cost in GenerationForm on the default model: a 20-step generation with no preview, with a preview at
every step through the committed latent-to-RGB map, and with a full VAE decode at every step (what a model without a
map gets), interleaved in one run; the time per step of each and their ratios to no preview."""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

STEPS = 20


@contextmanager
def without_fitted_maps():
    """The default model as a model with no committed map: its previews are full decodes."""
    from modules import previews

    kept, previews.FITTED_MAPS = previews.FITTED_MAPS, {}
    try:
        yield
    finally:
        previews.FITTED_MAPS = kept


def run(repeats: int = 7) -> dict:
    import serena_kit as sk

    sk.load_model()
    forms = {
        every: sk.GenerationForm(
            prompt="a red circle", steps=STEPS, seed=1, preview_every=every, do_not_save_samples=True
        )
        for every in (0, 1)
    }
    times = {"off": [], "map": [], "decode": []}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name in times:
            start = time.perf_counter()
            if name == "decode":
                with without_fitted_maps():
                    forms[1].generate()
            else:
                forms[0 if name == "off" else 1].generate()
            times[name].append(time.perf_counter() - start)
    per_step = {name: statistics.median(values[1:]) / STEPS for name, values in times.items()}
    ratio = per_step["map"] / per_step["off"]
    return {
        "name": "preview_cost",
        "ratio": ratio,
        "ms_per_step_off": per_step["off"] * 1000,
        "ms_per_step_map": per_step["map"] * 1000,
        "ms_per_step_decode": per_step["decode"] * 1000,
        "map_ratio": ratio,
        "decode_ratio": per_step["decode"] / per_step["off"],
        "target": "map preview every step <= 1.10x",
        "met": ratio <= 1.10,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<20} {value:.3f}" if isinstance(value, float) else f"{key:<20} {value}")
