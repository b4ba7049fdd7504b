"""Live preview cost in GenerationForm on the default model: a 20-step generation with no preview, with a preview at
every step through the committed latent-to-RGB map, with a full VAE decode at every step (what the form does for
small latents such as this model's, for true colours), and the form's default (a decoded preview every 5 steps),
interleaved in one run; the time per step of each and their ratios to no preview."""

from __future__ import annotations

import statistics
import time

STEPS = 20


def run(repeats: int = 7) -> dict:
    import serena_kit as sk
    from modules import previews, sd_models

    model = sk.load_model()
    fitted = previews.fitted_map(model)

    def form(every: int, preview_map=None):
        fields = {"prompt": "a red circle", "steps": STEPS, "seed": 1, "do_not_save_samples": True}
        return sk.GenerationForm(**fields, preview_every=every, preview_map=preview_map)

    # The form decodes small models' previews (true colours); the fitted map is what larger latents get.
    forms = {"off": form(0), "map": form(1, fitted), "decode": form(1), "default": form(5)}
    times = {name: [] for name in forms}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name, each in forms.items():
            start = time.perf_counter()
            each.generate()
            times[name].append(time.perf_counter() - start)
    per_step = {name: statistics.median(values[1:]) / STEPS for name, values in times.items()}
    ratio = per_step["map"] / per_step["off"]
    assert sd_models.model_cache.loaded is model
    return {
        "name": "preview_cost",
        "ratio": ratio,
        "ms_per_step_off": per_step["off"] * 1000,
        "ms_per_step_map": per_step["map"] * 1000,
        "ms_per_step_decode": per_step["decode"] * 1000,
        "map_ratio": ratio,
        "decode_ratio": per_step["decode"] / per_step["off"],
        "default_form_ratio": per_step["default"] / per_step["off"],
        "target": "map preview every step <= 1.10x",
        "met": ratio <= 1.10,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<20} {value:.3f}" if isinstance(value, float) else f"{key:<20} {value}")
