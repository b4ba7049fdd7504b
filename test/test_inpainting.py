"""Inpainting on the default model (and a 9-channel UNet built from config): what is kept, what is written in the
infotext, replay, and the errors that name the field."""

import numpy as np
import pytest
from helpers import png_of
from PIL import Image

from modules import infotext, masking
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext

PROMPT = "a yellow circle on a blue background"


@pytest.fixture(scope="module")
def init_image():
    return process_images(
        StableDiffusionProcessingTxt2Img(prompt="a red circle on a blue background", seed=5, steps=6)
    ).images[0]


def box_mask(size=(32, 32), box=(10, 10, 22, 22)):
    mask = Image.new("L", size)
    mask.paste(255, box)
    return mask


def inpaint(init_image, **fields):
    values = {"prompt": PROMPT, "seed": 9, "steps": 6, "mask": box_mask(), "do_not_save_samples": True} | fields
    return process_images(StableDiffusionProcessingImg2Img(init_images=[init_image], **values))


def outside_blurred_mask(mask: Image.Image, blur: int) -> np.ndarray:
    return np.array(masking.blur_mask(mask, blur, blur)) == 0


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
@pytest.mark.parametrize("full_res", [False, True])
def test_pixels_outside_the_blurred_mask_are_the_init_images(init_image, fill, full_res):
    result = inpaint(init_image, inpainting_fill=fill, inpaint_full_res=full_res).images[0]
    outside = outside_blurred_mask(box_mask(), 4)
    assert result.size == init_image.size
    assert (np.array(result)[outside] == np.array(init_image)[outside]).all()
    assert (np.array(result)[~outside] != np.array(init_image)[~outside]).any()


def test_inverted_mask_repaints_the_outside_and_keeps_the_box(init_image):
    for invert in (1, True):  # the webui's clients send both
        result = np.array(inpaint(init_image, inpainting_mask_invert=invert, mask_blur=0).images[0])
        assert (result[10:22, 10:22] == np.array(init_image)[10:22, 10:22]).all()
        assert (result[:8] != np.array(init_image)[:8]).any()


def test_infotext_has_the_webuis_inpainting_keys_and_replay_reproduces_the_bytes(init_image):
    result = inpaint(init_image, inpainting_fill=2, inpaint_full_res_padding=4, mask_blur=2, inpainting_mask_invert=1)
    parsed = infotext.parse_infotext(result.info)
    assert parsed["Mask blur"] == "2" and parsed["Masked content"] == "latent noise"
    assert parsed["Inpaint area"] == "Only masked" and parsed["Masked area padding"] == "4"
    assert parsed["Mask mode"] == "Inpaint not masked"
    replayed = processing_from_infotext(result.info, [init_image], mask=box_mask())
    assert png_of(process_images(replayed).images[0]) == png_of(result.images[0])


def test_no_mask_writes_no_inpainting_keys(init_image):
    result = process_images(StableDiffusionProcessingImg2Img(init_images=[init_image], prompt=PROMPT, seed=1, steps=3))
    assert "Mask blur" not in result.info and "Inpaint area" not in result.info


def test_a_mask_of_another_size_is_resized_like_the_webui(init_image):
    """The webui fits the mask to the output size with the resize mode: a 64x64 mask of the same box, scaled."""
    small = inpaint(init_image, inpaint_full_res=False).images[0]
    large = inpaint(init_image, inpaint_full_res=False, mask=box_mask((64, 64), (20, 20, 44, 44))).images[0]
    outside = outside_blurred_mask(box_mask(), 4)
    assert (np.array(large)[outside] == np.array(init_image)[outside]).all()
    assert np.abs(np.array(large, dtype=int) - np.array(small, dtype=int)).mean() < 8


def test_a_mask_that_is_not_an_image_is_refused_naming_the_field(init_image):
    with pytest.raises(TypeError, match=r"^mask: expected a PIL image, got str"):
        inpaint(init_image, mask="mask.png")
    with pytest.raises(ValueError, match=r"^inpainting_fill: 4 is not allowed; allowed 0 \(fill\)"):
        inpaint(init_image, inpainting_fill=4)


@pytest.fixture(scope="module")
def inpainting_model(tmp_path_factory):
    """The default model with a randomly initialised 9-channel UNet of the same config, saved as a diffusers folder."""
    import torch
    from diffusers import UNet2DConditionModel

    from modules import sd_models

    base = sd_models.load_model(None)
    folder = tmp_path_factory.mktemp("inpainting") / "tiny-inpainting"
    config = dict(base.pipeline.unet.config) | {"in_channels": 9}
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config)
    pipeline = base.pipeline
    original_unet = pipeline.unet
    pipeline.unet = unet
    try:
        pipeline.save_pretrained(folder)
    finally:
        pipeline.unet = original_unet
    return str(folder)


def test_a_9_channel_unet_is_detected_and_conditioned_with_the_mask(init_image, inpainting_model):
    weight = {"inpainting_mask_weight": 0.5}
    result = inpaint(init_image, sd_model_checkpoint=inpainting_model, override_settings=weight)
    assert infotext.parse_infotext(result.info)["Conditional mask weight"] == "0.5"
    outside = outside_blurred_mask(box_mask(), 4)
    assert (np.array(result.images[0])[outside] == np.array(init_image)[outside]).all()
    other_weight = inpaint(init_image, sd_model_checkpoint=inpainting_model)
    assert png_of(other_weight.images[0]) != png_of(result.images[0])  # the weight reaches the UNet
    txt2img = process_images(
        StableDiffusionProcessingTxt2Img(prompt=PROMPT, seed=1, steps=2, sd_model_checkpoint=inpainting_model)
    )
    assert txt2img.images[0].size == (32, 32)
