"""Seeds and initial noise with the webui's semantics, as pure functions.

Every image gets its noise from its own CPU generator, so an image depends only on its seeds, never on its position
in a batch or on the device the model runs on.
"""

from __future__ import annotations

import secrets

import torch

MAX_SEED = 2**32 - 1


def resolve_seed(seed: int) -> int:
    """-1 (or any negative) picks a random seed; the chosen value is what gets recorded."""
    if seed is None or seed < 0:
        return secrets.randbelow(MAX_SEED + 1)
    return int(seed)


def image_seeds(first_seed: int, count: int) -> list[int]:
    """Image i of a job gets seed + i, as in the webui."""
    return [(first_seed + i) % (MAX_SEED + 1) for i in range(count)]


def randn(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32)


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from `low` (strength 0) to `high` (strength 1)."""
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:  # nearly parallel: the arc is a line
        return low * (1 - strength) + high * strength
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - strength) * omega) / so).unsqueeze(1) * low + (torch.sin(strength * omega) / so).unsqueeze(
        1
    ) * high


def image_noise(
    shape: tuple[int, int, int],
    seed: int,
    subseed: int = 0,
    subseed_strength: float = 0.0,
    seed_resize_from: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Initial latent noise (C, H, W) for one image.

    `subseed_strength` blends towards the subseed's noise (variation seeds). `seed_resize_from` is a latent size
    (h, w): the noise is drawn at that size and pasted centred into noise of the target size, so the composition of
    an image made at the old size carries over.
    """
    noise_shape = shape if seed_resize_from is None else (shape[0], *seed_resize_from)
    noise = randn(seed, noise_shape)
    if subseed_strength > 0:
        noise = slerp(subseed_strength, noise, randn(subseed, noise_shape))
    if noise_shape == shape:
        return noise
    canvas = randn(seed, shape)
    return paste_centered(canvas, noise)


def paste_centered(canvas: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """Copy `patch` onto the middle of `canvas` (C, H, W), cropping whichever is larger."""
    result = canvas.clone()
    offset_y = (canvas.shape[1] - patch.shape[1]) // 2
    offset_x = (canvas.shape[2] - patch.shape[2]) // 2
    height = min(canvas.shape[1], patch.shape[1])
    width = min(canvas.shape[2], patch.shape[2])
    canvas_y, patch_y = max(offset_y, 0), max(-offset_y, 0)
    canvas_x, patch_x = max(offset_x, 0), max(-offset_x, 0)
    result[:, canvas_y : canvas_y + height, canvas_x : canvas_x + width] = patch[
        :, patch_y : patch_y + height, patch_x : patch_x + width
    ]
    return result


def step_generators(seeds: list[int]) -> list[torch.Generator]:
    """Per-image generators for the noise that ancestral/SDE samplers draw at each step.

    Offset from the image seed so step noise is not a copy of the initial noise.
    """
    return [torch.Generator("cpu").manual_seed((seed + 0x5EED) % (MAX_SEED + 1)) for seed in seeds]
