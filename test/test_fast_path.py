"""The fast path is opt-in, recorded in the infotext when it can change pixels, and stays close to the plain path."""

from helpers import max_pixel_difference

from modules import fast_path, sd_models
from modules.processing import StableDiffusionProcessingTxt2Img, process_images


def job():
    return StableDiffusionProcessingTxt2Img(
        prompt="a black square on a yellow background", seed=4, steps=6, do_not_save_samples=True
    )


def test_plain_path_has_no_fast_path_key():
    sd_models.load_model(speedups=None)
    assert "Fast path" not in process_images(job()).infotexts[0]


def test_fused_qkv_is_recorded_and_close_to_the_plain_path():
    plain = process_images(job()).images[0]
    model = sd_models.load_model(speedups=fast_path.FastPath(compile_unet=False, vae_slicing=True))
    assert model.fast_path.infotext_value() == "fused-qkv+vae-slicing"
    fast = process_images(job())
    assert "Fast path: fused-qkv+vae-slicing" in fast.infotexts[0]
    assert max_pixel_difference(plain, fast.images[0]) <= 2


def test_same_fast_path_reuses_the_loaded_model():
    options = fast_path.FastPath(compile_unet=False, fuse_qkv=False, channels_last=True)
    first = sd_models.load_model(speedups=options)
    assert sd_models.load_model(speedups=options) is first
    assert sd_models.load_model() is first  # "unchanged" keeps the current choice
    assert options.infotext_value() is None


def test_environment_switch(monkeypatch):
    monkeypatch.setenv("SERENA_FAST_PATH", "1")
    assert fast_path.from_environment() == fast_path.FastPath()
    monkeypatch.setenv("SERENA_FAST_PATH", "0")
    assert fast_path.from_environment() is None
