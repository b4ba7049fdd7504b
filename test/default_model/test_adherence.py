"""The committed default model draws what the prompt says: adherence measured with the project's scorer."""

import numpy as np
import pytest

from modules.default_model import dataset, scoring
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images

# 12 fixed prompts x seeds: every shape, every colour as shape and as background at least once.
CASES = [
    ("circle", "red", "blue", 0),
    ("square", "green", "white", 1),
    ("triangle", "blue", "yellow", 2),
    ("circle", "yellow", "black", 3),
    ("square", "white", "purple", 4),
    ("triangle", "black", "orange", 5),
    ("circle", "orange", "green", 6),
    ("square", "purple", "red", 7),
    ("triangle", "red", "white", 8),
    ("circle", "blue", "orange", 9),
    ("square", "black", "yellow", 10),
    ("triangle", "green", "purple", 11),
]


def generate(cfg_scale: float):
    job = StableDiffusionProcessingTxt2Img(
        prompt=[dataset.caption_for(shape, colour, background) for shape, colour, background, _ in CASES],
        seed=[seed for *_, seed in CASES],
        cfg_scale=cfg_scale,
        batch_size=len(CASES),
        steps=20,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    return process_images(job).images


def rates(images) -> dict[str, float]:
    matches = [
        scoring.adherence(scoring.score_image(image), shape, colour, background)
        for image, (shape, colour, background, _) in zip(images, CASES)
    ]
    return {criterion: float(np.mean([match[criterion] for match in matches])) for criterion in matches[0]}


# The committed model follows prompts best around CFG 3; at the webui's default 7 it over-saturates (see
# docs/default_model.md), so the adherence floor is checked at 3.
RECOMMENDED_CFG = 3.0


@pytest.fixture(scope="module")
def recommended_cfg_rates():
    return rates(generate(RECOMMENDED_CFG))


def test_colour_and_background_adherence_at_the_recommended_cfg(recommended_cfg_rates):
    assert recommended_cfg_rates["colour"] >= 0.9, recommended_cfg_rates
    assert recommended_cfg_rates["background"] >= 0.9, recommended_cfg_rates


def test_without_the_prompt_the_model_does_not_follow_it(recommended_cfg_rates):
    """CFG 0 keeps only the unconditional prediction: the prompt (hence guidance) is what makes adherence."""
    unconditional = rates(generate(0.0))
    assert unconditional["colour"] + unconditional["background"] < 0.6 * (
        recommended_cfg_rates["colour"] + recommended_cfg_rates["background"]
    ), (unconditional, recommended_cfg_rates)


def test_img2img_at_low_strength_keeps_the_input_background():
    kept = 0
    for index in range(4):
        sample = dataset.random_sample(np.random.default_rng(100 + index))
        image = process_images(
            StableDiffusionProcessingImg2Img(
                prompt=dataset.caption_for(sample.shape, sample.colour, sample.background),
                init_images=[dataset.render(sample)],
                denoising_strength=0.3,
                cfg_scale=RECOMMENDED_CFG,
                seed=index,
                steps=20,
                do_not_save_samples=True,
            )
        ).images[0]
        kept += scoring.score_image(image).background == sample.background
    assert kept == 4


def test_small_variation_strength_keeps_the_composition():
    def image(**fields):
        job = StableDiffusionProcessingTxt2Img(
            prompt="a red circle on a blue background", steps=20, do_not_save_samples=True, **fields
        )
        return np.asarray(process_images(job).images[0], dtype=np.float64)

    base = image(seed=5)
    varied = image(seed=5, subseed=99, subseed_strength=0.1)
    other_seed = image(seed=99)
    assert np.abs(varied - base).mean() < 0.5 * np.abs(other_seed - base).mean()
