"""Single-file SD 3 / 3.5 and FLUX.1 checkpoints in SAI's and BFL's layouts, with their text encoders and VAE in the
file or as separate files (Forge's additional modules), on the tiny pipelines of test_sd3 / test_flux: each file
gives the image of the diffusers folder it was written from. The full-size layouts are checked on the meta device
against the shipped configs and diffusers' own FLUX converter."""

import functools
import shutil

import pytest
import torch
from diffusers import DiffusionPipeline
from helpers import api_request

from bench.gpu_model import build_random_flux_pipeline, build_random_sd3_pipeline
from modules import sd_models
from modules.api import create_app
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext
from modules.sd_single_file import base_weights, original_vae_layout, save_tensors
from modules.transformer_single_file import (
    MODEL_CONFIGS,
    _first_fit,
    flux_to_diffusers,
    original_transformer_layout,
    save_all_in_one,
)

JOB = {"prompt": "a red circle on a blue background", "seed": 3, "steps": 4, "do_not_save_samples": True}
SD3_MODULES = ["tiny_clip_l", "tiny_clip_g.safetensors", "/elsewhere/tiny_t5.safetensors"]
FLUX_MODULES = ["tiny_ae", "flux_clip_l", "flux_t5"]
BFLOAT16_MEAN_LEVELS = 4  # of 255


def sidecar(folder, checkpoint):
    """The diffusers folder's configs and tokenizers beside the checkpoint, as `<stem>.config/`."""
    shutil.copytree(
        folder, checkpoint.parent / f"{checkpoint.stem}.config", ignore=shutil.ignore_patterns("*.safetensors")
    )


def hf_weights(encoder):
    weights = base_weights(encoder)
    weights.pop("encoder.embed_tokens.weight", None)
    return weights


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_transformer")
    checkpoints, encoders, vaes = root / "Stable-diffusion", root / "text_encoder", root / "VAE"
    build_random_sd3_pipeline(checkpoints / "tiny3", tiny=True, dtype=torch.float32, device="cpu")
    build_random_flux_pipeline(checkpoints / "tinyflux", tiny=True, dtype=torch.float32, device="cpu")
    sd3 = DiffusionPipeline.from_pretrained(checkpoints / "tiny3", local_files_only=True)
    flux = DiffusionPipeline.from_pretrained(checkpoints / "tinyflux", local_files_only=True)
    # SAI's SD 3 all-in-one file; SAI's SD 3.5 file (transformer and VAE) with the text encoders beside it.
    save_all_in_one(sd3, checkpoints / "sd3-aio.safetensors")
    sidecar(checkpoints / "tiny3", checkpoints / "sd3-aio.safetensors")
    transformer = {f"model.diffusion_model.{k}": v for k, v in original_transformer_layout(sd3.transformer).items()}
    vae = {f"first_stage_model.{k}": v for k, v in original_vae_layout(sd3.vae).items()}
    save_tensors(transformer | vae, checkpoints / "sd35-parts.safetensors")
    sidecar(checkpoints / "tiny3", checkpoints / "sd35-parts.safetensors")
    for name, encoder in (("tiny_clip_l", sd3.text_encoder), ("tiny_clip_g", sd3.text_encoder_2)):
        save_tensors(hf_weights(encoder), encoders / f"{name}.safetensors")
    save_tensors(hf_weights(sd3.text_encoder_3), encoders / "tiny_t5.safetensors")
    # BFL's transformer-only FLUX file, its ae.safetensors, CLIP-L and T5 files; and an all-in-one FLUX file.
    save_tensors(original_transformer_layout(flux.transformer), checkpoints / "flux-bfl.safetensors")
    sidecar(checkpoints / "tinyflux", checkpoints / "flux-bfl.safetensors")
    save_tensors(original_vae_layout(flux.vae), vaes / "tiny_ae.safetensors")
    save_tensors(hf_weights(flux.text_encoder), encoders / "flux_clip_l.safetensors")
    save_tensors(hf_weights(flux.text_encoder_2), encoders / "flux_t5.safetensors")
    save_all_in_one(flux, checkpoints / "flux-aio.safetensors")
    sidecar(checkpoints / "tinyflux", checkpoints / "flux-aio.safetensors")
    yield root
    sd_models.model_cache.clear()


@pytest.fixture
def models(root, monkeypatch):
    monkeypatch.setenv("SERENA_MODELS_DIR", str(root / "Stable-diffusion"))
    monkeypatch.setenv("SERENA_TEXT_ENCODER_DIR", str(root / "text_encoder"))
    monkeypatch.setenv("SERENA_VAE_DIR", str(root / "VAE"))
    return root


def generate(checkpoint, **fields):
    return process_images(StableDiffusionProcessingTxt2Img(**JOB, sd_model_checkpoint=checkpoint, **fields))


@functools.cache
def folder_image(checkpoint):
    return generate(checkpoint).images[0].tobytes()


def test_sai_files_with_or_without_their_text_encoders_give_the_folders_image(models):
    assert sd_models.resolve_checkpoint("sd3-aio").architecture == "sd3"
    assert generate("sd3-aio").images[0].tobytes() == folder_image("tiny3")
    with pytest.raises(
        sd_models.CheckpointLoadError, match="without its CLIP-L, CLIP-G; add them as additional_modules"
    ):
        generate("sd35-parts")
    processed = generate("sd35-parts", additional_modules=SD3_MODULES)
    assert processed.images[0].tobytes() == folder_image("tiny3")
    assert "Module 1: tiny_clip_l, Module 2: tiny_clip_g, Module 3: tiny_t5" in processed.infotexts[0]
    replayed = process_images(processing_from_infotext(processed.infotexts[0]))
    assert replayed.images[0].tobytes() == processed.images[0].tobytes()


def test_bfl_transformer_file_with_ae_clip_and_t5_modules_and_the_all_in_one_flux_file(models):
    with pytest.raises(sd_models.CheckpointLoadError, match="without its CLIP-L, T5, VAE; add them"):
        generate("flux-bfl")
    assert generate("flux-bfl", additional_modules=FLUX_MODULES).images[0].tobytes() == folder_image("tinyflux")
    assert generate("flux-aio").images[0].tobytes() == folder_image("tinyflux")
    with pytest.raises(
        ValueError, match=r"additional_modules\[1\]: 'nope' is not a module file .* allowed: flux_clip_l"
    ):
        generate("flux-bfl", additional_modules=["tiny_ae", "nope"])
    with pytest.raises(ValueError, match="additional_modules: text encoders and VAEs in files of their own load with"):
        generate("tinyflux", additional_modules=["tiny_ae"])


def test_the_api_takes_forges_module_paths_and_lists_the_modules(models):
    app = create_app()
    listed = api_request(app, "GET", "/sdapi/v1/sd-modules").json()
    names = ["flux_clip_l", "flux_t5", "tiny_clip_g", "tiny_clip_l", "tiny_t5", "tiny_ae"]
    assert [item["model_name"] for item in listed] == [f"{name}.safetensors" for name in names]
    body = {
        **JOB,
        "override_settings": {
            "sd_model_checkpoint": "flux-bfl",
            "forge_additional_modules": [f"/forge/models/text_encoder/{name}.safetensors" for name in FLUX_MODULES],
        },
    }
    response = api_request(app, "POST", "/sdapi/v1/txt2img", body)
    assert response.status_code == 200, response.text
    body["override_settings"]["forge_additional_modules"] = ["missing.safetensors"]
    response = api_request(app, "POST", "/sdapi/v1/txt2img", body)
    assert response.status_code == 400 and "additional_modules[0]" in response.text


@pytest.mark.parametrize(
    ("folder", "family"),
    [
        ("sd35_medium", "sd3"),
        ("sd35_large", "sd3"),
        ("sd3_medium", "sd3"),
        ("flux1_dev", "flux"),
        ("flux1_schnell", "flux"),
    ],
)
def test_full_size_original_layouts_find_their_shipped_configs(folder, family):
    """SAI's and BFL's key names and shapes of the published models (made on the meta device from the shipped
    configs) are read back to the config they came from; FLUX's keys as diffusers' converter names them."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    model_class = SD3Transformer2DModel if family == "sd3" else FluxTransformer2DModel
    with torch.device("meta"):
        transformer = model_class.from_config(model_class.load_config(MODEL_CONFIGS / folder / "transformer"))
    original = original_transformer_layout(transformer)
    if family == "sd3":
        converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(original))
    else:
        converted = flux_to_diffusers(original)
        theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
        assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in theirs.items()}
    candidates = [
        MODEL_CONFIGS / name for name in ("sd35_medium", "sd35_large", "sd3_medium", "flux1_dev", "flux1_schnell")
    ]
    assert _first_fit(model_class, candidates, "transformer", converted).name == folder


def test_flux_keys_convert_as_diffusers_converter_does_at_flux_width():
    """Values, not only names: a FLUX.1-wide transformer of one double and one single block, in BFL's layout with
    distinct integer values, converted by Serena's table and by diffusers' converter (which assumes FLUX.1's width)."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    config = FluxTransformer2DModel.load_config(MODEL_CONFIGS / "flux1_dev" / "transformer")
    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config({**config, "num_layers": 1, "num_single_layers": 1})
    original = {}
    for key, tensor in sorted(original_transformer_layout(transformer).items()):
        values = torch.arange(tensor.numel(), dtype=torch.int32).add_(len(original) * 7919).remainder_(32749)
        original[key] = values.to(torch.int16).reshape(tensor.shape)
    ours = flux_to_diffusers(dict(original))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_bfloat16_folders_and_files_load_and_generate_close_to_float32(models):
    """bfloat16, the precision these models are shared and run in on CUDA (checked here on the CPU; the GPU run is
    bench/gpu.py's): a diffusers folder and a single file (with its modules) load in it and draw the float32 image
    within a few levels (1.5 levels of 255 on average on these tiny models)."""
    import numpy as np

    from modules import sd_modules

    cases = (("tiny3", "sd3-aio", []), ("tinyflux", "flux-bfl", FLUX_MODULES))
    references = {folder: np.frombuffer(folder_image(folder), np.uint8).astype(float) for folder, _, _ in cases}
    try:
        for folder, file, modules in cases:
            for checkpoint, named in ((folder, []), (file, modules)):
                info = sd_models.resolve_checkpoint(checkpoint, modules=sd_modules.resolve(named))
                loaded = sd_models.model_cache.get(info, dtype=torch.bfloat16)
                assert loaded.pipeline.transformer.dtype == torch.bfloat16
                image = generate(checkpoint, additional_modules=named).images[0]
                difference = np.abs(np.frombuffer(image.tobytes(), np.uint8) - references[folder])
                assert 0 < difference.mean() < BFLOAT16_MEAN_LEVELS, (checkpoint, difference.mean())
    finally:
        sd_models.model_cache.clear()  # later tests load float32 again
