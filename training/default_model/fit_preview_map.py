"""Fit the live preview's latent-to-RGB map for the default model (modules/default_model/latent_preview.json).

    python -m training.default_model.fit_preview_map [--generations 48] [--threads 2]

Least squares from latents to what the VAE decodes from them, box-downscaled to latent size (the full-decode preview,
`modules.previews.decoded_preview`). The latents come from real generations of the default model with varied
captions, seeds, samplers and step counts: each one's final latents and its midway latents, since a preview shows
images still being sampled. A quarter of the generations are held out; the error on them (mean absolute difference,
0..255) is written into the JSON and printed, beside the old first-three-channels preview's on the same latents.
"""

import argparse

import numpy as np
import torch

from modules import diffusion, previews, sd_models
from modules.default_model import DEFAULT_PREVIEW_MAP
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from training.default_model.dataset import random_sample

SAMPLERS = ("Euler a", "DPM++ 2M", "DDIM", "Euler")
STEP_COUNTS = (6, 10, 16, 20, 30)
HELD_OUT_EVERY = 4  # every 4th generation is held out


def sampled_latents(generations: int) -> list[list[torch.Tensor]]:
    """Per generation: its midway and final (1, C, h, w) latents."""
    rng = np.random.default_rng(0)
    captured = []
    for index in range(generations):
        steps = STEP_COUNTS[index % len(STEP_COUNTS)]
        p = StableDiffusionProcessingTxt2Img(
            prompt=random_sample(rng).caption,
            seed=1000 + index,
            steps=steps,
            sampler_name=SAMPLERS[index % len(SAMPLERS)],
            do_not_save_samples=True,
        )
        kept = []
        p.state.listeners.append(
            lambda state, kept=kept, steps=steps: (
                state.sampling_step in (steps // 2, steps)
                and kept.append(state.current_latent.detach().float().cpu().clone())
            )
        )
        process_images(p)
        captured.append(kept)
    return captured


def pixel_rows(model, latents: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Latent pixels (N, C) and the decoded images' pixels at latent size (N, 3) in 0..1."""
    inputs, targets = [], []
    for latent in latents:
        decoded = previews.decoded_preview(model, latent.to(model.device, model.dtype))
        inputs.append(latent[0].flatten(1).T.numpy())
        targets.append(np.asarray(decoded, dtype=np.float64).reshape(-1, 3) / 255)
    return np.concatenate(inputs), np.concatenate(targets)


def fit(inputs: np.ndarray, targets: np.ndarray) -> previews.LatentRGBMap:
    with_ones = np.concatenate([inputs, np.ones((len(inputs), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(with_ones, targets, rcond=None)  # (C + 1, 3)
    weights = tuple(tuple(round(float(value), 6) for value in column) for column in solution[:-1].T)
    return previews.LatentRGBMap(weights, tuple(round(float(value), 6) for value in solution[-1]))


def mean_abs_error(model, latents: list[torch.Tensor], preview) -> float:
    """Mean absolute difference (0..255) between `preview(latents)` and the decoded image at latent size."""
    errors = []
    for latent in latents:
        decoded = np.asarray(previews.decoded_preview(model, latent.to(model.device, model.dtype)), dtype=np.float64)
        errors.append(np.abs(np.asarray(preview(latent), dtype=np.float64) - decoded).mean())
    return float(np.mean(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = sd_models.load_model()
    captured = sampled_latents(args.generations)
    train = [latent for index, kept in enumerate(captured) if index % HELD_OUT_EVERY for latent in kept]
    held_out = [kept for index, kept in enumerate(captured) if not index % HELD_OUT_EVERY]
    rgb_map = fit(*pixel_rows(model, train))

    def fitted(latent):
        return previews.preview_image(model, latent, rgb_map)

    errors = {
        "train_mean_abs_error": mean_abs_error(model, train, fitted),
        "held_out_mean_abs_error": mean_abs_error(model, [latent for kept in held_out for latent in kept], fitted),
        "held_out_final_mean_abs_error": mean_abs_error(model, [kept[-1] for kept in held_out], fitted),
        "held_out_final_first_three_channels_mean_abs_error": mean_abs_error(
            model, [kept[-1] for kept in held_out], diffusion.latents_to_rgb_preview
        ),
    }
    errors = {name: round(value, 2) for name, value in errors.items()}
    rgb_map.save(
        DEFAULT_PREVIEW_MAP,
        fitted_by="python -m training.default_model.fit_preview_map",
        latents=f"{len(train)} (midway and final of {args.generations - len(held_out)} generations)",
        error_units="mean absolute difference per channel, 0..255, against the decode box-downscaled to latent size",
        **errors,
    )
    for name, value in errors.items():
        print(f"{name:<52} {value:6.2f}")
    print(f"wrote {DEFAULT_PREVIEW_MAP}")


if __name__ == "__main__":
    main()
