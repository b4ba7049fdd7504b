"""SDXL on tiny randomly initialised pipelines built from local configs (bench.gpu_model): a 64 px base with both
text encoders, pooled text and size conditioning, and a refiner (second encoder only, aesthetic-score conditioning).
The base's images are checked against diffusers' own StableDiffusionXLPipeline; the rest is Serena's behaviour."""

import base64
import functools
import io
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from helpers import api_request, models_folder_fixtures, png_of
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from bench.gpu_model import build_random_sdxl_pipeline
from modules import diffusion, infotext, prompt_encoding, rng, sd_models, sd_samplers
from modules.api import create_app
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext
from modules.sd_single_file import SDXL_CONFIG_DIR, load_single_file_pipeline, read_checkpoint, save_single_file
from serena_kit import sweep
from serena_kit.cli import main as serena_main

PROMPT = "a red circle on a blue background"
JOB = {"prompt": PROMPT, "seed": 3, "steps": 6, "do_not_save_samples": True, "do_not_save_grid": True}


sdxl_root, sdxl = models_folder_fixtures(
    "sdxl",
    {
        "tinyxl": functools.partial(build_random_sdxl_pipeline, tiny=True, dtype=torch.float32, device="cpu"),
        "tinyxl-refiner": functools.partial(
            build_random_sdxl_pipeline, tiny=True, dtype=torch.float32, device="cpu", refiner=True
        ),
    },
)


def generate(**fields):
    return process_images(StableDiffusionProcessingTxt2Img(**(JOB | {"sd_model_checkpoint": "tinyxl"} | fields)))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def test_shipped_sdxl_config_has_the_published_sizes():
    folder = SDXL_CONFIG_DIR
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        clip_l = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    counts = [sum(p.numel() for p in model.parameters()) for model in (unet, vae, clip_l, clip_g)]
    assert counts == [2_567_463_684, 83_653_863, 123_060_480, 694_659_840]


def test_the_architecture_is_read_from_the_folder(sdxl):
    names = {info.name: info.architecture for info in sd_models.list_checkpoints()}
    assert names == {
        "serena-default": "sd",
        "serena-scenes": "sd",
        "serena-flow": "sd3",
        "tinyxl": "sdxl",
        "tinyxl-refiner": "sdxl-refiner",
    }
    model = sd_models.load_model("tinyxl")
    assert model.family.name == "sdxl" and model.native_size == 64


@pytest.mark.parametrize("negative_prompt", ["", "blurry"])
def test_txt2img_matches_diffusers_sdxl_pipeline(sdxl, negative_prompt):
    """Same noise, same scheduler: the two encoders, pooled text, size ids and CFG are diffusers' (an empty negative
    prompt is zeros in both)."""
    ours = generate(sampler_name="Euler", negative_prompt=negative_prompt, cfg_scale=7).images[0]
    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl / "Stable-diffusion" / "tinyxl", local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    noise = rng.image_noise((4, 8, 8), JOB["seed"], 0, 0.0, None)[None]
    theirs = pipeline(
        PROMPT, negative_prompt=negative_prompt or None, num_inference_steps=6, guidance_scale=7, latents=noise
    ).images[0]
    assert ours.size == theirs.size == (64, 64)
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1  # rounding in the last bit of the decode at most
    assert pixels(ours).std() > 5  # a picture, not a flat colour


def test_prompt_language_on_both_encoders(sdxl):
    model = sd_models.load_model("tinyxl")
    plain = prompt_encoding.text_encoding(model, "a red circle", 1)
    assert plain.hidden.shape == (1, 77, 80) and plain.pooled.shape == (1, 48)  # 32 + 48 features; the pooled
    same = prompt_encoding.text_encoding(model, "a (red:1.0) circle", 1)
    assert torch.equal(same.hidden, plain.hidden) and torch.equal(same.pooled, plain.pooled)
    weighted = prompt_encoding.text_encoding(model, "a (red:1.5) circle", 1)
    assert not torch.equal(weighted.hidden, plain.hidden)
    assert torch.equal(weighted.pooled, plain.pooled)  # emphasis leaves the pooled embedding alone, as the webui
    text = ", ".join(["a red circle"] * 30)  # 119 tokens
    chunks = len(prompt_encoding.prompt_chunks(model, text, "Original"))
    assert chunks == 2 and prompt_encoding.text_encoding(model, text, 1).hidden.shape == (1, chunks * 77, 80)
    assert prompt_encoding.text_encoding(model, "a red BREAK circle", 1).hidden.shape == (1, 2 * 77, 80)
    # Clip skip does not apply to SDXL (the webui's default): both encoders give their penultimate layer.
    assert torch.equal(prompt_encoding.text_encoding(model, "a red circle", 2).hidden, plain.hidden)
    assert generate(prompt="a (red:1.6) circle").images[0].tobytes() != generate().images[0].tobytes()


def test_an_empty_negative_prompt_is_zeros_and_prompt_editing_switches(sdxl):
    model = sd_models.load_model("tinyxl")
    conditioning = diffusion.encode_prompts(model, ["[red:blue:0.5] circle"], [""], 1, "Original", 6)
    assert not conditioning.at(0)[0].any() and not conditioning.pooled_at(0)[0].any()
    assert not torch.equal(conditioning.at(0)[1], conditioning.at(5)[1])
    red = prompt_encoding.text_encoding(model, "red circle", 1)
    assert torch.equal(conditioning.at(0)[1], red.hidden[0])
    assert torch.equal(conditioning.pooled_at(0)[1], red.pooled[0])


def test_batch_position_invariance_in_exact_mode(sdxl):
    batch = generate(batch_size=3, exact=True, seed=10)
    alone = generate(seed=12)
    assert png_of(batch.images[2]) == png_of(alone.images[0])


def test_refiner_switch_differs_from_no_refiner_and_is_reproducible(sdxl):
    base = generate()
    refined = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=0.5)
    again = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=0.5)
    assert png_of(refined.images[0]) == png_of(again.images[0])
    assert np.abs(pixels(refined.images[0]) - pixels(base.images[0])).mean() > 1
    # (999 - t) / 1000 never reaches 1: switch at 1 samples with the base alone, byte for byte.
    never = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=1.0)
    assert never.images[0].tobytes() == base.images[0].tobytes()
    assert "Refiner: tinyxl-refiner [" in refined.infotexts[0] and "Refiner switch at: 0.5" in refined.infotexts[0]


def test_the_switch_step_follows_the_webuis_timestep_rule():
    switch = diffusion.RefinerSwitch(model=None, conditioning=None, switch_at=0.5)
    assert switch.step(torch.tensor([999.0, 751.0, 501.0, 251.0, 1.0])) == 3  # (999 - 501) / 1000 = 0.498 < 0.5
    assert switch.step(torch.tensor([999.0, 499.0])) == 1
    assert diffusion.RefinerSwitch(None, None, 0.0).step(torch.tensor([999.0])) == 0


def test_infotext_round_trip_and_byte_identical_replay_with_a_refiner(sdxl):
    made = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=0.5, negative_prompt="blurry")
    replayed = processing_from_infotext(made.infotexts[0])
    assert replayed.sd_model_checkpoint == str((sdxl / "Stable-diffusion" / "tinyxl").resolve())
    assert replayed.refiner_checkpoint == str((sdxl / "Stable-diffusion" / "tinyxl-refiner").resolve())
    assert replayed.refiner_switch_at == 0.5
    replayed.do_not_save_samples = True
    again = process_images(replayed)
    assert png_of(again.images[0]) == png_of(made.images[0])
    assert infotext.parse_infotext(again.infotexts[0]) == infotext.parse_infotext(made.infotexts[0])


def test_a_refiner_of_another_latent_space_is_refused(sdxl):
    with pytest.raises(ValueError, match=r"^refiner_checkpoint: .*cannot continue"):
        process_images(StableDiffusionProcessingTxt2Img(**(JOB | {"refiner_checkpoint": "tinyxl"})))  # VAE /4 vs /8
    with pytest.raises(ValueError, match=r"^refiner_checkpoint: no model 'nothing-here'; available: serena-default"):
        generate(refiner_checkpoint="nothing-here")


def test_img2img_inpainting_and_hires_on_sdxl(sdxl):
    init = generate().images[0]
    changed = process_images(
        StableDiffusionProcessingImg2Img(
            **(JOB | {"sd_model_checkpoint": "tinyxl", "init_images": [init], "denoising_strength": 0.6})
        )
    )
    assert changed.images[0].size == (64, 64)
    assert 0 < np.abs(pixels(changed.images[0]) - pixels(init)).mean()
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    inpainted = process_images(
        StableDiffusionProcessingImg2Img(
            **(JOB | {"sd_model_checkpoint": "tinyxl", "init_images": [init], "mask": mask, "mask_blur": 0})
        )
    ).images[0]
    assert inpainted.getpixel((2, 2)) == init.getpixel((2, 2))  # outside the mask: the init image, pasted back
    assert np.abs(pixels(inpainted)[16:48, 16:48] - pixels(init)[16:48, 16:48]).mean() > 1
    hires = generate(enable_hr=True, hr_scale=2, denoising_strength=0.5, refiner_checkpoint="tinyxl-refiner")
    assert hires.images[0].size == (128, 128)
    assert "Hires upscale: 2" in hires.infotexts[0]


def test_lora_in_the_kohya_and_diffusers_layouts_and_weight_zero_is_the_base(sdxl, tmp_path, monkeypatch):
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionXLPipeline.from_pretrained(sdxl / "Stable-diffusion" / "tinyxl", local_files_only=True)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipeline.unet.add_adapter(config)
    layers = get_peft_model_state_dict(pipeline.unet)
    diffusers_layout = convert_state_dict_to_diffusers(layers)
    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=diffusers_layout, weight_name="xl.safetensors"
    )
    kohya = convert_state_dict_to_kohya({f"unet.{key}": value for key, value in layers.items()})  # as the webui's
    assert all(key.startswith("lora_unet_") for key in kohya)
    safetensors.torch.save_file({k: v.contiguous() for k, v in kohya.items()}, str(tmp_path / "xl_kohya.safetensors"))
    monkeypatch.setenv("SERENA_LORA_DIR", str(tmp_path))
    base = generate()
    zero = generate(prompt=PROMPT + " <lora:xl:0>")
    full = generate(prompt=PROMPT + " <lora:xl:1>")
    assert zero.images[0].tobytes() == base.images[0].tobytes()
    assert np.abs(pixels(full.images[0]) - pixels(base.images[0])).mean() > 1
    assert 'Lora hashes: "xl: ' in full.infotexts[0]
    from_kohya = generate(prompt=PROMPT + " <lora:xl_kohya:1>").images[0]
    assert np.abs(pixels(from_kohya) - pixels(full.images[0])).max() <= 1  # the same update, either layout
    assert generate().images[0].tobytes() == base.images[0].tobytes()  # the base weights are untouched after


def test_textual_inversion_with_clip_l_and_clip_g_vectors(sdxl, tmp_path, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    vectors = {"clip_l": torch.randn(2, 32, generator=generator), "clip_g": torch.randn(2, 48, generator=generator)}
    safetensors.torch.save_file(vectors, str(tmp_path / "xlword.safetensors"))
    monkeypatch.setenv("SERENA_EMBEDDINGS_DIR", str(tmp_path))
    with_word = generate(prompt="a xlword circle")
    assert "TI hashes: " in with_word.infotexts[0] and "xlword: " in with_word.infotexts[0]
    assert with_word.images[0].tobytes() != generate(prompt="a circle").images[0].tobytes()
    model = sd_models.load_model("tinyxl")
    encoding = prompt_encoding.text_encoding(model, "a xlword circle", 1)
    assert encoding.hidden.shape == (1, 77, 80)
    # Each encoder's token rows hold its own vectors: the two-vector word takes two positions in both.
    for tokenizer, _ in prompt_encoding.text_encoders(model):
        assert len(prompt_encoding.tokenize_fragment(model, "xlword", tokenizer)) == 2
    shutil.rmtree(tmp_path)


def test_single_file_in_the_original_sdxl_layout_round_trips(sdxl, tmp_path):
    """Written as the released SDXL files are (CLIP-L under conditioner.embedders.0.transformer, bigG in OpenCLIP's
    layout under conditioner.embedders.1.model), read back with diffusers' conversion: the same pixels."""
    folder = sdxl / "Stable-diffusion" / "tinyxl"
    checkpoint = tmp_path / "tinyxl-file.safetensors"
    save_single_file(StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True), checkpoint)
    keys = read_checkpoint(checkpoint).keys()
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert "model.diffusion_model.label_emb.0.0.weight" in keys
    with pytest.raises(ValueError, match="time_embedding"):  # no sidecar: the shipped full-size config does not fit
        load_single_file_pipeline(checkpoint)
    shutil.copytree(folder, tmp_path / "tinyxl-file.config")  # the sidecar config folder, as for SD files
    info = sd_models.resolve_checkpoint(str(checkpoint))
    assert info.kind == "single_file" and info.architecture == "sdxl"
    from_file = generate(sd_model_checkpoint=str(checkpoint))
    assert from_file.images[0].tobytes() == generate().images[0].tobytes()
    assert f"Model hash: {info.shorthash}" in from_file.infotexts[0]


def test_float16_keeps_the_sdxl_vae_in_float32(sdxl):
    """SDXL's own VAE overflows in float16 (its config says force_upcast): it stays float32 under a float16 UNet."""
    try:
        model = sd_models.load_model("tinyxl", dtype="float16")
        assert model.pipeline.unet.dtype == torch.float16 and model.pipeline.vae.dtype == torch.float32
        image = generate(steps=3).images[0]
        assert pixels(image).std() > 5
    finally:
        sd_models.model_cache.clear()  # later tests load it at the default dtype


def test_the_api_runs_sdxl_with_a_refiner_as_the_engine_does(sdxl, tmp_path):
    app = create_app(outdir=tmp_path / "outputs", models_dir=sdxl / "Stable-diffusion")

    listed = api_request(app, "GET", "/sdapi/v1/sd-models").json()
    assert {item["model_name"]: item["architecture"] for item in listed}["tinyxl-refiner"] == "sdxl-refiner"
    body = {"prompt": PROMPT, "seed": 3, "steps": 6, "sampler_name": "Euler a"}
    body["override_settings"] = {"sd_model_checkpoint": "tinyxl"}
    refined = body | {"refiner_checkpoint": "tinyxl-refiner", "refiner_switch_at": 0.5}
    answer = api_request(app, "POST", "/sdapi/v1/txt2img", refined)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    engine = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=0.5).images[0]
    assert image.tobytes() == engine.tobytes()
    assert "Refiner: tinyxl-refiner [" in answer.json()["info"]
    refused = api_request(app, "POST", "/sdapi/v1/txt2img", body | {"refiner_checkpoint": "../outside"})
    assert refused.status_code == 400 and refused.json()["field"] == "refiner_checkpoint", refused.text


def test_an_sdxl_inpainting_unet_keeps_the_unmasked_area(sdxl, tmp_path):
    folder = tmp_path / "tinyxl-inpainting"
    build_random_sdxl_pipeline(folder, tiny=True, dtype=torch.float32, device="cpu", inpainting=True)
    init = generate().images[0]
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    job = JOB | {"sd_model_checkpoint": str(folder), "init_images": [init], "mask": mask}
    made = process_images(StableDiffusionProcessingImg2Img(**(job | {"mask_blur": 0})))
    image = made.images[0]
    assert image.getpixel((2, 2)) == init.getpixel((2, 2))
    assert np.abs(pixels(image)[16:48, 16:48] - pixels(init)[16:48, 16:48]).mean() > 1
    assert "Conditional mask weight: 1," in made.infotexts[0]  # written for inpainting UNets only


def test_the_cli_and_a_sweep_run_sdxl_with_a_refiner(sdxl, capsys, tmp_path):
    refiner = ["--refiner", "tinyxl-refiner", "--refiner-switch-at", "0.5"]
    job = ["--prompt", PROMPT, "--seed", "3", "--steps", "6", "--model", "tinyxl", "--outdir", str(tmp_path)]
    code = serena_main(["txt2img", *job, *refiner])
    (path,) = capsys.readouterr().out.split()
    assert code == 0
    engine = generate(refiner_checkpoint="tinyxl-refiner", refiner_switch_at=0.5).images[0]
    assert Image.open(path).tobytes() == engine.tobytes()
    result = sweep(
        JOB | {"sd_model_checkpoint": "tinyxl", "refiner_checkpoint": "tinyxl-refiner", "exact": True},
        x=("refiner_switch_at", [0.5, 1.0]),
    )
    assert result.images[0].tobytes() == engine.tobytes()
    assert result.images[1].tobytes() == generate().images[0].tobytes()  # never switches: the base alone


@pytest.mark.parametrize("sampler", sd_samplers.SAMPLER_NAMES)
def test_every_sampler_runs_on_sdxl(sdxl, sampler):
    image = generate(sampler_name=sampler, steps=4, seed=7).images[0]
    assert image.size == (64, 64) and pixels(image).std() > 5


def test_text_encoder_lora_on_both_encoders_in_the_kohya_and_diffusers_layouts(sdxl, tmp_path, monkeypatch):
    """`lora_te1_`/`lora_te2_` (kohya) and `text_encoder.`/`text_encoder_2.` (diffusers) layers: the same bytes,
    weight 0 the base's, and the encoders' base weights untouched after."""
    from modules import lora

    model = sd_models.load_model("tinyxl")
    generator = torch.Generator().manual_seed(0)
    kohya, diffusers_layout = {}, {}
    for number, component in ((1, "text_encoder"), (2, "text_encoder_2")):
        encoder = getattr(model.pipeline, component)
        for module in ("q_proj", "v_proj"):
            linear = getattr(encoder, "text_model", encoder).get_submodule(f"encoder.layers.0.self_attn.{module}")
            linear = getattr(linear, "base_layer", linear)
            down = torch.randn(4, linear.in_features, generator=generator)
            up = torch.randn(linear.out_features, 4, generator=generator)
            key = f"lora_te{number}_text_model_encoder_layers_0_self_attn_{module}"
            kohya |= {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(2.0)}
            key = f"{component}.text_model.encoder.layers.0.self_attn.{module}"
            diffusers_layout |= {f"{key}.lora_A.weight": down, f"{key}.lora_B.weight": up * 0.5}  # alpha / rank
    safetensors.torch.save_file(kohya, tmp_path / "xl_te_kohya.safetensors")
    safetensors.torch.save_file(diffusers_layout, tmp_path / "xl_te_diffusers.safetensors")
    only_te2 = {key: value for key, value in kohya.items() if key.startswith("lora_te2_")}
    safetensors.torch.save_file(only_te2, tmp_path / "xl_te2.safetensors")
    monkeypatch.setenv("SERENA_LORA_DIR", str(tmp_path))
    lora.unload_all(model)
    originals = [
        {name: value.clone() for name, value in getattr(model.pipeline, component).state_dict().items()}
        for component in ("text_encoder", "text_encoder_2")
    ]
    base = generate().images[0].tobytes()
    from_kohya = generate(prompt=PROMPT + " <lora:xl_te_kohya:1>").images[0].tobytes()
    assert from_kohya != base
    assert generate(prompt=PROMPT + " <lora:xl_te_diffusers:1>").images[0].tobytes() == from_kohya
    assert generate(prompt=PROMPT + " <lora:xl_te_kohya:0>").images[0].tobytes() == base
    assert generate(prompt=PROMPT + " <lora:xl_te2:1>").images[0].tobytes() not in (base, from_kohya)
    assert generate().images[0].tobytes() == base
    assert "xl_te_kohya" in "".join(model.pipeline.text_encoder_2.peft_config)
    lora.unload_all(model)
    for component, original in zip(("text_encoder", "text_encoder_2"), originals):
        state = getattr(model.pipeline, component).state_dict()
        assert state.keys() == original.keys()
        assert all(torch.equal(state[name], original[name]) for name in original)


def test_a_controlnet_on_sdxl_takes_the_micro_conditioning_and_changes_the_image(sdxl, tmp_path, monkeypatch):
    from diffusers import ControlNetModel

    from modules.control_units import ControlNetUnit

    unet = StableDiffusionXLPipeline.from_pretrained(sdxl / "Stable-diffusion" / "tinyxl", local_files_only=True).unet
    torch.manual_seed(0)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))  # 8x, as the VAE
    with torch.no_grad():  # ControlNet's zero convolutions made non-zero, so that it acts
        for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
            conv.weight.normal_(0, 0.05)
    net.save_pretrained(tmp_path / "tinyxl_control")
    monkeypatch.setenv("SERENA_CONTROLNET_DIR", str(tmp_path))
    control = Image.new("RGB", (64, 64))
    control.paste((255, 255, 255), (8, 8, 40, 40))
    base = generate().images[0]
    units = [ControlNetUnit(model="tinyxl_control", image=control)]
    controlled = generate(controlnet_units=units)
    assert np.abs(pixels(controlled.images[0]) - pixels(base)).mean() > 1
    assert "ControlNet 0: " in controlled.infotexts[0]
    weight_zero = generate(controlnet_units=[ControlNetUnit(model="tinyxl_control", image=control, weight=0.0)])
    assert weight_zero.images[0].tobytes() == base.tobytes()
