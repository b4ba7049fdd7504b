"""The same parameters through the kit, the CLI and the API give byte-identical PNGs (infotext included)."""

import base64
import io
from pathlib import Path

from face_helpers import decode_b64
from helpers import png_of
from PIL import Image

import serena_kit
from serena_kit.cli import main

PARAMETERS = {
    "prompt": "a blue circle on a yellow background",
    "negative_prompt": "noise",
    "seed": 4242,
    "subseed": 7,
    "subseed_strength": 0.3,
    "steps": 6,
    "cfg_scale": 6.5,
    "sampler_name": "DPM++ 2M",
    "scheduler": "Karras",
    "width": 40,
    "height": 32,
    "batch_size": 2,
}


def cli_arguments(parameters: dict) -> list[str]:
    options = {"sampler_name": "--sampler"}
    argv = []
    for name, value in parameters.items():
        argv += [options.get(name, "--" + name.replace("_", "-")), str(value)]
    return argv


def cli_pngs(capsys, command: str, parameters: dict, *extra: str) -> list[bytes]:
    assert main([command, *cli_arguments(parameters), *extra, "--no-grid", "--quiet"]) == 0
    return [Path(path).read_bytes() for path in capsys.readouterr().out.split()]


def api_pngs(api_server, endpoint: str, request: dict) -> list[bytes]:
    with api_server.client() as client:
        response = client.post(f"/sdapi/v1/{endpoint}", json=request)
    assert response.status_code == 200, response.text
    return [decode_b64(image) for image in response.json()["images"]]


def test_txt2img_is_byte_identical_through_kit_cli_and_api(capsys, api_server):
    kit = [
        png_of(image)
        for image in serena_kit.txt2img(**PARAMETERS, do_not_save_samples=True, do_not_save_grid=True).images
    ]
    cli = cli_pngs(capsys, "txt2img", PARAMETERS)
    api = api_pngs(api_server, "txt2img", PARAMETERS)
    assert len(kit) == 2 and kit == cli == api


def test_img2img_is_byte_identical_through_kit_cli_and_api(capsys, api_server, isolated_workdir):
    Image.new("RGB", (48, 40), (220, 180, 20)).save("init.png")
    init = Image.open("init.png")
    parameters = PARAMETERS | {"denoising_strength": 0.6, "resize_mode": 1, "batch_size": 1}
    kit = [png_of(image) for image in serena_kit.img2img(init, **parameters, do_not_save_samples=True).images]
    cli = cli_pngs(capsys, "img2img", parameters, "--init-image", "init.png")
    encoded = base64.b64encode(Path("init.png").read_bytes()).decode()
    api = api_pngs(api_server, "img2img", parameters | {"init_images": [encoded]})
    assert len(kit) == 1 and kit == cli == api


def test_a_legacy_sampler_name_and_the_noise_multiplier_agree_through_kit_cli_and_api(capsys, api_server):
    """A legacy "DPM++ 2M Karras" is sampler DPM++ 2M with schedule type Karras in every face, and every face
    honours img2img's initial_noise_multiplier."""
    Image.new("RGB", (32, 32), (20, 160, 90)).save("init.png")
    init = Image.open("init.png")
    parameters = {
        "prompt": "a red square on a green background",
        "seed": 77,
        "steps": 5,
        "sampler_name": "DPM++ 2M Karras",
        "denoising_strength": 0.8,
        "initial_noise_multiplier": 0.6,
    }
    kit = [png_of(image) for image in serena_kit.img2img(init, **parameters, do_not_save_samples=True).images]
    cli = cli_pngs(capsys, "img2img", parameters, "--init-image", "init.png")
    encoded = base64.b64encode(Path("init.png").read_bytes()).decode()
    api = api_pngs(api_server, "img2img", parameters | {"init_images": [encoded]})
    assert len(kit) == 1 and kit == cli == api
    text = Image.open(io.BytesIO(kit[0])).info["parameters"]
    assert "Sampler: DPM++ 2M, Schedule type: Karras," in text and text.endswith(", Noise multiplier: 0.6")


def test_hires_fix_is_byte_identical_through_kit_cli_and_api(capsys, api_server):
    parameters = {
        "prompt": "a red circle on a blue background",
        "seed": 31,
        "steps": 4,
        "sampler_name": "Euler a",  # the API's default is "Euler"
        "hr_scale": 1.5,
        "hr_upscaler": "Lanczos",
        "hr_second_pass_steps": 3,
        "denoising_strength": 0.55,
    }
    kit = [png_of(image) for image in serena_kit.txt2img(**parameters, enable_hr=True, do_not_save_samples=True).images]
    cli = cli_pngs(capsys, "txt2img", parameters, "--enable-hr")
    api = api_pngs(api_server, "txt2img", parameters | {"enable_hr": True})
    assert len(kit) == 1 and kit == cli == api
    assert Image.open(io.BytesIO(kit[0])).size == (48, 48)


def test_inpainting_is_byte_identical_through_kit_cli_and_api(capsys, api_server, isolated_workdir):
    init = Image.new("RGB", (32, 32), (30, 60, 200))
    init.paste((200, 30, 30), (8, 8, 24, 24))
    init.save("init.png")
    mask = Image.new("L", (32, 32))
    mask.paste(255, (6, 6, 26, 26))
    mask.save("mask.png")
    parameters = {
        "prompt": "a yellow circle on a blue background",
        "seed": 12,
        "steps": 5,
        "sampler_name": "Euler a",
        "inpainting_fill": 2,
        "mask_blur": 2,
        "inpainting_mask_invert": 1,
    }
    result = serena_kit.img2img("init.png", mask="mask.png", **parameters, do_not_save_samples=True)  # paths too
    kit = [png_of(image) for image in result.images]
    cli = cli_pngs(capsys, "img2img", parameters, "--init-image", "init.png", "--mask", "mask.png")
    encoded = {name: base64.b64encode(Path(f"{name}.png").read_bytes()).decode() for name in ("init", "mask")}
    request = parameters | {"init_images": [encoded["init"]], "mask": encoded["mask"], "inpainting_mask_invert": True}
    api = api_pngs(api_server, "img2img", request)
    assert len(kit) == 1 and kit == cli == api
    assert "Masked content: latent noise" in Image.open(io.BytesIO(kit[0])).info["parameters"]
    Path("inpainted.png").write_bytes(kit[0])  # and the CLI remakes it from its infotext, init image and mask
    replay = ["replay", "inpainted.png", "--init-image", "init.png", "--mask", "mask.png", "--verify", "--quiet"]
    assert main(replay) == 0


def test_a_guidance_method_agrees_through_kit_cli_and_api_and_the_api_takes_its_numbers_as_text(capsys, api_server):
    parameters = {
        "prompt": "a red square on a green background",
        "seed": 12,
        "steps": 6,
        "sampler_name": "Euler a",
        "guidance": "PAG",
        "perturbed_scale": 2.5,
        "perturbed_layers": "mid,up.1",
        "guidance_rescale": 0.5,
    }
    kit = [png_of(image) for image in serena_kit.txt2img(**parameters, do_not_save_samples=True).images]
    cli = cli_pngs(capsys, "txt2img", parameters)
    api_parameters = {key: value for key, value in parameters.items() if key != "guidance_rescale"}
    api_parameters |= {"perturbed_scale": "2.5", "rescale_cfg": " .5"}  # the webui family's name for CFG rescale
    api = api_pngs(api_server, "txt2img", api_parameters)
    assert len(kit) == 1 and kit == cli == api
    assert b"Guidance: PAG" in kit[0]
