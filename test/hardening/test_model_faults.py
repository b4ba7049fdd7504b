"""Checkpoints that cannot load (truncated, corrupt, a config missing, an unknown layout) fail with an error naming
the file, and the model loaded before keeps working: the next job gives the same bytes as before the failure."""

import shutil

import pytest
import safetensors.torch
import torch
from helpers import png_of

from modules import sd_models, sd_single_file
from modules.default_model import DEFAULT_MODEL_DIR
from modules.processing import StableDiffusionProcessingTxt2Img, process_images


def small_job(checkpoint=None) -> StableDiffusionProcessingTxt2Img:
    return StableDiffusionProcessingTxt2Img(
        prompt="a red circle on a blue background",
        seed=11,
        steps=2,
        width=32,
        height=32,
        sd_model_checkpoint=checkpoint,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )


@pytest.fixture(scope="module")
def broken_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken_models")
    whole = root / "whole.safetensors"
    sd_single_file.save_single_file(sd_models.load_model(None).pipeline, whole)
    data = whole.read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (root / "corrupt-header.safetensors").write_bytes(data[:8] + b"\xff" * 64 + data[72:])
    safetensors.torch.save_file({"some.other.model.weight": torch.zeros(3)}, root / "unknown-layout.safetensors")
    shutil.copytree(DEFAULT_MODEL_DIR, root / "missing-unet-config")
    (root / "missing-unet-config" / "unet" / "config.json").unlink()
    shutil.copytree(DEFAULT_MODEL_DIR, root / "missing-vae")
    shutil.rmtree(root / "missing-vae" / "vae")
    return root


@pytest.fixture(scope="module")
def baseline_png():
    return png_of(process_images(small_job()).images[0])


@pytest.mark.parametrize(
    "name",
    [
        "truncated.safetensors",
        "corrupt-header.safetensors",
        "unknown-layout.safetensors",
        "missing-unet-config",
        "missing-vae",
    ],
)
def test_a_broken_checkpoint_names_its_file_and_the_previous_model_keeps_working(
    broken_checkpoints, baseline_png, name
):
    path = broken_checkpoints / name
    with pytest.raises(sd_models.CheckpointLoadError, match=f"^sd_model_checkpoint: cannot load {path}: "):
        process_images(small_job(str(path)))
    assert sd_models.model_cache.loaded.checkpoint.name == sd_models.DEFAULT_MODEL_NAME
    assert png_of(process_images(small_job()).images[0]) == baseline_png
