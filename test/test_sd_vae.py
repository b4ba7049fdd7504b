"""The `sd_vae` option (modules.sd_vae): a VAE file in the webui's original layout decodes instead of the checkpoint's
own, on the default model, through the engine and the API."""

import asyncio

import httpx
import numpy as np
import pytest
import safetensors.torch
from helpers import png_of

from modules import sd_models
from modules.api import create_app
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext
from modules.sd_single_file import VAE_PREFIX, original_state_dict

JOB = {"prompt": "a red circle on a blue background", "seed": 3, "steps": 4, "do_not_save_samples": True}
BRIGHTER = 0.4  # added to the decoder's output bias: every pixel lighter


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """models/VAE with the default model's own VAE (original and diffusers key layouts) and a brighter copy."""
    folder = tmp_path_factory.mktemp("VAE")
    pipeline = sd_models.load_model().pipeline
    original = {
        key.removeprefix(VAE_PREFIX): tensor.contiguous()
        for key, tensor in original_state_dict(pipeline).items()
        if key.startswith(VAE_PREFIX)
    }
    safetensors.torch.save_file(original, str(folder / "same.safetensors"))
    diffusers_layout = {key: tensor.contiguous() for key, tensor in pipeline.vae.state_dict().items()}
    safetensors.torch.save_file(diffusers_layout, str(folder / "same-diffusers.safetensors"))
    brighter = dict(original, **{"decoder.conv_out.bias": original["decoder.conv_out.bias"] + BRIGHTER})
    safetensors.torch.save_file(brighter, str(folder / "bright.safetensors"))
    return folder


@pytest.fixture
def with_vaes(vae_dir, monkeypatch):
    monkeypatch.setenv("SERENA_VAE_DIR", str(vae_dir))
    return vae_dir


def generate(**fields):
    return process_images(StableDiffusionProcessingTxt2Img(**(JOB | fields)))


def test_the_checkpoints_own_vae_as_a_file_gives_the_same_bytes(with_vaes):
    own = generate()
    same = generate(sd_vae="same.safetensors")
    assert same.images[0].tobytes() == own.images[0].tobytes()  # the original-layout conversion is exact
    assert generate(sd_vae="same-diffusers").images[0].tobytes() == own.images[0].tobytes()
    assert "VAE: same.safetensors" in same.infotexts[0] and "VAE" not in own.infotexts[0]


def test_a_brighter_vae_lightens_the_image_and_leaves_the_checkpoint_untouched(with_vaes):
    own = generate()
    bright = generate(sd_vae="bright")  # the name without its suffix, as the webui's list shows it
    assert np.asarray(bright.images[0], dtype=float).mean() > np.asarray(own.images[0], dtype=float).mean() + 10
    assert png_of(generate(sd_vae="Automatic").images[0]) == png_of(own.images[0])  # the checkpoint's VAE is back
    assert png_of(generate(sd_vae="None").images[0]) == png_of(own.images[0])


def test_the_infotext_names_the_vae_and_its_hash_and_replays_it(with_vaes):
    bright = generate(sd_vae="bright.safetensors")
    text = bright.infotexts[0]
    digest = sd_models.sha256_of_files([with_vaes / "bright.safetensors"])[:10]
    assert f"VAE hash: {digest}, VAE: bright.safetensors" in text
    replayed = process_images(processing_from_infotext(text))
    assert png_of(replayed.images[0]) == png_of(bright.images[0])


def test_an_unknown_vae_is_refused_naming_the_field_and_the_choices(with_vaes):
    with pytest.raises(
        ValueError, match=r"^sd_vae: 'missing' is not a VAE in .*; allowed Automatic, None, bright.safetensors, same"
    ):
        generate(sd_vae="missing")


def test_the_api_honours_sd_vae_in_override_settings_and_refuses_an_unknown_one(with_vaes, tmp_path):
    app = create_app(outdir=tmp_path / "outputs")

    async def post(body):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serena", timeout=60) as client:
            return await client.post("/sdapi/v1/txt2img", json=body)

    body = {"prompt": JOB["prompt"], "seed": 3, "steps": 4, "width": 32, "height": 32}
    answer = asyncio.run(post(body | {"override_settings": {"sd_vae": "bright.safetensors"}}))
    assert answer.status_code == 200 and "VAE: bright.safetensors" in answer.json()["info"]
    refused = asyncio.run(post(body | {"override_settings": {"sd_vae": "missing"}}))
    assert refused.status_code == 400 and refused.json()["field"] == "override_settings.sd_vae", refused.text
