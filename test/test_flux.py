"""FLUX.1 on tiny randomly initialised pipelines built from local configs (bench.gpu_model): a 64 px transformer over
packed latents with CLIP-L's pooled text and T5's sequence, guidance-distilled (dev) or not (schnell). Images are
checked against diffusers' own FluxPipeline; the rest is Serena's behaviour (the distilled guidance field, real CFG,
infotext and replay, img2img, the API)."""

import base64
import functools
import io

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from helpers import api_request, meta_tensor_count, models_folder_fixtures, png_of
from PIL import Image

from bench.gpu_model import build_random_flux_pipeline
from modules import infotext, prompt_encoding, rng, sd_models
from modules.api import create_app
from modules.families import flux
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext

PROMPT = "a red circle on a blue background"
JOB = {"prompt": PROMPT, "seed": 3, "steps": 4, "cfg_scale": 1, "sampler_name": "Euler"}
JOB |= {"do_not_save_samples": True, "do_not_save_grid": True, "sd_model_checkpoint": "tinyflux"}


flux_root, tinyflux = models_folder_fixtures(
    "tinyflux",
    {
        "tinyflux": functools.partial(build_random_flux_pipeline, tiny=True, dtype=torch.float32, device="cpu"),
        "tinyflux-schnell": functools.partial(
            build_random_flux_pipeline, tiny=True, dtype=torch.float32, device="cpu", distilled=False
        ),
    },
)


def generate(**fields):
    return process_images(StableDiffusionProcessingTxt2Img(**(JOB | fields)))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def diffusers_image(folder, **call):
    pipeline = FluxPipeline.from_pretrained(folder, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    noise = rng.image_noise((16, 8, 8), JOB["seed"], 0, 0.0, None)[None]
    packed = flux.pack(noise)
    return pipeline(PROMPT, num_inference_steps=4, height=64, width=64, latents=packed, **call).images[0]


def test_the_architecture_family_and_guidance_input_are_read_from_the_folder(tinyflux):
    names = {info.name: info.architecture for info in sd_models.list_checkpoints()}
    assert names["tinyflux"] == "flux" and names["tinyflux-schnell"] == "flux"
    model = sd_models.load_model("tinyflux")
    assert model.family is flux.FLUX and model.family.guidance_distilled(model) and model.native_size == 64
    assert not flux.FLUX.guidance_distilled(sd_models.load_model("tinyflux-schnell"))


def test_txt2img_matches_diffusers_flux_pipeline_at_the_distilled_guidance(tinyflux):
    ours = generate(distilled_cfg_scale=3.5).images[0]
    theirs = diffusers_image(tinyflux / "Stable-diffusion" / "tinyflux", guidance_scale=3.5)
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1
    assert pixels(ours).std() > 5
    other = generate(distilled_cfg_scale=1.0).images[0]
    assert np.abs(pixels(other) - pixels(ours)).mean() > 0.5  # the guidance input changes the image


def test_real_cfg_matches_diffusers_true_cfg(tinyflux):
    ours = generate(cfg_scale=4, negative_prompt="blurry", distilled_cfg_scale=3.5).images[0]
    theirs = diffusers_image(
        tinyflux / "Stable-diffusion" / "tinyflux", guidance_scale=3.5, true_cfg_scale=4, negative_prompt="blurry"
    )
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1


def test_the_conditioning_is_t5_and_clip_ls_pooled_output(tinyflux):
    model = sd_models.load_model("tinyflux")
    plain = prompt_encoding.text_encoding(model, "a red circle", 1)
    assert plain.hidden.shape == (1, flux.T5_SEQUENCE_LENGTH, 64) and plain.pooled.shape == (1, 32)
    weighted = prompt_encoding.text_encoding(model, "a (red:1.5) circle", 1)
    assert torch.equal(weighted.hidden, plain.hidden) and torch.equal(weighted.pooled, plain.pooled)


def test_the_distilled_guidance_is_written_replayed_and_only_for_distilled_models(tinyflux):
    made = generate(distilled_cfg_scale=2.5, subseed=4, subseed_strength=0.3)
    assert "Distilled CFG Scale: 2.5" in made.infotexts[0]
    replayed = processing_from_infotext(made.infotexts[0])
    assert replayed.distilled_cfg_scale == 2.5
    replayed.do_not_save_samples = True
    again = process_images(replayed)
    assert png_of(again.images[0]) == png_of(made.images[0])
    assert infotext.parse_infotext(again.infotexts[0]) == infotext.parse_infotext(made.infotexts[0])
    schnell = generate(sd_model_checkpoint="tinyflux-schnell", distilled_cfg_scale=2.5)
    assert "Distilled CFG Scale" not in schnell.infotexts[0]
    assert png_of(schnell.images[0]) == png_of(generate(sd_model_checkpoint="tinyflux-schnell").images[0])
    batch = generate(batch_size=3, exact=True, seed=10)
    assert png_of(batch.images[2]) == png_of(generate(seed=12).images[0])


def test_img2img_and_hires_on_flux(tinyflux):
    init = generate().images[0]
    job = JOB | {"init_images": [init], "denoising_strength": 0.6}
    changed = process_images(StableDiffusionProcessingImg2Img(**job)).images[0]
    assert changed.size == (64, 64) and np.abs(pixels(changed) - pixels(init)).mean() > 1
    hires = generate(enable_hr=True, hr_scale=2, denoising_strength=0.5)
    assert hires.images[0].size == (128, 128)


def test_the_api_takes_distilled_cfg_scale_as_forge_names_it(tinyflux, tmp_path):
    app = create_app(outdir=tmp_path / "outputs", models_dir=tinyflux / "Stable-diffusion")

    listed = api_request(app, "GET", "/sdapi/v1/sd-models").json()
    assert {item["model_name"]: item["architecture"] for item in listed}["tinyflux"] == "flux"
    body = {"prompt": PROMPT, "seed": 3, "steps": 4, "cfg_scale": "1", "sampler_name": "Euler"}
    body |= {"distilled_cfg_scale": "2.5", "override_settings": {"sd_model_checkpoint": "tinyflux"}}
    answer = api_request(app, "POST", "/sdapi/v1/txt2img", body)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.tobytes() == generate(distilled_cfg_scale=2.5).images[0].tobytes()
    assert "Distilled CFG Scale: 2.5" in answer.json()["info"]


def test_the_shipped_flux_configs_build_the_published_architecture():
    """On the meta device: FLUX.1 dev and schnell are Black Forest Labs' "12 billion parameter rectified flow
    transformer" (their model cards); dev adds the guidance embedding; CLIP-L and T5-XXL's encoder beside it."""
    from bench.gpu_model import ROOT

    parts = (
        ("FluxTransformer2DModel", "transformer"),
        ("AutoencoderKL", "vae"),
        ("CLIPTextModel", "text_encoder"),
        ("T5EncoderModel", "text_encoder_2"),
    )
    counts = {
        name: [
            meta_tensor_count(cls, str(ROOT / "modules" / "model_configs" / name / part / "config.json"))
            for cls, part in parts
        ]
        for name in ("flux1_dev", "flux1_schnell")
    }
    assert counts == {  # transformer, VAE, CLIP-L, T5-XXL encoder
        "flux1_dev": [11_901_408_320, 83_819_683, 123_060_480, 4_762_310_656],
        "flux1_schnell": [11_891_178_560, 83_819_683, 123_060_480, 4_762_310_656],
    }
    assert round(counts["flux1_dev"][0] / 1e9) == 12 and counts["flux1_dev"][0] > counts["flux1_schnell"][0]


def test_lora_in_the_diffusers_and_bfl_kohya_layouts_and_weight_zero_is_the_base(tinyflux, tmp_path, monkeypatch):
    """The same update to the first double block's image attention (q, k, v), written as diffusers/PEFT keys and as
    the kohya keys of BFL's module names (`double_blocks_0_img_attn_qkv`, one fused qkv layer), gives the same image;
    weight 0 is the base's bytes; CLIP-L's layers apply in both layouts, T5's are refused."""
    import safetensors.torch

    torch.manual_seed(0)
    rank, width = 4, 32
    down, up = torch.randn(rank, width) * 2, torch.randn(3 * width, rank) * 2
    bfl = {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": down,
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": up,
        "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(float(rank)),
    }
    diffusers_layout = {}
    for index, projection in enumerate(("to_q", "to_k", "to_v")):
        prefix = f"transformer.transformer_blocks.0.attn.{projection}"
        diffusers_layout[f"{prefix}.lora_A.weight"] = down.clone()
        diffusers_layout[f"{prefix}.lora_B.weight"] = up[index * width : (index + 1) * width].clone()
    safetensors.torch.save_file(bfl, str(tmp_path / "bfl.safetensors"))
    safetensors.torch.save_file(diffusers_layout, str(tmp_path / "peft.safetensors"))
    te_down, te_up = torch.randn(rank, width) * 2, torch.randn(2 * width, rank) * 2  # CLIP-L's mlp.fc1: 32 -> 64
    kohya_te = "lora_te1_text_model_encoder_layers_0_mlp_fc1"
    safetensors.torch.save_file(
        {
            f"{kohya_te}.lora_down.weight": te_down,
            f"{kohya_te}.lora_up.weight": te_up,
            f"{kohya_te}.alpha": torch.tensor(4.0),
        },
        str(tmp_path / "te.safetensors"),
    )
    peft_te = "text_encoder.text_model.encoder.layers.0.mlp.fc1"
    safetensors.torch.save_file(
        {f"{peft_te}.lora_A.weight": te_down.clone(), f"{peft_te}.lora_B.weight": te_up.clone()},
        str(tmp_path / "te_peft.safetensors"),
    )
    t5 = "text_encoder_2.encoder.block.0.layer.0.SelfAttention.q"
    safetensors.torch.save_file(
        {f"{t5}.lora_A.weight": torch.randn(rank, 64), f"{t5}.lora_B.weight": torch.randn(64, rank)},
        str(tmp_path / "t5.safetensors"),
    )
    monkeypatch.setenv("SERENA_LORA_DIR", str(tmp_path))
    base = generate().images[0]
    assert generate(prompt=PROMPT + " <lora:peft:0>").images[0].tobytes() == base.tobytes()
    full = generate(prompt=PROMPT + " <lora:peft:1>").images[0]
    assert np.abs(pixels(full) - pixels(base)).mean() > 0.5
    from_bfl = generate(prompt=PROMPT + " <lora:bfl:1>").images[0]
    assert np.abs(pixels(from_bfl) - pixels(full)).max() <= 1
    # CLIP-L's layers (its pooled output conditions FLUX), kohya's layout and diffusers': the same image.
    with_te = generate(prompt=PROMPT + " <lora:te:1>").images[0]
    assert np.abs(pixels(with_te) - pixels(base)).mean() > 0.5
    assert np.abs(pixels(generate(prompt=PROMPT + " <lora:te_peft:1>").images[0]) - pixels(with_te)).max() <= 1
    assert generate(prompt=PROMPT + " <lora:te:0>").images[0].tobytes() == base.tobytes()
    with pytest.raises(ValueError, match=r"^prompt: LoRA 't5' .*text_encoder_2, a T5EncoderModel: LoRA layers apply"):
        generate(prompt=PROMPT + " <lora:t5:1>")
    assert generate().images[0].tobytes() == base.tobytes()


@pytest.mark.parametrize("method", ["SLG", "PAG"])
def test_slg_and_pag_on_the_double_and_single_stream_blocks(tinyflux, method):
    """SLG skips and PAG perturbs (image self-attention as identity, text attending as before) FLUX's blocks by the
    names "block.N" (double-stream) and "single.N" (single-stream): the image changes, scale 0 gives the unperturbed
    image, replay is byte-identical, and other names are refused with the transformer's."""
    from modules.guidance import perturbed_transformer, transformer_blocks

    transformer = sd_models.load_model("tinyflux").pipeline.transformer
    generator = torch.Generator().manual_seed(0)
    positions = torch.stack([torch.zeros(16), torch.arange(16) // 4, torch.arange(16) % 4], dim=1)
    inputs = {
        "hidden_states": torch.randn(1, 16, 64, generator=generator),
        "encoder_hidden_states": torch.randn(1, 512, 64, generator=generator),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "timestep": torch.tensor([0.5]),
        "img_ids": positions,
        "txt_ids": torch.zeros(512, 3),
        "guidance": torch.tensor([3.5]),
    }
    with torch.no_grad():
        unperturbed = transformer(**inputs).sample
        with perturbed_transformer(transformer_blocks(transformer, "block.0, single.0"), method):
            perturbed = transformer(**inputs).sample
    # PAG's change is small on this random model, whose 64 image tokens sit beside 512 text tokens; SLG's is larger.
    assert (perturbed - unperturbed).abs().mean() > 1e-4 * unperturbed.abs().mean()
    plain = generate().images[0]
    made = generate(guidance=method, perturbed_layers="block.0, single.0", perturbed_scale=3)
    assert png_of(made.images[0]) != png_of(plain) and 'Perturbed layers: "block.0, single.0"' in made.infotexts[0]
    neutral = generate(guidance=method, perturbed_layers="single.0", perturbed_scale=0)
    assert np.abs(pixels(neutral.images[0]) - pixels(plain)).max() <= 1
    replayed = processing_from_infotext(made.infotexts[0])
    replayed.do_not_save_samples = True
    assert png_of(process_images(replayed).images[0]) == png_of(made.images[0])
    with pytest.raises(ValueError, match=r"^perturbed_layers: 'mid' is not a block .*; allowed: block.0, single.0$"):
        generate(guidance=method)


@pytest.mark.parametrize("cfg_scale", [1, 4])
def test_attention_maps_of_t5_words_without_changing_the_image(tinyflux, cfg_scale):
    """FLUX's maps: each T5 word's attention to the image's tokens in the double-stream blocks, at CFG 1 (the
    prompts evaluated alone) and with real CFG; capturing does not change the image's bytes."""
    plain = generate(cfg_scale=cfg_scale)
    captured = generate(cfg_scale=cfg_scale, attention=True)
    assert png_of(captured.images[0]) == png_of(plain.images[0])
    maps = captured.attention_maps[0]
    assert [word for word, _ in maps.words] == PROMPT.split()
    circle = maps.word_map("circle")
    assert circle.shape == (64, 64) and circle.max() == 1.0 and circle.min() == 0.0
    assert not np.array_equal(circle, maps.word_map("background"))


def test_textual_inversion_on_clip_l(tinyflux, tmp_path, monkeypatch):
    """An embedding acts on FLUX's CLIP-L (an SDXL embedding's `clip_l` vectors, or an SD 1.x one's): its pooled
    output changes; T5 reads the name as a word. Recorded and replayed."""
    import safetensors.torch

    width = sd_models.load_model("tinyflux").pipeline.text_encoder.get_input_embeddings().weight.shape[1]
    safetensors.torch.save_file({"emb_params": torch.randn(2, width) * 3}, str(tmp_path / "glyph.safetensors"))
    monkeypatch.setenv("SERENA_EMBEDDINGS_DIR", str(tmp_path))
    prompt = PROMPT.replace("red", "glyph")
    made = generate(prompt=prompt)
    assert 'TI hashes: "glyph: ' in made.infotexts[0]
    replayed = processing_from_infotext(made.infotexts[0])
    replayed.do_not_save_samples = True
    assert png_of(process_images(replayed).images[0]) == png_of(made.images[0])
    monkeypatch.setenv("SERENA_EMBEDDINGS_DIR", str(tmp_path / "none"))
    sd_models.model_cache.clear()
    assert generate(prompt=prompt).images[0].tobytes() != made.images[0].tobytes()
