"""The denoising trajectory (modules.trajectory): an observer that keeps every step's latents and the sampler's
clean-image prediction without changing the image, shown as a film strip; the prediction converges on the image."""

from pathlib import Path

import numpy as np
import pytest
from helpers import png_of
from PIL import Image

from modules.default_model import scoring
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.trajectory import TrajectoryCapture
from serena_kit.cli import main

PROMPT = "a yellow square on a purple background"


def generate(**fields):
    fields = {"prompt": PROMPT, "seed": 5, "steps": 10, "do_not_save_samples": True, "do_not_save_grid": True} | fields
    return process_images(StableDiffusionProcessingTxt2Img(**fields))


@pytest.mark.parametrize("sampler, predicts", [("Euler a", True), ("DPM++ 2M", True), ("UniPC", True), ("PLMS", False)])
def test_capturing_the_trajectory_keeps_the_bytes_and_every_step(sampler, predicts):
    plain = generate(sampler_name=sampler, batch_size=2)
    captured = generate(sampler_name=sampler, batch_size=2, trajectory=True)
    assert [png_of(image) for image in captured.images] == [png_of(image) for image in plain.images]
    assert len(captured.trajectories) == 2
    trajectory = captured.trajectories[1]
    steps = len(trajectory.frames)
    assert trajectory.latents.shape[0] == steps >= 10 and trajectory.latents.shape[1:] == (4, 8, 8)
    assert (trajectory.denoised is not None) == predicts  # PLMS predicts no clean sample: its frames are the latents


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_the_predicted_clean_image_settles_on_the_image_by_the_middle_step(seed):
    """Decoded frames (Euler a, 10 steps): the first frame's prediction is still wrong somewhere for the scorer; from
    the middle step on every frame is right in colour, background and shape and closer to the final image than the
    first frame was; the last frame is the image."""
    result = generate(seed=seed, trajectory=TrajectoryCapture(decode=True))
    final = np.asarray(result.images[0], dtype=np.float64)
    frames = result.trajectories[0].frames

    def right(frame) -> bool:
        return all(scoring.adherence(scoring.score_image(frame), "square", "yellow", "purple").values())

    def distance(frame) -> float:
        return float(np.abs(np.asarray(frame, dtype=np.float64) - final).mean())

    assert not right(frames[0])
    late = frames[len(frames) // 2 :]
    assert all(right(frame) and distance(frame) < distance(frames[0]) for frame in late)
    assert distance(frames[-1]) < 1


def test_the_film_strip_labels_every_nth_step_and_the_last():
    strip = generate(trajectory=True).trajectories[0].film_strip(every=3, cell_size=48)
    assert strip.width > 4 * 48 and strip.height > 48  # steps 3, 6, 9 and 10, labelled above


def test_the_cli_saves_a_film_strip_beside_each_image(capsys):
    code = main(["txt2img", "--prompt", PROMPT, "--steps", "4", "--seed", "9", "--trajectory", "--quiet", "--no-grid"])
    assert code == 0
    paths = capsys.readouterr().out.split()
    assert [Path(path).name.endswith("-trajectory.png") for path in paths] == [False, True]
    assert Image.open(paths[1]).width > Image.open(paths[0]).width
