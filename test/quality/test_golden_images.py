"""M10 invariant: byte-identical outputs. Committed golden PNGs, infotext replay, and batch independence."""

import numpy as np
import pytest
from golden_cases import GOLDEN_DIR, generate, golden_jobs
from helpers import max_pixel_difference, png_of

from modules.processing import StableDiffusionProcessingTxt2Img, process_images, process_images_inner
from modules.replay import processing_from_infotext


@pytest.mark.parametrize("name", sorted(golden_jobs()))
def test_golden_image_is_reproduced_byte_for_byte(name):
    assert generate(name) == (GOLDEN_DIR / f"{name}.png").read_bytes()


@pytest.mark.parametrize("name", ["txt2img_euler_a", "txt2img_dpmpp_2m_karras", "txt2img_variation_seed"])
def test_replaying_the_infotext_reproduces_the_png_bytes(name):
    golden = (GOLDEN_DIR / f"{name}.png").read_bytes()
    from helpers import load_png

    replayed = process_images(processing_from_infotext(load_png(golden).info["parameters"])).images[0]
    assert png_of(replayed) == golden


def test_img2img_replay_with_its_init_image_reproduces_the_png_bytes():
    from golden_cases import init_image
    from helpers import load_png

    golden = (GOLDEN_DIR / "img2img_euler.png").read_bytes()
    job = processing_from_infotext(load_png(golden).info["parameters"], init_images=[init_image()])
    assert png_of(process_images(job).images[0]) == golden


def test_a_noise_multiplier_of_one_leaves_the_golden_img2img_bytes_unchanged():
    """The golden was made before img2img had a noise multiplier; 1.0 (the default, not written) changes nothing."""
    import dataclasses

    golden = (GOLDEN_DIR / "img2img_euler.png").read_bytes()
    unchanged = dataclasses.replace(golden_jobs()["img2img_euler"], initial_noise_multiplier=1.0)
    assert png_of(process_images(unchanged).images[0]) == golden


def job(**fields):
    values = (
        dict(
            prompt="a blue circle on a white background",
            steps=8,
            sampler_name="Euler a",
            do_not_save_samples=True,
            do_not_save_grid=True,
        )
        | fields
    )
    return StableDiffusionProcessingTxt2Img(**values)


def test_seed_alone_equals_batch_position_in_exact_mode():
    batch = process_images(job(seed=100, batch_size=4, exact=True))
    for position in range(4):
        alone = process_images(job(seed=100 + position)).images[0]
        assert np.array_equal(np.asarray(alone), np.asarray(batch.images[position]))  # no grid: do_not_save_grid
        assert batch.all_seeds[position] == 100 + position


def test_exact_mode_bytes_do_not_depend_on_batch_size():
    one_by_one = process_images(job(seed=7, batch_size=1, n_iter=4, exact=True))
    in_batches = process_images(job(seed=7, batch_size=4, n_iter=1, exact=True))
    assert [np.asarray(image).tobytes() for image in one_by_one.images] == [
        np.asarray(image).tobytes() for image in in_batches.images[in_batches.index_of_first_image :]
    ]


def test_batched_mode_differs_from_single_images_by_at_most_one_level():
    batched = process_images(job(seed=40, batch_size=4))
    samples = batched.images[batched.index_of_first_image :]
    differences = [
        max_pixel_difference(process_images(job(seed=40 + position)).images[0], samples[position])
        for position in range(4)
    ]
    assert max(differences) <= 1, differences


def test_ancestral_noise_is_per_image_not_per_batch_position():
    """Image k of a batch keeps its seed's look when the batch around it changes (step noise is per image)."""
    first = process_images(job(seed=300, batch_size=2, sampler_name="DPM++ 2M SDE"))
    shifted = process_images(job(seed=299, batch_size=2, sampler_name="DPM++ 2M SDE"))
    # seed 300 is position 0 in the first batch and position 1 in the second
    assert max_pixel_difference(first.images[0], shifted.images[1]) <= 1


def test_direct_engine_and_runner_agree_on_a_variation_seed_job():
    fields = dict(seed=9, subseed=10, subseed_strength=0.5)
    assert png_of(process_images(job(**fields)).images[0]) == png_of(process_images_inner(job(**fields)).images[0])
