"""Resolving, hashing and loading checkpoints: the default model, diffusers folders, single files, pickle refusal."""

import hashlib

import numpy as np
import pytest
import torch

from modules import devices, sd_models
from modules.default_model import DEFAULT_MODEL_DIR, scoring
from modules.flow_model import FLOW_MODEL_NAME
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from modules.scenes_model import SCENES_MODEL_NAME
from modules.sd_single_file import save_single_file
from training.default_model import dataset


@pytest.fixture
def models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    monkeypatch.setenv("SERENA_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def default_as_single_file(models_folder):
    path = models_folder / "shapes.safetensors"
    save_single_file(sd_models.load_model().pipeline, path)
    return path


def job(**fields):
    return StableDiffusionProcessingTxt2Img(
        **(
            {"prompt": "a white circle on a black background", "seed": 8, "steps": 4, "do_not_save_samples": True}
            | fields
        )
    )


def test_default_names_resolve_to_the_embedded_model():
    for name in (None, "", "default", sd_models.DEFAULT_MODEL_NAME):
        assert sd_models.resolve_checkpoint(name).path == DEFAULT_MODEL_DIR


def test_single_file_checkpoint_in_the_original_layout_loads_and_generates_the_same_image(default_as_single_file):
    expected = process_images(job()).images[0]
    info = sd_models.resolve_checkpoint("shapes")
    assert info.kind == "single_file" and info.name == "shapes"
    assert info.shorthash == hashlib.sha256(default_as_single_file.read_bytes()).hexdigest()[:10]
    result = process_images(job(sd_model_checkpoint="shapes"))
    assert f"Model hash: {info.shorthash}, Model: shapes" in result.infotexts[0]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    sd_models.load_model()


def test_webui_titles_and_listing(default_as_single_file, models_folder):
    info = sd_models.resolve_checkpoint("shapes.safetensors [0123456789]")
    assert info.path == default_as_single_file.resolve()
    assert info.title == f"shapes [{info.shorthash}]"
    names = [checkpoint.name for checkpoint in sd_models.list_checkpoints()]
    assert names == [sd_models.DEFAULT_MODEL_NAME, SCENES_MODEL_NAME, FLOW_MODEL_NAME, "shapes"]  # embedded first


def test_pickle_checkpoints_are_refused_without_the_allow_flag(models_folder, default_as_single_file):
    import safetensors.torch

    pickle_path = models_folder / "legacy.ckpt"
    torch.save({"state_dict": safetensors.torch.load_file(default_as_single_file)}, pickle_path)
    with pytest.raises(ValueError, match="legacy.ckpt is a pickle checkpoint.*allow_pickle=True"):
        process_images(job(sd_model_checkpoint="legacy"))
    with pytest.raises(ValueError, match="allow"):
        sd_models.load_model("legacy")
    sd_models.load_model("legacy", allow_pickle=True)
    result = process_images(job(sd_model_checkpoint="legacy"))  # allowed once the caller loaded it explicitly
    assert "Model: legacy" in result.infotexts[0]
    sd_models.load_model()


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    with pytest.raises(ValueError, match="sd_model_checkpoint: .* is not a checkpoint; allowed: a diffusers folder"):
        sd_models.resolve_checkpoint(str(text_file))


def test_folder_hash_covers_the_weights():
    info = sd_models.default_checkpoint()
    files = sorted(DEFAULT_MODEL_DIR.rglob("*.safetensors"))
    # Independently of the code: sha256 over the weight files' bytes in path order; the short hash is its first 10.
    assert info.sha256 == hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()
    assert info.shorthash == info.sha256[:10]


def test_device_and_dtype_choice(monkeypatch):
    monkeypatch.delenv("SERENA_DEVICE", raising=False)
    monkeypatch.delenv("SERENA_DTYPE", raising=False)
    for cuda, mps, expected in [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda mps=mps: mps)
        assert devices.default_device() == torch.device(expected)
    assert devices.default_dtype(torch.device("cuda")) == torch.float16
    assert devices.default_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setenv("SERENA_DEVICE", "cpu")
    monkeypatch.setenv("SERENA_DTYPE", "bfloat16")
    assert devices.default_device() == torch.device("cpu")
    assert devices.default_dtype(torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ValueError, match="dtype: unknown dtype 'float8'; valid: float16"):
        devices.parse_dtype("float8")


def test_a_requested_dtype_reloads_and_generates_in_it():
    """bfloat16 really runs (other bytes) and draws what float32 draws (the default model's scorer)."""
    prompt = dataset.caption_for("circle", "red", "blue")
    reference = process_images(job(prompt=prompt, seed=0, steps=20)).images[0]
    model = sd_models.load_model(dtype="bfloat16")
    assert model.pipeline.unet.dtype == torch.bfloat16
    image = process_images(job(prompt=prompt, seed=0, steps=20)).images[0]
    assert image.size == (32, 32) and image.tobytes() != reference.tobytes()
    score, expected = scoring.score_image(image), scoring.score_image(reference)
    assert (score.background, score.colour, score.shape) == (expected.background, expected.colour, expected.shape)
    assert (expected.background, expected.colour) == ("blue", "red")
    assert sd_models.load_model(dtype="float32").pipeline.unet.dtype == torch.float32


def test_the_cache_keeps_two_models_and_frees_the_least_recently_used(monkeypatch):
    """A base and a second checkpoint (a refiner's, a hires pass's) stay loaded between jobs; a third frees the one
    used least recently; SERENA_CHECKPOINTS_LIMIT=1 keeps one, as before."""
    cache = sd_models.ModelCache()
    default, scenes = (sd_models.resolve_checkpoint(name) for name in ("serena-default", "serena-scenes"))
    first = cache.get(default)
    assert cache.get(scenes) is not first and cache.holds(default) and cache.holds(scenes)
    assert cache.get(default) is first  # kept: not loaded again
    assert [model.checkpoint.name for model in cache.models] == ["serena-scenes", "serena-default"]
    monkeypatch.setenv("SERENA_CHECKPOINTS_LIMIT", "1")
    cache.get(scenes)
    assert [model.checkpoint.name for model in cache.models] == ["serena-scenes"]
    monkeypatch.setenv("SERENA_CHECKPOINTS_LIMIT", "0")
    with pytest.raises(ValueError, match=r"^SERENA_CHECKPOINTS_LIMIT: 0 is too small; allowed: 1 or more"):
        cache.get(default)
    cache.clear()
    assert cache.loaded is None and cache.models == []
