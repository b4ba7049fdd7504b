"""The fast path is opt-in, recorded in the infotext when it can change pixels, and stays close to the plain path."""

import pytest
import torch
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


def test_attention_backend_goes_first_in_sdpa_priority_while_the_unet_runs():
    from torch.nn.attention import SDPBackend

    plain = process_images(job()).images[0]
    options = fast_path.FastPath(compile_unet=False, fuse_qkv=False, attention_backend="math")
    model = sd_models.load_model(speedups=options)
    first_choice = []
    attention = next(module for module in model.pipeline.unet.modules() if type(module).__name__ == "Attention")
    attention.register_forward_pre_hook(lambda *_: first_choice.append(torch._C._get_sdp_priority_order()[0]))
    fast = process_images(job())
    assert set(first_choice) == {int(SDPBackend.MATH)}
    assert torch._C._get_sdp_priority_order()[0] != int(SDPBackend.MATH)  # restored after each UNet call
    assert "Fast path: sdpa-math" in fast.infotexts[0]
    assert max_pixel_difference(plain, fast.images[0]) <= 2


def test_unknown_attention_backend_is_refused():
    with pytest.raises(ValueError, match="'xformers'; allowed: None, flash, efficient, cudnn, math"):
        fast_path.FastPath(attention_backend="xformers")


def test_compile_vae_compiles_the_decoder_without_cuda_graphs(monkeypatch, tmp_path):
    compiled = []

    def fake_compile(module, **options):  # inductor on CPU would take minutes; what matters is what is compiled
        compiled.append((module, options))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    model = sd_models.load_model(speedups=fast_path.FastPath(compile_unet=False, compile_vae=True))
    assert compiled == [(model.pipeline.vae.decoder, {"fullgraph": True, "dynamic": False})]
    assert model.fast_path.infotext_value() == "fused-qkv+compile-vae"
