"""Serena vs raw diffusers: the same generation (same model object, sampler, seed noise, size, steps) through
`serena_kit.txt2img` and through a direct `StableDiffusionPipeline.__call__`, alternating; ratio of medians
(target <= 1.02) and whether the pixels are identical.
"""

from __future__ import annotations

import statistics

import numpy as np

from bench.timing import alternate

PROMPT = "a red circle on a blue background"


def run(runs: int = 10, steps: int = 20) -> dict:
    from diffusers import StableDiffusionPipeline

    import serena_kit
    from modules import rng, sd_models, sd_samplers

    model = sd_models.load_model(speedups=None)
    pipeline = StableDiffusionPipeline(**model.pipeline.components)
    pipeline.scheduler = sd_samplers.create_scheduler("DPM++ 2M", "Automatic", model.pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    latent_size = model.native_size // model.vae_scale_factor
    noise = rng.image_noise((4, latent_size, latent_size), 1)[None]

    def raw():
        return pipeline(
            prompt=PROMPT, negative_prompt="", num_inference_steps=steps, guidance_scale=7.0, latents=noise.clone()
        ).images[0]

    def serena():
        return serena_kit.txt2img(PROMPT, seed=1, steps=steps, sampler_name="DPM++ 2M").images[0]

    identical = np.array_equal(np.asarray(raw()), np.asarray(serena()))  # also the warm-up
    serena_times, raw_times = alternate([serena, raw], runs)
    ratio = statistics.median(serena_times) / statistics.median(raw_times)
    return {
        "name": "serena_vs_diffusers",
        "ratio": ratio,
        "target": "<= 1.02",
        "met": ratio <= 1.02,
        "identical_pixels": identical,
        "serena_ms": statistics.median(serena_times) * 1000,
        "diffusers_ms": statistics.median(raw_times) * 1000,
    }
