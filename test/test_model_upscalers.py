"""Model upscalers (ESRGAN family, modules.upscaler_models) in every face that upscales: the upscaler list, extras,
hires fix, `serena upscale`; and the webui's "SD upscale" img2img script (modules.sd_upscale)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from modules import sd_upscale, upscaler_models, upscalers
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images


@pytest.fixture
def model_folders(tmp_path, monkeypatch):
    """A tiny random RRDBNet x2 (Real-ESRGAN x2plus layout) in models/RealESRGAN and an SRVGG x4 in models/ESRGAN."""
    torch.manual_seed(0)
    esrgan, realesrgan = tmp_path / "ESRGAN", tmp_path / "RealESRGAN"
    esrgan.mkdir()
    realesrgan.mkdir()
    tiny_x2 = upscaler_models.RRDBNet(scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    save_file(tiny_x2.state_dict(), realesrgan / "tiny-x2.safetensors")
    tiny_x4 = upscaler_models.SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)
    torch.save({"params": tiny_x4.state_dict()}, esrgan / "tiny-x4.pth")
    monkeypatch.setenv("SERENA_ESRGAN_DIR", str(esrgan))
    monkeypatch.setenv("SERENA_REALESRGAN_DIR", str(realesrgan))
    return tmp_path


def test_model_upscalers_are_listed_with_the_scale_their_weights_say(model_folders):
    listed = {info.name: info for info in upscalers.image_upscalers()}
    assert (listed["tiny-x2"].scale, listed["tiny-x4"].scale) == (2, 4)
    image = Image.new("RGB", (20, 12), (200, 40, 40))
    assert upscalers.upscale_image(image, 40, 24, "tiny-x2").size == (40, 24)
    assert upscalers.upscale_image(image, 30, 18, "tiny-x4").size == (30, 18)  # model x4, then fitted


def test_hires_fix_with_a_model_upscaler_and_the_api_lists_and_uses_it(model_folders, tmp_path):
    from helpers import api_request

    from modules.api import create_app

    job = StableDiffusionProcessingTxt2Img(prompt="a red square on a blue background", seed=1, steps=4,
                                           enable_hr=True, hr_scale=2, hr_upscaler="tiny-x2", denoising_strength=0.4,
                                           do_not_save_samples=True, do_not_save_grid=True)  # fmt: skip
    result = process_images(job)
    assert result.images[0].size == (64, 64) and "Hires upscaler: tiny-x2" in result.info
    app = create_app(outdir=tmp_path / "out")
    listed = api_request(app, "GET", "/sdapi/v1/upscalers").json()
    assert {"name": "tiny-x4", "scale": 4.0} == {key: listed[-1][key] for key in ("name", "scale")}
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (30, 70, 230)).save(buffer, format="PNG")
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaling_resize": 4, "upscaler_1": "tiny-x4"}
    answer = api_request(app, "POST", "/sdapi/v1/extra-single-image", body)
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["image"]))).size == (64, 32)


def test_serena_upscale_writes_the_upscaled_files(model_folders, tmp_path, capsys):
    from serena_kit.cli import main

    Image.new("RGB", (10, 6), (250, 220, 30)).save(tmp_path / "small.png")
    argv = ["upscale", tmp_path / "small.png", "--upscaler", "tiny-x4", "--scale", 4, "--outdir", tmp_path]
    argv += ["--tile", 8, "--tile-overlap", 2]
    assert main([str(arg) for arg in argv]) == 0
    assert Image.open(capsys.readouterr().out.strip()).size == (40, 24)
    assert main(["upscale", str(tmp_path / "small.png"), "--upscaler", "nope"]) == 2
    assert "--upscaler: unknown upscaler 'nope'" in capsys.readouterr().err


def test_tiles_cover_the_image_and_blend_back_to_it():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    grid = sd_upscale.split_tiles(image, 32, 32, 8)
    assert [row.y for row in grid.rows] == [0, 19, 38] and [x for x, _, _ in grid.rows[0].tiles] == [0, 19, 38, 58]
    assert sd_upscale.combine_tiles(grid).tobytes() == image.tobytes()  # the same tiles blend back exactly


def test_sd_upscale_script_runs_img2img_on_every_tile_and_the_webui_api_test_passes(tmp_path):
    from helpers import api_request

    from modules.api import create_app

    init = Image.new("RGB", (32, 32), (220, 30, 30))
    init.paste((30, 70, 230), (8, 8, 24, 24))
    job = StableDiffusionProcessingImg2Img(init_images=[init], prompt="a blue square on a red background", seed=5,
                                           steps=4, denoising_strength=0.3, batch_size=2,
                                           do_not_save_samples=True)  # fmt: skip
    result = sd_upscale.run(job, 8, "Lanczos", 2.0)
    assert result.images[0].size == (64, 64) and len(result.images) == 1
    assert "SD upscale overlap: 8, SD upscale upscaler: Lanczos" in result.info
    # the webui's own API test (test_img2img_sd_upscale_performed): script_args ["", 8, "Lanczos", 2.0]
    buffer = io.BytesIO()
    init.save(buffer, format="PNG")
    body = {"init_images": [base64.b64encode(buffer.getvalue()).decode()], "prompt": "a blue square", "steps": 3,
            "denoising_strength": 0.3, "script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]}  # fmt: skip
    app = create_app(outdir=tmp_path / "out")
    answer = api_request(app, "POST", "/sdapi/v1/img2img", body)
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0]))).size == (64, 64)
    refused = api_request(app, "POST", "/sdapi/v1/img2img", body | {"script_args": ["", 8, "Nope", 2.0]})
    assert refused.status_code == 400 and refused.json()["field"] == "script_args"
