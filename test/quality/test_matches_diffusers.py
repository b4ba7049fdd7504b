"""Serena's sampling loop gives exactly the pixels of diffusers' own pipeline, given the same starting noise."""

import numpy as np
import pytest
from diffusers import StableDiffusionPipeline

from modules import rng, sd_models, sd_samplers
from modules.processing import StableDiffusionProcessingTxt2Img, process_images


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler", "DDIM", "UniPC"])
def test_same_pixels_as_stable_diffusion_pipeline_call(sampler):
    # Serena's job first: it brings the cached model to this job's state (a test before may have left another VAE,
    # LoRA layers or embeddings in it, which the bare pipeline below would otherwise run with).
    ours = process_images(
        StableDiffusionProcessingTxt2Img(
            prompt="a purple circle on an orange background",
            seed=21,
            steps=12,
            cfg_scale=6.0,
            sampler_name=sampler,
            do_not_save_samples=True,
        )
    ).images[0]
    model = sd_models.load_model(speedups=None)
    pipeline = StableDiffusionPipeline(**model.pipeline.components)
    pipeline.scheduler = sd_samplers.create_scheduler(sampler, "Automatic", model.pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    latent_size = model.native_size // model.vae_scale_factor
    noise = rng.image_noise((4, latent_size, latent_size), 21)  # what Serena draws for seed 21
    raw = pipeline(
        prompt="a purple circle on an orange background",
        negative_prompt="",
        num_inference_steps=12,
        guidance_scale=6.0,
        height=model.native_size,
        width=model.native_size,
        latents=noise[None],
    ).images[0]
    assert np.array_equal(np.asarray(raw), np.asarray(ours))
