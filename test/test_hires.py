"""Hires fix on the default model: sizes, the webui's infotext keys, replay, progress over both passes, interrupt
and skip in the second pass, and the errors that name the field."""

import pytest
from helpers import png_of

from modules import hires, infotext
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext

PROMPT = "a red circle on a blue background"


def job(**fields):
    values = {"prompt": PROMPT, "seed": 3, "steps": 4, "enable_hr": True, "do_not_save_samples": True} | fields
    return StableDiffusionProcessingTxt2Img(**values)


@pytest.mark.parametrize(
    "args, size, truncate",
    [
        ((32, 32, 2.0, 0, 0), (64, 64), (0, 0)),
        ((32, 24, 1.5, 0, 0), (48, 36 // 8 * 8), (0, 0)),
        ((32, 32, 2.0, 64, 0), (64, 64), (0, 0)),
        ((32, 32, 2.0, 0, 48), (48, 48), (0, 0)),
        ((32, 32, 2.0, 64, 48), (64, 48), (0, 2)),  # cover 64x48 with 64x64, then crop 16 rows (2 latent rows)
    ],
)
def test_target_is_the_webuis_calculate_target_resolution(args, size, truncate):
    target = hires.target(*args)
    assert (target.width, target.height) == size
    assert (target.truncate_x, target.truncate_y) == truncate


def test_hires_latent_and_lanczos_make_the_larger_image_with_the_webuis_keys():
    for upscaler in ("Latent", "Lanczos"):
        result = process_images(job(hr_upscaler=upscaler, hr_second_pass_steps=3, hr_sampler_name="Euler"))
        parsed = infotext.parse_infotext(result.info)
        assert result.images[0].size == (64, 64)
        assert parsed["Size-1"] == "32" and parsed["Hires upscale"] == "2" and parsed["Hires upscaler"] == upscaler
        assert parsed["Hires steps"] == "3" and parsed["Hires sampler"] == "Euler"
        assert parsed["Denoising strength"] == "0.75"


def test_replay_reproduces_the_bytes_of_every_hires_key():
    p = job(
        hr_resize_x=64,
        hr_resize_y=48,
        hr_upscaler="Latent (bicubic antialiased)",
        hr_second_pass_steps=2,
        hr_scheduler="Karras",
        sampler_name="DPM++ 2M",
        hr_prompt="a red circle on a blue background, sharp",
        hr_negative_prompt="blurry",
        denoising_strength=0.6,
    )
    result = process_images(p)
    assert result.images[0].size == (64, 48)
    parsed = infotext.parse_infotext(result.info)
    assert parsed["Hires resize-1"] == "64" and parsed["Hires resize-2"] == "48" and "Hires upscale" not in parsed
    assert parsed["Hires schedule type"] == "Karras" and parsed["Hires negative prompt"] == "blurry"
    replayed = processing_from_infotext(result.info)
    assert replayed.enable_hr and replayed.hr_prompt == p.hr_prompt and replayed.hr_upscaler == p.hr_upscaler
    assert png_of(process_images(replayed).images[0]) == png_of(result.images[0])


def test_legacy_firstphase_size_is_the_first_pass_and_width_height_the_result():
    result = process_images(job(firstphase_width=32, firstphase_height=32, width=64, height=48))
    assert result.images[0].size == (64, 48)
    parsed = infotext.parse_infotext(result.info)
    assert parsed["Size-1"] == "32" and parsed["Hires resize-1"] == "64"


def test_without_enable_hr_the_hires_fields_change_nothing():
    plain = process_images(job(enable_hr=False))
    ignored = process_images(job(enable_hr=False, hr_scale=3.0, hr_upscaler="Nearest", denoising_strength=0.3))
    assert png_of(plain.images[0]) == png_of(ignored.images[0]) and "Hires" not in plain.info


def test_progress_covers_both_passes():
    p = job(steps=3, hr_second_pass_steps=2, batch_size=1, n_iter=2)
    seen = []
    p.state.listeners.append(lambda state: seen.append((state.job_no, state.sampling_step, state.job_count)))
    process_images(p)
    assert [entry[0] for entry in seen] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert {entry[2] for entry in seen} == {4}


@pytest.mark.parametrize("stop", ["interrupt", "skip"])
def test_interrupt_and_skip_work_in_the_second_pass(stop):
    p = job(steps=2, hr_second_pass_steps=3, n_iter=2)

    def stop_in_second_pass(state):
        if state.job_no == 1 and state.sampling_step == 1:
            getattr(state, stop)()

    p.state.listeners.append(stop_in_second_pass)
    result = process_images(p)
    if stop == "interrupt":
        assert result.interrupted and result.images == []
    else:  # the first batch is skipped, the second made
        assert len(result.images) == 1 and result.seed == 4


@pytest.mark.parametrize(
    "fields, error, message",
    [
        ({"hr_scale": 0.0}, ValueError, r"^hr_scale: 0.0 is out of range; allowed 0.1..16"),
        ({"hr_scale": 16.0, "width": 512, "height": 512}, ValueError, r"^hr_scale: the hires size 8192x8192 .*4096"),
        ({"hr_resize_x": 5000}, ValueError, r"^hr_resize_x: 5000 is out of range"),
        ({"hr_upscaler": "ESRGAN_4x"}, ValueError, r"^hr_upscaler: unknown upscaler 'ESRGAN_4x'; valid: Latent, "),
        ({"hr_sampler_name": "Nope"}, ValueError, r"^hr_sampler_name: "),
    ],
)
def test_bad_hires_fields_are_refused_naming_the_field(fields, error, message):
    with pytest.raises(error, match=message):
        job(**fields).validate()


def test_a_vanishing_denoising_strength_makes_a_bounded_schedule():
    """Found by the API fuzzer: strength 5e-324 made an infinite schedule length (a server error)."""
    from modules.hires import MAX_SCHEDULE_STEPS, second_pass_steps

    assert second_pass_steps(20, 0.5) == (40, 20) and second_pass_steps(20, 1.0) == (20, 20)
    assert second_pass_steps(1, 5e-324) == (MAX_SCHEDULE_STEPS, 1)
    result = process_images(job(steps=1, hr_second_pass_steps=1, denoising_strength=5e-324, batch_size=1))
    assert result.images[0].size == (64, 64)
