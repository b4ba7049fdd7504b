"""Bad input fails before any model work, naming the field and what is allowed, and writes nothing."""

import re

import pytest
from PIL import Image

from modules import sd_models
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images

SAMPLERS = "Euler, Euler a, Heun, LMS, DPM2, DPM2 a, DPM++ 2M, DPM++ 2M SDE, DPM++ SDE, DDIM, PLMS, UniPC, LCM"
SIZES = "allowed multiples of 8 from 8 to 4096"
OPTIONS = (
    "sd_model_checkpoint, sd_vae, forge_additional_modules, inpainting_mask_weight, CLIP_stop_at_last_layers, "
    "emphasis, eta_ddim, eta_noise_seed_delta, samples_save, grid_save, samples_format"
)

BAD_TXT2IMG = [
    ({"steps": 0}, ValueError, "steps: 0 is out of range; allowed 1..1000"),
    ({"steps": 2.5}, TypeError, "steps: expected an integer, got float 2.5"),
    ({"steps": True}, TypeError, "steps: expected an integer, got bool True"),
    ({"cfg_scale": "7"}, TypeError, "cfg_scale: expected a number, got str '7'"),
    ({"cfg_scale": float("nan")}, ValueError, "cfg_scale: nan is out of range; allowed 0.0..50.0"),
    ({"width": 33}, ValueError, f"width: 33 is not allowed; {SIZES}"),
    ({"height": 100000}, ValueError, f"height: 100000 is not allowed; {SIZES}"),
    ({"batch_size": 0}, ValueError, "batch_size: 0 is out of range; allowed 1..64"),
    ({"n_iter": -1}, ValueError, "n_iter: -1 is out of range; allowed 1..1000"),
    ({"seed": -2}, ValueError, "seed: -2 is out of range; allowed -1 (random) or 0..4294967295"),
    ({"seed": 2**32}, ValueError, "seed: 4294967296 is out of range; allowed -1 (random) or 0..4294967295"),
    ({"subseed": "1"}, TypeError, "subseed: expected an integer, got str '1'"),
    ({"subseed_strength": 1.5}, ValueError, "subseed_strength: 1.5 is out of range; allowed 0.0..1.0"),
    ({"seed_resize_from_h": 12}, ValueError, f"seed_resize_from_h: 12 is not allowed; {SIZES}"),
    ({"seed_resize_from_w": -5}, ValueError, "seed_resize_from_w: -5 is not allowed; allowed -1 or 0 (off) or a size"),
    ({"sampler_name": "Euler b"}, ValueError, f"sampler_name: unknown sampler 'Euler b'; valid samplers: {SAMPLERS}"),
    ({"sampler_name": 3}, TypeError, "sampler_name: expected a sampler name, got int 3"),
    (
        {"scheduler": "Karras", "sampler_name": "PLMS"},
        ValueError,
        "scheduler: 'Karras' is not available with sampler 'PLMS'; valid for it: Automatic",
    ),
    (
        {"scheduler": "Wavy"},
        ValueError,
        "scheduler: unknown schedule type 'Wavy'; valid: Automatic, Karras, Exponential",
    ),
    (
        {"sampler_name": "DPM++ 2M Karras", "scheduler": "Exponential"},
        ValueError,
        "sampler_name: 'DPM++ 2M Karras' is sampler 'DPM++ 2M' with schedule type 'Karras', but scheduler names "
        "another; give sampler_name 'DPM++ 2M' and the scheduler you want",
    ),
    ({"eta": 2.0}, ValueError, "eta: 2.0 is out of range; allowed 0.0..1.0"),
    ({"clip_skip": 0}, ValueError, "clip_skip: 0 is out of range; allowed 1..12"),
    ({"prompt": 5}, TypeError, "prompt: expected a string or a list of strings, got int 5"),
    ({"prompt": ["a", "b"]}, ValueError, "prompt: a list must have one value per image (1), got 2"),
    ({"styles": ["nope"]}, ValueError, "styles: unknown style 'nope'; available: none"),
    ({"styles": "nope"}, TypeError, "styles: expected a list of style names, got str 'nope'"),
    (
        {"sd_model_checkpoint": "missing-model"},
        ValueError,
        "sd_model_checkpoint: no model 'missing-model'; available: serena-default, serena-scenes, serena-flow "
        "(or a path)",
    ),
    (
        {"override_settings": {"bogus": 1}},
        ValueError,
        f"override_settings: unknown option 'bogus'; supported: {OPTIONS}",
    ),
    (
        {"override_settings": {"CLIP_stop_at_last_layers": 40}},
        ValueError,
        "clip_skip: 40 is out of range; allowed 1..12",
    ),
    ({"do_not_save_samples": "no"}, TypeError, "do_not_save_samples: expected true or false, got str 'no'"),
    ({"exact": 1}, TypeError, "exact: expected true or false, got int 1"),
]


def whole(message: str) -> str:
    """A `match=` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("fields, error, message", BAD_TXT2IMG)
def test_bad_txt2img_field_is_named_in_the_error_and_nothing_is_written(fields, error, message, tmp_path):
    p = StableDiffusionProcessingTxt2Img(**({"prompt": "x", "outpath_samples": str(tmp_path / "out")} | fields))
    with pytest.raises(error, match=whole(message)):
        process_images(p)
    assert not (tmp_path / "out").exists()


BAD_IMG2IMG = [
    ({"init_images": []}, ValueError, "init_images: at least one image is required for img2img"),
    ({"init_images": ["x.png"]}, TypeError, "init_images[0]: expected a PIL image, got str"),
    (
        {"init_images": [Image.new("RGB", (8, 8))] * 3, "batch_size": 2},
        ValueError,
        "init_images: give 1 image or batch_size (2) images, got 3",
    ),
    ({"denoising_strength": -0.1}, ValueError, "denoising_strength: -0.1 is out of range; allowed 0.0..1.0"),
    (
        {"initial_noise_multiplier": 2.0},
        ValueError,
        "initial_noise_multiplier: 2.0 is out of range; allowed 0.0..1.5",
    ),
    (
        {"resize_mode": 7},
        ValueError,
        "resize_mode: 7 is not allowed; allowed 0 (Just resize), 1 (Crop and resize), 2 (Resize and fill), "
        "3 (Just resize (latent upscale))",
    ),
]


@pytest.mark.parametrize("fields, error, message", BAD_IMG2IMG)
def test_bad_img2img_field_is_named_in_the_error(fields, error, message):
    values = {"prompt": "x", "init_images": [Image.new("RGB", (32, 32))]} | fields
    with pytest.raises(error, match=whole(message)):
        StableDiffusionProcessingImg2Img(**values).validate()


def test_validation_loads_no_model(monkeypatch):
    monkeypatch.setattr(sd_models.model_cache, "get", lambda *args, **kwargs: pytest.fail("model loaded"))
    with pytest.raises(ValueError, match=whole("steps: 0 is out of range; allowed 1..1000")):
        process_images(StableDiffusionProcessingTxt2Img(steps=0))


def test_a_valid_job_passes_validation_and_runs_with_its_overrides_applied():
    p = StableDiffusionProcessingTxt2Img(
        prompt=["a", "b"], batch_size=2, seed=-1, width=64, height=48, override_settings={"CLIP_stop_at_last_layers": 2}
    )
    p.validate()
    effective = p.effective()
    assert (effective.clip_skip, effective.override_settings) == (2, {})
    assert (p.clip_skip, p.override_settings) == (1, {"CLIP_stop_at_last_layers": 2})  # the caller's, unchanged


@pytest.mark.parametrize(
    "given, expected",
    [
        (("k_euler_a", "Automatic"), ("Euler a", "Automatic")),
        (("euler", "karras"), ("Euler", "Karras")),
        (("DPM++ 2M Karras", "Automatic"), ("DPM++ 2M", "Karras")),
        (("dpm++ 2m karras", "Karras"), ("DPM++ 2M", "Karras")),
        (("DPM++ 2M", "exponential"), ("DPM++ 2M", "Exponential")),
    ],
)
def test_samplers_and_schedule_types_are_kept_under_the_webuis_own_names(given, expected):
    p = StableDiffusionProcessingTxt2Img(sampler_name=given[0], scheduler=given[1])
    assert (p.sampler_name, p.scheduler) == expected
    p.validate()


# The hires pass's sampler and schedule type fall back to the first pass's ones (the webui's "Use same sampler" /
# "Use same scheduler"), and the pair is checked as the first pass's pair is.
BAD_HIRES = [
    (
        {"sampler_name": "PLMS", "hr_scheduler": "Karras"},
        "hr_scheduler: 'Karras' is not available with sampler 'PLMS'; valid for it: Automatic",
    ),
    (
        {"sampler_name": "Euler", "scheduler": "Karras", "hr_sampler_name": "PLMS"},
        "hr_scheduler: 'Karras' is not available with sampler 'PLMS'; valid for it: Automatic",
    ),
    (
        {"width": 512, "height": 256, "hr_scale": 16.0},
        "hr_scale: the hires size 8192x4096 from a 512x256 first pass is out of range; allowed 8..4096 per side",
    ),
]


@pytest.mark.parametrize("fields, message", BAD_HIRES)
def test_bad_hires_pair_is_refused_naming_the_hires_field(fields, message):
    with pytest.raises(ValueError, match=whole(message)):
        StableDiffusionProcessingTxt2Img(prompt="x", enable_hr=True, **fields).validate()


@pytest.mark.parametrize(
    "fields",
    [
        {"sampler_name": "PLMS", "hr_sampler_name": "Euler", "hr_scheduler": "Karras"},
        {"sampler_name": "Euler", "scheduler": "Karras", "hr_sampler_name": "PLMS", "hr_scheduler": "Automatic"},
        {"sampler_name": "PLMS", "hr_scheduler": "Karras", "enable_hr": False},  # no hires pass: nothing to check
        # a side left to the model's native size: the hires size is checked once the model is known
        {"width": None, "height": 256, "hr_scale": 16.0},
        {"width": 256, "height": None, "hr_scale": 16.0},
    ],
)
def test_valid_hires_pairs_pass(fields):
    StableDiffusionProcessingTxt2Img(prompt="x", **({"enable_hr": True} | fields)).validate()


# One refusal per kind of field, wrong type and wrong value, each message whole: the field's name, what is allowed.
BAD_BY_KIND = [
    ({"scheduler": 3}, TypeError, "scheduler: expected a schedule type, got int 3"),
    (
        {"enable_hr": True, "hr_scheduler": "Wavy"},
        ValueError,
        "hr_scheduler: unknown schedule type 'Wavy'; valid: Automatic, Karras, Exponential",
    ),
    (
        {"enable_hr": True, "hr_sampler_name": "Nope"},
        ValueError,
        f"hr_sampler_name: unknown sampler 'Nope'; valid samplers: {SAMPLERS}",
    ),
    ({"enable_hr": True, "hr_upscaler": 3}, TypeError, "hr_upscaler: expected an upscaler name, got int 3"),
    ({"enable_hr": "yes"}, TypeError, "enable_hr: expected true or false, got str 'yes'"),
    ({"sd_vae": 3}, TypeError, "sd_vae: expected Automatic, None or a VAE file name in the VAE folder, got int 3"),
    ({"sd_model_checkpoint": 3}, TypeError, "sd_model_checkpoint: expected a checkpoint name or path, got int 3"),
    ({"outpath_samples": 3}, TypeError, "outpath_samples: expected a folder path, got int 3"),
    ({"hr_prompt": 3}, TypeError, "hr_prompt: expected a prompt, got int 3"),
    ({"samples_format": "gif"}, ValueError, "samples_format: 'gif' is not allowed; allowed png, jpg, jpeg, webp"),
    ({"samples_format": 1}, TypeError, "samples_format: expected a string, got int 1"),
    ({"emphasis": "Loud"}, ValueError, "emphasis: 'Loud' is not allowed; allowed Original, No norm, Ignore, None"),
    ({"emphasis": 1}, TypeError, "emphasis: expected a string, got int 1"),
    ({"styles": ["a", 3]}, TypeError, "styles[1]: expected a name, got int 3"),
    ({"override_settings": "x"}, TypeError, "override_settings: expected a dict of webui options, got str 'x'"),
    ({"extra_generation_params": [1]}, TypeError, "extra_generation_params: expected a dict, got list [1]"),
    ({"eta": "0.5"}, TypeError, "eta: expected a number, got str '0.5'"),
    ({"width": None, "height": 4097}, ValueError, f"height: 4097 is not allowed; {SIZES}"),
    ({"seed_resize_from_w": 1}, ValueError, f"seed_resize_from_w: 1 is not allowed; {SIZES}"),  # on, not a size
]


@pytest.mark.parametrize("fields, error, message", BAD_BY_KIND)
def test_each_kind_of_field_refuses_with_its_own_message(fields, error, message):
    with pytest.raises(error, match=whole(message)):
        StableDiffusionProcessingTxt2Img(prompt="x", **fields).validate()


BAD_IMG2IMG_BY_KIND = [
    ({"mask": "x.png"}, TypeError, "mask: expected a PIL image, got str"),
    ({"latent_mask": 3}, TypeError, "latent_mask: expected a PIL image, got int"),
    ({"mask": Image.new("L", (0, 8))}, ValueError, "mask: 0x8 is out of range; allowed 1..4096 per side"),
    ({"mask": Image.new("L", (8, 0))}, ValueError, "mask: 8x0 is out of range; allowed 1..4096 per side"),
    ({"mask": Image.new("L", (5000, 8))}, ValueError, "mask: 5000x8 is out of range; allowed 1..4096 per side"),
    (
        {"init_images": [Image.new("RGB", (8, 5000))]},
        ValueError,
        "init_images[0]: 8x5000 is out of range; allowed 1..4096 per side",
    ),
    (
        {"init_images": [Image.new("RGB", (0, 8))]},
        ValueError,
        "init_images[0]: 0x8 is out of range; allowed 1..4096 per side",
    ),
    (
        {"init_images": [Image.new("RGB", (8, 0))]},
        ValueError,
        "init_images[0]: 8x0 is out of range; allowed 1..4096 per side",
    ),
    ({"init_images": "x"}, TypeError, "init_images: expected a list of PIL images, got str 'x'"),
    (
        {"inpainting_mask_invert": 2},
        ValueError,
        "inpainting_mask_invert: 2 is not allowed; allowed 0 (Inpaint masked), 1 (Inpaint not masked)",
    ),
    ({"resize_mode": "1"}, TypeError, "resize_mode: expected an integer, got str '1'"),
    ({"mask_blur": -1}, ValueError, "mask_blur: -1 is out of range; allowed 0..64"),
]


@pytest.mark.parametrize("fields, error, message", BAD_IMG2IMG_BY_KIND)
def test_each_kind_of_img2img_field_refuses_with_its_own_message(fields, error, message):
    values = {"prompt": "x", "init_images": [Image.new("RGB", (8, 8))]} | fields
    with pytest.raises(error, match=whole(message)):
        StableDiffusionProcessingImg2Img(**values).validate()


@pytest.mark.parametrize(
    "fields",
    [
        {"inpainting_mask_invert": True},  # webui clients send a bool for this 0/1 choice
        {"inpainting_mask_invert": 1},
        {"mask": Image.new("L", (4096, 1))},  # both ends of the image size
        {"mask": Image.new("L", (1, 4096))},
        {"init_images": [Image.new("RGB", (1, 4096))]},
        {"samples_format": "PNG"},  # names are matched case-insensitively
    ],
)
def test_edge_values_of_each_kind_pass(fields):
    values = {"prompt": "x", "init_images": [Image.new("RGB", (8, 8))]} | fields
    StableDiffusionProcessingImg2Img(**values).validate()
