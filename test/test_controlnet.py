"""ControlNet: units as the extension defines them, preprocessors, the loop's residuals, loading every layout, replay,
and what the example ControlNet does on the default model (scored with its scorer)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules import control_preprocessors, control_units, controlnet, infotext
from modules.control_units import ControlNetUnit, unit_from_dict
from modules.default_model import DEFAULT_MODEL_DIR
from modules.default_model.controls import control_iou, silhouette
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext
from serena_kit.reproduce import png_hash

EXAMPLE = "control_serena_shape_mask"
PROMPT = "a red square on a blue background"
STEPS = 8


def job(units=(), cls=StableDiffusionProcessingTxt2Img, **fields) -> StableDiffusionProcessingTxt2Img:
    values = dict(prompt=PROMPT, seed=3, steps=STEPS, do_not_save_samples=True, do_not_save_grid=True)
    return cls(controlnet_units=list(units), **(values | fields))


def unit(**fields) -> ControlNetUnit:
    return ControlNetUnit(**({"model": EXAMPLE, "image": silhouette("square", 4, 14, 14)} | fields))


def random_controlnet(seed: int = 0):
    """The default UNet's ControlNet copy with random (not zero) output convolutions, so it changes images."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(DEFAULT_MODEL_DIR / "unet", local_files_only=True)
    generator = torch.Generator().manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]:
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * 0.05)
    return net


@pytest.fixture(scope="module")
def random_net():
    return random_controlnet()


@pytest.fixture
def controlnet_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SERENA_CONTROLNET_DIR", str(tmp_path))
    return tmp_path


# Units: the extension's fields, lax forms and errors -------------------------------------------------------------


def test_api_dicts_read_as_the_extension_reads_them():
    image = Image.new("RGB", (8, 8))
    read = unit_from_dict(
        "args[0]",
        {
            "enabled": "true",
            "input_image": "BASE64",
            "model": "control_x [abcd1234]",
            "weight": "0.5",
            "guidance": 0.8,
            "resize_mode": "Inner Fit (Scale to Fit)",
            "control_mode": 2,
            "pixel_perfect": 1,
            "lowvram": True,
            "save_detected_map": False,
        },
        decode_image=lambda where, text: image,
    )
    assert read == ControlNetUnit(
        model="control_x [abcd1234]",
        image=image,
        weight=0.5,
        guidance_end=0.8,
        resize_mode="Crop and Resize",
        control_mode="ControlNet is more important",
        pixel_perfect=True,
    )
    assert unit_from_dict("u", {"model": "m"}).enabled is False  # the extension's API default
    assert unit_from_dict("u", {"resize_mode": 0, "hr_option": "low res only"}).resize_mode == "Just Resize"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"weight": 2.5}, "u.weight: 2.5 is out of range; allowed 0.0..2.0"),
        ({"guidance_start": 0.6, "guidance_end": 0.4}, "u.guidance_start: 0.6 is after guidance_end 0.4"),
        ({"module": "sobel"}, "u.module: unknown preprocessor 'sobel'; allowed none, invert, canny"),
        ({"module": "depth_midas"}, "u.module: preprocessor 'depth_midas' needs the MiDaS depth model"),
        ({"image": None}, "u.image: the unit uses model"),
        ({"control_mode": "Louder"}, "u.control_mode: 'Louder' is not allowed; allowed 0 ('Balanced')"),
    ],
)
def test_bad_units_name_the_field_and_what_is_allowed(fields, message):
    with pytest.raises((ValueError, TypeError)) as raised:
        candidate = dict(unit().__dict__) | fields
        control_units.check_unit("u", control_units.unit_from_dict("u", candidate, enabled_default=True))
    assert message in str(raised.value)


def test_unknown_unit_fields_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"u: unknown ControlNet unit field\(s\) wieght; known: control_mode"):
        unit_from_dict("u", {"wieght": 1})


def test_infotext_line_is_the_extensions_and_reads_back():
    written = control_units.infotext_pairs([unit(module="canny", weight=0.75).resolved(), unit(enabled=False)])
    assert written == {
        "ControlNet 0": "Module: canny, Model: control_serena_shape_mask, Weight: 0.75, Resize Mode: Crop and Resize, "
        "Processor Res: 512, Threshold A: 100.0, Threshold B: 200.0, Guidance Start: 0.0, Guidance End: 1.0, "
        "Pixel Perfect: False, Control Mode: Balanced"
    }
    text = infotext.create_infotext("p", "", {"Steps": 8, "Sampler": "Euler", **written})
    assert 'ControlNet 0: "Module: canny' in text
    (read,) = control_units.units_from_infotext(infotext.parse_infotext(text))
    assert read == dataclasses.replace(unit(module="canny", weight=0.75).resolved(), image=None)


# Preprocessors -------------------------------------------------------------------------------------------------------


def test_preprocessors_make_the_maps_they_name():
    square = Image.new("RGB", (64, 64), "white")
    square.paste((0, 0, 0), (16, 16, 48, 48))
    edges = np.asarray(control_preprocessors.detect("canny", square, 64, 100, 200))[..., 0] > 0
    assert edges[16:48, 14:18].any() and not edges[24:40, 24:40].any() and not edges[:8].any()
    inverted = np.asarray(control_preprocessors.detect("invert", square, 64, -1, -1))
    assert inverted[0, 0, 0] == 0 and inverted[32, 32, 0] == 255
    threshold = np.asarray(control_preprocessors.detect("threshold", square, 64, 127, -1))
    assert set(np.unique(threshold)) == {0, 255}
    two_colours = Image.new("RGB", (64, 64), (30, 70, 230))
    two_colours.paste((220, 30, 30), (0, 0, 32, 64))
    regions = np.asarray(control_preprocessors.detect("seg_flat", two_colours, 64, 24, -1)).reshape(-1, 3)
    assert len(np.unique(regions, axis=0)) == 2
    assert control_preprocessors.detect("canny", square, 128, 100, 200).size == (128, 128)  # processor_res


def test_pixel_perfect_and_resize_modes_fit_the_generation_size():
    wide = Image.new("RGB", (200, 100), "white")
    assert control_preprocessors.pixel_perfect_resolution(wide, 64, 64, "Crop and Resize") == 64
    assert control_preprocessors.pixel_perfect_resolution(wide, 64, 64, "Resize and Fill") == 32
    for mode in control_units.RESIZE_MODES:
        assert control_preprocessors.control_image(unit(image=wide, resize_mode=mode), 32, 48).size == (32, 48)


# The loop --------------------------------------------------------------------------------------------------------


def test_units_that_do_nothing_give_the_base_images_bytes():
    base = process_images(job())
    for neutral in (
        unit(weight=0.0),
        unit(guidance_start=0.5, guidance_end=0.5),
        unit(enabled=False),
        unit(model="None"),
        unit(hr_option="High res only"),  # no hires pass
    ):
        result = process_images(job([neutral]))
        assert result.images[0].tobytes() == base.images[0].tobytes(), neutral  # the pixels; the infotext records
        assert ("ControlNet 0" in result.infotexts[0]) == neutral.active  # an active unit, even at weight 0


def test_soft_injection_weights_down_from_the_middle_block_as_the_extension():
    scales = controlnet.residual_scales(unit(weight=0.5), 13, soft=True)
    assert scales[12] == 0.5 and scales[0] == pytest.approx(0.5 * 0.825**12)
    assert controlnet.residual_scales(unit(weight=0.5), 10, soft=True)[9] == pytest.approx(0.5 * 0.825**3)  # SDXL
    assert controlnet.residual_scales(unit(weight=0.5), 7, soft=False) == [0.5] * 7


def test_control_changes_the_image_is_recorded_and_replays_byte_identical():
    control = unit(weight=0.8, guidance_end=0.9)
    result = process_images(job([control]))
    assert png_hash(result.images) != png_hash(process_images(job()).images)
    title = controlnet.find_controlnet(EXAMPLE).title
    parameters = infotext.parse_infotext(result.infotexts[0])
    assert parameters["ControlNet 0"].startswith(f"Module: none, Model: {title}, Weight: 0.8, Resize Mode: ")
    with pytest.raises(
        ValueError, match=r"control_images: the image was made with 1 ControlNet unit\(s\) \(ControlNet 0"
    ):
        processing_from_infotext(result.infotexts[0])
    again = process_images(processing_from_infotext(result.infotexts[0], control_images=[control.image]))
    assert png_hash(again.images) == png_hash(result.images)


def test_control_modes_give_different_images():
    hashes = {
        mode: png_hash(process_images(job([unit(control_mode=mode)])).images) for mode in control_units.CONTROL_MODES
    }
    assert len(set(hashes.values())) == 3


def test_single_files_in_both_layouts_load_as_the_folder(controlnet_folder, random_net):
    from safetensors.torch import save_file

    random_net.save_pretrained(controlnet_folder / "random_folder")
    state = {key: value.contiguous() for key, value in random_net.state_dict().items()}
    save_file(state, controlnet_folder / "random_diffusers.safetensors")
    save_file(original_layout(state, layers_per_block=1), controlnet_folder / "random_original.safetensors")
    image = silhouette("circle", 6, 6, 20)
    pixels = {
        name: process_images(job([unit(model=name, image=image)])).images[0].tobytes()
        for name in ("random_folder", "random_diffusers", "random_original")
    }
    assert len(set(pixels.values())) == 1  # the names (and hashes) differ in the infotexts
    assert pixels["random_folder"] != process_images(job()).images[0].tobytes()


def original_layout(state: dict, layers_per_block: int) -> dict:
    """diffusers' ControlNet keys in lllyasviel's layout (the inverse of diffusers' converter, for this UNet shape:
    attention in every block but the last, a downsampler after every block but the last)."""
    resnet = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
              "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "controlnet_mid_block": "middle_block_out.0",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # fmt: skip
    hint_blocks = len({key.split(".")[2] for key in state if key.startswith("controlnet_cond_embedding.blocks")})
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        new = None
        for prefix, target in fixed.items():
            if key.startswith(prefix + "."):
                new = target + key[len(prefix) :]
        if key.startswith("controlnet_cond_embedding."):
            embedding = parts[1]
            index = 0 if embedding == "conv_in" else (int(parts[2]) + 1) * 2 if embedding == "blocks" else None
            if embedding == "conv_out":
                index = 2 * (hint_blocks + 1)
            new = f"input_hint_block.{index}.{parts[-1]}"
        elif key.startswith("controlnet_down_blocks."):
            new = f"zero_convs.{parts[1]}.0.{parts[2]}"
        elif key.startswith("down_blocks."):
            block, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":
                new = f"input_blocks.{(block + 1) * (layers_per_block + 1)}.0.op.{parts[-1]}"
            else:
                layer = int(parts[3])
                index = block * (layers_per_block + 1) + layer + 1
                rest = ".".join(parts[4:])
                if kind == "resnets":
                    new = f"input_blocks.{index}.0.{resnet[parts[4]]}.{parts[-1]}"
                else:
                    new = f"input_blocks.{index}.1.{rest}"
        elif key.startswith("mid_block."):
            kind, index = parts[1], int(parts[2])
            if kind == "resnets":
                new = f"middle_block.{index * 2}.{resnet[parts[3]]}.{parts[-1]}"
            else:
                new = f"middle_block.1.{'.'.join(parts[3:])}"
        assert new is not None, key
        renamed["control_model." + new] = value
    return renamed


def test_a_controlnet_for_another_unet_is_refused_with_the_reason(controlnet_folder):
    from diffusers import ControlNetModel, UNet2DConditionModel

    other = ControlNetModel(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                            layers_per_block=1, cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
                            conditioning_embedding_out_channels=(8, 16))  # fmt: skip
    other.save_pretrained(controlnet_folder / "other_family")
    with pytest.raises(ValueError, match=r"controlnet_units\[0\].model: ControlNet other_family is made for a UNet"):
        process_images(job([unit(model="other_family")]))
    unet = UNet2DConditionModel.from_pretrained(DEFAULT_MODEL_DIR / "unet", local_files_only=True)
    ControlNetModel.from_unet(unet).save_pretrained(controlnet_folder / "sd_vae_factor")  # reads images at 1/8
    with pytest.raises(ValueError, match=r"sd_vae_factor reads control images at 1/8 of their size, the model's"):
        process_images(job([unit(model="sd_vae_factor")]))


def test_missing_models_and_flow_models_are_refused_before_sampling():
    with pytest.raises(ValueError, match=r"controlnet_units\[0\].model: no ControlNet model 'nope'; available: None, "):
        job([unit(model="nope")]).validate()
    with pytest.raises(ValueError, match="controlnet_units: ControlNet runs on the UNet families"):
        job([unit()], sd_model_checkpoint="serena-flow").validate()


def test_hires_options_and_img2img_inpainting_take_control():
    hires = dict(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=4, denoising_strength=0.5)
    both, low_only = (
        png_hash(process_images(job([unit(hr_option=option)], **hires)).images) for option in ("Both", "Low res only")
    )
    assert both != low_only
    init = process_images(job()).images[0]
    mask = Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, 32, 16))
    inpaint = dict(init_images=[init], mask=mask, denoising_strength=0.9, inpaint_full_res=False)
    controlled = process_images(job([unit()], cls=StableDiffusionProcessingImg2Img, **inpaint)).images[0]
    free = process_images(job(cls=StableDiffusionProcessingImg2Img, **inpaint)).images[0]
    assert png_hash(controlled) != png_hash(free)
    assert np.array_equal(np.asarray(controlled)[24:], np.asarray(free)[24:])  # kept outside the mask


# Meaning: the example ControlNet puts the shape where the silhouette is ---------------------------------------------


def test_the_example_controlnet_places_the_shape_where_the_silhouette_says():
    from training.controlnet.evaluate import IOU_THRESHOLD, control_cases, generate

    cases = control_cases(8)
    controlled = [control_iou(generate(case), case.control) for case in cases]
    free = [control_iou(generate(case, controlled=False), case.control) for case in cases]
    assert np.mean(np.array(controlled) >= IOU_THRESHOLD) >= 0.75, controlled
    assert np.mean(controlled) > np.mean(free) + 0.3, (controlled, free)


# The faces: the extension's API, the CLI, sweep axes ----------------------------------------------------------------


def b64_png(image: Image.Image) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_the_extensions_api_gives_the_python_faces_image(tmp_path):
    import base64
    import io

    from helpers import api_request

    from modules.api import create_app

    app = create_app(outdir=tmp_path)
    control = unit(weight=0.8)
    lax_unit = {
        "enabled": True,
        "image": b64_png(control.image),
        "model": controlnet.find_controlnet(EXAMPLE).title,
        "module": "none",
        "weight": "0.8",
        "resize_mode": 1,
        "control_mode": "Balanced",
        "foo": True,  # unknown keys are dropped, as the extension's API drops them
    }
    body = {"prompt": PROMPT, "seed": 3, "steps": STEPS, "sampler_name": "Euler a"}
    body["alwayson_scripts"] = {"ControlNet": {"args": [lax_unit]}}  # the name in any case, as the webui
    answer = api_request(app, "POST", "/sdapi/v1/txt2img", body)
    assert answer.status_code == 200, answer.text
    image, detected = (Image.open(io.BytesIO(base64.b64decode(text))) for text in answer.json()["images"])
    assert png_hash(image) == png_hash(process_images(job([control])).images)
    assert detected.tobytes() == control.image.tobytes()  # the detected map after the images, as the extension
    lax_unit["save_detected_map"] = "false"
    assert len(api_request(app, "POST", "/sdapi/v1/txt2img", body).json()["images"]) == 1
    refused = api_request(app, "POST", "/sdapi/v1/txt2img", body | {"alwayson_scripts": {"controlnet": {"args": [
        lax_unit | {"weight": 3}]}}})  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["field"] == "alwayson_scripts.controlnet.args[0].weight"
    missing = api_request(app, "POST", "/sdapi/v1/txt2img", body | {"alwayson_scripts": {"controlnet": {"args": [
        lax_unit | {"model": "nope"}]}}})  # fmt: skip
    assert missing.status_code == 400 and "no ControlNet model 'nope'" in missing.json()["detail"]


def test_the_extensions_endpoints(tmp_path):
    import base64
    import io

    from helpers import api_request

    from modules.api import create_app

    app = create_app(outdir=tmp_path)
    assert api_request(app, "GET", "/controlnet/version").json() == {"version": 2}
    models = api_request(app, "GET", "/controlnet/model_list").json()["model_list"]
    assert controlnet.find_controlnet(EXAMPLE).title in models
    modules = api_request(app, "GET", "/controlnet/module_list").json()
    assert {"none", "canny", "depth_midas"} <= set(modules["module_list"])
    assert modules["module_detail"]["canny"]["sliders"][1] == {"name": "Canny Low Threshold", "value": 100,
                                                                "min": 1, "max": 255}  # fmt: skip
    types = api_request(app, "GET", "/controlnet/control_types").json()["control_types"]
    assert types["Canny"]["default_option"] == "canny" and types["All"]["model_list"][0] == "None"
    assert api_request(app, "GET", "/controlnet/settings").json() == {"control_net_unit_count": 3}
    square = Image.new("RGB", (64, 64), "white")
    square.paste((0, 0, 0), (16, 16, 48, 48))
    detected = api_request(app, "POST", "/controlnet/detect", {"controlnet_module": "canny",
                           "controlnet_input_images": [b64_png(square)], "controlnet_processor_res": 64})  # fmt: skip
    assert detected.status_code == 200 and detected.json()["info"] == "Success"
    edges = Image.open(io.BytesIO(base64.b64decode(detected.json()["images"][0])))
    assert np.asarray(edges).max() == 255 and edges.size == (64, 64)
    refused = api_request(app, "POST", "/controlnet/detect", {"controlnet_module": "openpose",
                          "controlnet_input_images": [b64_png(square)]})  # fmt: skip
    assert refused.status_code == 422 and "OpenPose" in refused.json()["detail"]


def test_the_cli_takes_units_and_replays_them(capsys, tmp_path):
    from serena_kit.cli import main

    silhouette("square", 4, 14, 14).save(tmp_path / "control.png")
    argv = ["txt2img", "--prompt", PROMPT, "--seed", 3, "--steps", STEPS, "--outdir", tmp_path, "--quiet"]
    argv += ["--controlnet", f"model={EXAMPLE},image={tmp_path / 'control.png'},weight=0.8"]
    assert main([str(arg) for arg in argv]) == 0
    path = capsys.readouterr().out.splitlines()[0]
    assert png_hash(Image.open(path)) == png_hash(process_images(job([unit(weight=0.8)])).images)
    replay = ["replay", path, "--control-image", tmp_path / "control.png", "--verify", "--quiet"]
    assert main([str(arg) for arg in replay]) == 0
    assert main(["txt2img", "--prompt", "p", "--controlnet", "model=x,weight"]) == 2
    assert "--controlnet[0]: expected key=value pairs" in capsys.readouterr().err


def test_a_units_weight_is_a_sweep_axis():
    from modules.sweeps.run import sweep

    result = sweep(job([unit()]), x=("controlnet.weight", [0.0, 1.0]), y=("controlnet[0].guidance_end", [0.5, 1.0]))
    assert [result.x.label(value) for value in result.x.values] == ["ControlNet 0 Weight: 0", "ControlNet 0 Weight: 1"]
    assert result.y.label(0.5) == "ControlNet 0 Guidance End: 0.5"
    pixels = [result.cell(x, y).image.tobytes() for y in (0.5, 1.0) for x in (0.0, 1.0)]
    base = process_images(job()).images[0].tobytes()
    assert pixels[0] == pixels[2] == base  # weight 0: the base image
    assert len({pixels[1], pixels[3], base}) == 3
    with pytest.raises(ValueError, match=r"x: controlnet\[1\].weight needs ControlNet unit 1 in the base job"):
        sweep(job([unit()]), x=("controlnet[1].weight", [0.5]))


def test_the_widget_forms_unit_gives_the_python_faces_image():
    from serena_kit.widgets import GenerationForm

    form = GenerationForm(prompt=PROMPT, seed=3, steps=STEPS, do_not_save_samples=True, do_not_save_grid=True)
    assert form.control_unit() is None  # no image, no model: no unit
    form.set_control_image(unit().image)
    form.control_model.value = EXAMPLE
    form.control_weight.value = 0.8
    made, expected = form.control_unit(), unit(weight=0.8)
    assert dataclasses.replace(made, image=None) == dataclasses.replace(expected, image=None)
    assert made.image.tobytes() == expected.image.tobytes()
    assert png_hash(form.generate().images) == png_hash(process_images(job([unit(weight=0.8)])).images)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_original_layout_keys_map_onto_diffusers_controlnet(family):
    """lllyasviel's SD 1.5 layout (and the SDXL ControlNets' of the same form) at full size, on the meta device:
    every key of the original layout lands on a diffusers ControlNet parameter, as the loader's converter maps it."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, UNet2DConditionModel

    configs = Path(controlnet.__file__).parent / "model_configs"
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / family / "unet"))
        net = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    state = net.state_dict()
    original = original_layout(state, unet.config.layers_per_block)
    assert "control_model.input_hint_block.14.weight" in original  # SD's 8-convolution hint block
    assert set(controlnet.to_diffusers_layout(original, unet.config.layers_per_block)) == set(state)
