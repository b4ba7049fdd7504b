"""The denoising trajectory of a generation: at every step, the latents and the sampler's prediction of the clean
image, kept for analysis and shown as a film strip.

A capture is an observer: it listens to the job's steps (the state's listeners, which the live previews use too) and
copies what each step reports, so the image's bytes do not change. Frames are made when the batch's first pass ends:
each step's predicted clean latents (the latents themselves where the sampler predicts none: PLMS) through the
model's fitted preview map at latent size, or, with `decode=True` (or for a model without a map), decoded by the VAE
at full size. Only the first pass is captured (not a hires pass), as with attention maps.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from modules import diffusion, previews
from modules.grids import labelled_grid, upscale_for_display


@dataclass
class Trajectory:
    """One image's trajectory. `latents[i]` and `denoised[i]` (C, h, w) are after step i + 1; `denoised` is None
    when the sampler predicts no clean sample. `frames[i]`: step i + 1's predicted clean image."""

    latents: torch.Tensor  # (steps, C, h, w)
    denoised: torch.Tensor | None
    frames: list[Image.Image]

    def film_strip(self, every: int = 1, cell_size: int = 96) -> Image.Image:
        """The frames in a row, every `every`-th step and the last, labelled with their step."""
        steps = sorted({*range(every - 1, len(self.frames), every), len(self.frames) - 1})
        shown = [upscale_for_display(self.frames[index], cell_size) for index in steps]
        labels = [f"step {index + 1}" for index in steps]
        return labelled_grid([shown], column_labels=labels, row_labels=[], cell_size=cell_size)


@dataclass
class TrajectoryCapture:
    """Ask a job for its trajectory: `StableDiffusionProcessing(..., trajectory=TrajectoryCapture())` (or True);
    `Processed.trajectories` then holds one Trajectory per image. `decode`: frames decoded by the VAE (true colours,
    a decode per step) instead of the fitted preview map."""

    decode: bool = False
    trajectories: dict[int, Trajectory] = field(default_factory=dict, repr=False)  # by image index in the job


def frames_of(model, clean: torch.Tensor, decode: bool) -> list[list[Image.Image]]:
    """Per step, each image's frame from (steps, images, C, h, w) clean latents."""
    rgb_map = None if decode else previews.fitted_map(model)
    frames = []
    for step in clean:
        if rgb_map is None:
            with torch.inference_mode():
                frames.append(diffusion.decode_latents(model, step.to(model.device, model.dtype)))
        else:
            frames.append([previews.preview_image(model, row[None], rgb_map) for row in step])
    return frames


@contextmanager
def recording(capture: TrajectoryCapture | None, model, indices, state):
    """Around one batch's first-pass sampling: copies each step's latents and clean prediction, then makes the
    frames and keeps each image's Trajectory in `capture.trajectories`. Without a capture, nothing is touched."""
    if capture is None:
        yield
        return
    latents, denoised = [], []

    def listen(step_state) -> None:
        latents.append(step_state.current_latent.detach().float().cpu().clone())
        clean = step_state.current_denoised
        denoised.append(None if clean is None else clean.detach().float().cpu().clone())

    state.listeners.append(listen)
    try:
        yield
    finally:
        state.listeners.remove(listen)
    if not latents:
        return
    stacked = torch.stack(latents)
    has_clean = all(clean is not None for clean in denoised)
    clean = torch.stack(denoised) if has_clean else stacked
    frames = frames_of(model, clean, capture.decode)
    for position, index in enumerate(indices):
        capture.trajectories[index] = Trajectory(
            stacked[:, position],
            clean[:, position] if has_clean else None,
            [step[position] for step in frames],
        )


def save_beside_images(paths: list[str], trajectories: list[Trajectory]) -> list[str]:
    """Each saved sample's film strip beside it, as <image name>-trajectory.png; the paths."""
    from modules import images

    written = []
    for path, trajectory in zip(paths, trajectories):  # a result's samples' paths come first
        target = Path(path).with_name(f"{Path(path).stem}-trajectory.png")
        images.write_new_file(target, images.png_bytes(trajectory.film_strip(), None))
        written.append(str(target))
    return written
