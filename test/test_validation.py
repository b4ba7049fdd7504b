"""Bad input fails before any model work, naming the field and what is allowed, and writes nothing."""

import pytest
from PIL import Image

from modules import sd_models
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images

BAD_TXT2IMG = [
    ({"steps": 0}, ValueError, "steps: 0 is out of range; allowed 1..1000"),
    ({"steps": 2.5}, TypeError, "steps: expected an integer"),
    ({"steps": True}, TypeError, "steps: expected an integer, got bool"),
    ({"cfg_scale": "7"}, TypeError, "cfg_scale: expected a number"),
    ({"cfg_scale": float("nan")}, ValueError, "cfg_scale: nan is out of range"),
    ({"width": 33}, ValueError, "width: 33 is not allowed; allowed multiples of 8"),
    ({"height": 100000}, ValueError, "height: 100000 is not allowed"),
    ({"batch_size": 0}, ValueError, "batch_size: 0 is out of range"),
    ({"n_iter": -1}, ValueError, "n_iter: -1 is out of range"),
    ({"seed": -2}, ValueError, "seed: -2 is out of range; allowed -1 \\(random\\)"),
    ({"seed": 2**32}, ValueError, "seed: 4294967296 is out of range"),
    ({"subseed": "1"}, TypeError, "subseed: expected an integer"),
    ({"subseed_strength": 1.5}, ValueError, "subseed_strength: 1.5 is out of range; allowed 0.0..1.0"),
    ({"seed_resize_from_h": 12}, ValueError, "seed_resize_from_h: 12 is not allowed"),
    ({"seed_resize_from_w": -5}, ValueError, "seed_resize_from_w: -5 is not allowed; allowed -1 or 0"),
    ({"sampler_name": "Euler b"}, ValueError, "sampler_name: unknown sampler 'Euler b'; valid samplers: Euler, "),
    ({"sampler_name": 3}, TypeError, "sampler_name: expected a sampler name"),
    ({"scheduler": "Karras", "sampler_name": "PLMS"}, ValueError, "scheduler: 'Karras' is not available"),
    ({"eta": 2.0}, ValueError, "eta: 2.0 is out of range"),
    ({"clip_skip": 0}, ValueError, "clip_skip: 0 is out of range"),
    ({"prompt": 5}, TypeError, "prompt: expected a string or a list of strings"),
    ({"prompt": ["a", "b"]}, ValueError, "prompt: a list must have one prompt per image \\(1\\), got 2"),
    ({"styles": ["nope"]}, ValueError, "styles: unknown style 'nope'; available: none"),
    ({"styles": "nope"}, TypeError, "styles: expected a list of style names"),
    ({"sd_model_checkpoint": "missing-model"}, ValueError, "sd_model_checkpoint: no model 'missing-model'; available"),
    ({"override_settings": {"bogus": 1}}, ValueError, "override_settings: unknown option 'bogus'; supported: "),
    ({"override_settings": {"CLIP_stop_at_last_layers": 40}}, ValueError, "clip_skip: 40 is out of range"),
    ({"do_not_save_samples": "no"}, TypeError, "do_not_save_samples: expected true or false"),
    ({"exact": 1}, TypeError, "exact: expected true or false"),
]


@pytest.mark.parametrize("fields, error, message", BAD_TXT2IMG)
def test_bad_txt2img_field_is_named_in_the_error_and_nothing_is_written(fields, error, message, tmp_path):
    p = StableDiffusionProcessingTxt2Img(**({"prompt": "x", "outpath_samples": str(tmp_path / "out")} | fields))
    with pytest.raises(error, match=message):
        process_images(p)
    assert not (tmp_path / "out").exists()


BAD_IMG2IMG = [
    ({"init_images": []}, ValueError, "init_images: at least one image is required"),
    ({"init_images": ["x.png"]}, TypeError, "init_images\\[0\\]: expected a PIL image, got str"),
    ({"init_images": [Image.new("RGB", (8, 8))] * 3, "batch_size": 2}, ValueError, "init_images: give 1 image or"),
    ({"denoising_strength": -0.1}, ValueError, "denoising_strength: -0.1 is out of range; allowed 0.0..1.0"),
    ({"resize_mode": 7}, ValueError, "resize_mode: 7 is not allowed; allowed 0 \\(Just resize\\)"),
]


@pytest.mark.parametrize("fields, error, message", BAD_IMG2IMG)
def test_bad_img2img_field_is_named_in_the_error(fields, error, message):
    values = {"prompt": "x", "init_images": [Image.new("RGB", (32, 32))]} | fields
    with pytest.raises(error, match=message):
        StableDiffusionProcessingImg2Img(**values).validate()


def test_validation_loads_no_model(monkeypatch):
    monkeypatch.setattr(sd_models.model_cache, "get", lambda *args, **kwargs: pytest.fail("model loaded"))
    with pytest.raises(ValueError):
        process_images(StableDiffusionProcessingTxt2Img(steps=0))


def test_a_valid_job_passes_validation():
    StableDiffusionProcessingTxt2Img(
        prompt=["a", "b"], batch_size=2, seed=-1, width=64, height=48, override_settings={"CLIP_stop_at_last_layers": 2}
    ).validate()
