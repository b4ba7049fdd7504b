"""Stable Diffusion 3 / 3.5 on tiny randomly initialised pipelines built from local configs (bench.gpu_model): a
64 px MMDiT with two CLIP encoders, a T5 encoder (its tokenizer made locally) and a 16-channel VAE with SD 3's scale
and shift, and the same without T5. Images are checked against diffusers' own StableDiffusion3Pipeline; the rest is
Serena's behaviour (samplers, infotext and replay, seeds, img2img, inpainting, hires fix, API, CLI, sweeps)."""

import base64
import functools
import io

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from helpers import api_request, meta_tensor_count, models_folder_fixtures, png_of
from PIL import Image

from bench.gpu_model import build_random_sd3_pipeline, build_t5_tokenizer
from modules import diffusion, infotext, prompt_encoding, rng, sd_models, sd_samplers
from modules.api import create_app
from modules.families import sd3
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.replay import processing_from_infotext
from serena_kit import sweep
from serena_kit.cli import main as serena_main

PROMPT = "a red circle on a blue background"
JOB = {"prompt": PROMPT, "seed": 3, "steps": 6, "do_not_save_samples": True, "do_not_save_grid": True}
CHECKPOINT = {"sd_model_checkpoint": "tiny3"}


sd3_root, tiny3 = models_folder_fixtures(
    "tiny3",
    {
        "tiny3": functools.partial(build_random_sd3_pipeline, tiny=True, dtype=torch.float32, device="cpu"),
        "tiny3-no-t5": functools.partial(
            build_random_sd3_pipeline, tiny=True, dtype=torch.float32, device="cpu", t5=False
        ),
    },
)


def generate(**fields):
    return process_images(StableDiffusionProcessingTxt2Img(**(JOB | CHECKPOINT | fields)))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def test_the_t5_tokenizer_is_made_locally_with_t5s_special_ids():
    tokenizer = build_t5_tokenizer()
    ids = tokenizer("a red circle").input_ids
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert ids[-1] == 1 and len(ids) == 4  # three words, then </s>
    assert tokenizer("zebra").input_ids[-1] == 1 and len(tokenizer("zebra").input_ids) > 2  # spelt out by letters


def test_the_architecture_and_family_are_read_from_the_folder(tiny3):
    names = {info.name: info.architecture for info in sd_models.list_checkpoints()}
    assert names["tiny3"] == "sd3" and names["tiny3-no-t5"] == "sd3"
    model = sd_models.load_model("tiny3")
    assert model.family is sd3.STABLE_DIFFUSION_3 and model.family.flow
    assert model.native_size == 64 and diffusion.latent_channels(model) == 16


@pytest.mark.parametrize("negative_prompt", ["", "blurry"])
def test_txt2img_matches_diffusers_sd3_pipeline(tiny3, negative_prompt):
    """Same noise, same flow schedule (shift 3): the CLIP and T5 conditioning, pooled text, CFG and the VAE's shift
    are diffusers'."""
    ours = generate(sampler_name="Euler", negative_prompt=negative_prompt, cfg_scale=7).images[0]
    pipeline = StableDiffusion3Pipeline.from_pretrained(tiny3 / "Stable-diffusion" / "tiny3", local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    noise = rng.image_noise((16, 8, 8), JOB["seed"], 0, 0.0, None)[None]
    theirs = pipeline(
        PROMPT, negative_prompt=negative_prompt, num_inference_steps=6, guidance_scale=7, latents=noise
    ).images[0]
    assert ours.size == theirs.size == (64, 64)
    assert np.abs(pixels(ours) - pixels(theirs)).max() <= 1
    assert pixels(ours).std() > 5


def test_the_conditioning_is_clip_then_t5_and_clip_alone_without_t5(tiny3):
    model = sd_models.load_model("tiny3")
    plain = prompt_encoding.text_encoding(model, "a red circle", 1)
    assert plain.hidden.shape == (1, 77, 96) and plain.tail.shape == (1, sd3.T5_SEQUENCE_LENGTH, 96)
    assert plain.pooled.shape == (1, 32 + 48)
    assert plain.hidden[..., :80].any() and not plain.hidden[..., 80:].any()  # CLIP-L 32 + G 48, padded to T5's 96
    weighted = prompt_encoding.text_encoding(model, "a (red:1.5) circle", 1)
    assert not torch.equal(weighted.hidden, plain.hidden)
    assert torch.equal(weighted.tail, plain.tail)  # T5 reads the words without weights
    assert sd3.words_of("a (red:1.5) BREAK [circle]") == "a red circle"
    long_text = ", ".join(["a red circle"] * 30)
    assert prompt_encoding.text_encoding(model, long_text, 1).context.shape[1] == 2 * 77 + sd3.T5_SEQUENCE_LENGTH
    conditioning = diffusion.encode_prompts(model, [long_text], [""], 1, "Original", 6)
    assert conditioning.at(0).shape == (2, 2 * 77 + sd3.T5_SEQUENCE_LENGTH, 96)  # the negative padded to match
    no_t5 = sd_models.load_model("tiny3-no-t5")
    alone = prompt_encoding.text_encoding(no_t5, "a red circle", 1)
    assert alone.tail is None and alone.context.shape == (1, 77, 96)
    assert generate(sd_model_checkpoint="tiny3-no-t5").images[0].size == (64, 64)


def test_flow_samplers_and_a_clear_error_for_the_others(tiny3):
    euler = generate(sampler_name="Euler").images[0]
    ancestral = generate(sampler_name="Euler a").images[0]
    assert generate(sampler_name="Euler a").images[0].tobytes() == ancestral.tobytes()  # seeded step noise
    assert np.abs(pixels(euler) - pixels(ancestral)).mean() > 1
    for name in ("DPM++ 2M", "UniPC"):
        image = generate(sampler_name=name).images[0]
        assert pixels(image).std() > 5
    with pytest.raises(
        ValueError, match=r"^sampler_name: 'DDIM' does not apply to flow-matching models .*Euler, Euler a"
    ):
        generate(sampler_name="DDIM")
    with pytest.raises(ValueError, match=r"^scheduler: 'Karras' is not available for flow-matching models"):
        generate(sampler_name="Euler", scheduler="Karras")
    flow_config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}
    assert sd_samplers.create_scheduler("DPM++ 2M", "Automatic", flow_config).config.flow_shift == 3.0


def test_seeds_batch_position_infotext_and_byte_identical_replay(tiny3):
    batch = generate(batch_size=3, exact=True, seed=10, negative_prompt="blurry")
    alone = generate(seed=12, negative_prompt="blurry")
    assert png_of(batch.images[2]) == png_of(alone.images[0])
    varied = generate(subseed=5, subseed_strength=0.5)
    assert png_of(varied.images[0]) != png_of(generate().images[0])  # the variation seed's noise changes it
    replayed = processing_from_infotext(varied.infotexts[0])
    assert replayed.sd_model_checkpoint == str((tiny3 / "Stable-diffusion" / "tiny3").resolve())
    replayed.do_not_save_samples = True
    again = process_images(replayed)
    assert png_of(again.images[0]) == png_of(varied.images[0])
    assert infotext.parse_infotext(again.infotexts[0]) == infotext.parse_infotext(varied.infotexts[0])


def test_img2img_inpainting_and_hires_on_sd3(tiny3):
    init = generate().images[0]
    job = JOB | CHECKPOINT | {"init_images": [init]}
    changed = process_images(StableDiffusionProcessingImg2Img(**(job | {"denoising_strength": 0.6}))).images[0]
    assert np.abs(pixels(changed) - pixels(init)).mean() > 1
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    inpainted = process_images(StableDiffusionProcessingImg2Img(**(job | {"mask": mask, "mask_blur": 0}))).images[0]
    assert inpainted.getpixel((2, 2)) == init.getpixel((2, 2))
    assert np.abs(pixels(inpainted)[16:48, 16:48] - pixels(init)[16:48, 16:48]).mean() > 1
    hires = generate(enable_hr=True, hr_scale=2, denoising_strength=0.5)
    assert hires.images[0].size == (128, 128) and "Hires upscale: 2" in hires.infotexts[0]


def test_the_api_cli_and_sweeps_run_sd3_as_the_engine_does(tiny3, tmp_path, capsys):
    app = create_app(outdir=tmp_path / "outputs", models_dir=tiny3 / "Stable-diffusion")

    listed = api_request(app, "GET", "/sdapi/v1/sd-models").json()
    assert {item["model_name"]: item["architecture"] for item in listed}["tiny3"] == "sd3"
    body = {"prompt": PROMPT, "seed": "3", "steps": "6", "sampler_name": "Euler"}
    answer = api_request(app, "POST", "/sdapi/v1/txt2img", body | {"override_settings": CHECKPOINT})
    assert answer.status_code == 200, answer.text
    engine = generate(sampler_name="Euler").images[0]
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
    assert image.tobytes() == engine.tobytes()
    refused = api_request(
        app, "POST", "/sdapi/v1/txt2img", body | {"sampler_name": "DDIM"} | {"override_settings": CHECKPOINT}
    )
    assert refused.status_code in (400, 422) and "flow-matching" in refused.text, refused.text
    job = ["--prompt", PROMPT, "--seed", "3", "--steps", "6", "--model", "tiny3", "--sampler", "Euler"]
    assert serena_main(["txt2img", *job, "--outdir", str(tmp_path)]) == 0
    (path,) = capsys.readouterr().out.split()
    assert Image.open(path).tobytes() == engine.tobytes()
    result = sweep(JOB | CHECKPOINT | {"sampler_name": "Euler", "exact": True}, x=("cfg_scale", [1.0, 7.0]))
    assert result.images[1].tobytes() == engine.tobytes()


# transformer, VAE, CLIP-L, OpenCLIP bigG, T5-XXL encoder: the tensors of their weights files (parameters and
# persistent buffers)
SD35_PARTS = (
    ("SD3Transformer2DModel", "transformer"),
    ("AutoencoderKL", "vae"),
    ("CLIPTextModelWithProjection", "text_encoder"),
    ("CLIPTextModelWithProjection", "text_encoder_2"),
    ("T5EncoderModel", "text_encoder_3"),
)
SD35_PARAMETERS = {
    "sd35_medium": [2_469_663_936, 83_819_683, 123_650_304, 694_659_840, 4_762_310_656],
    "sd35_large": [8_146_280_768, 83_819_683, 123_650_304, 694_659_840, 4_762_310_656],
}


def test_the_shipped_sd35_configs_build_the_published_architectures():
    """On the meta device: SD 3.5 Medium's MMDiT-X is Stability AI's 2.5 B (2.24 B parameters and a 0.23 B position
    table), Large's MMDiT 8.1 B (their model announcements), with CLIP-L, OpenCLIP bigG and T5-XXL's encoder, the same
    in both."""
    from bench.gpu_model import ROOT

    counts = {
        name: [
            meta_tensor_count(cls, str(ROOT / "modules" / "model_configs" / name / part / "config.json"))
            for cls, part in SD35_PARTS
        ]
        for name in SD35_PARAMETERS
    }
    assert counts == SD35_PARAMETERS
    assert round(counts["sd35_medium"][0] / 1e9, 1) == 2.5 and round(counts["sd35_large"][0] / 1e9, 1) == 8.1


def test_lora_on_the_mmdit_and_weight_zero_is_the_base(tiny3, tmp_path, monkeypatch):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusion3Pipeline.from_pretrained(tiny3 / "Stable-diffusion" / "tiny3", local_files_only=True)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    pipeline.transformer.add_adapter(config)
    layers = get_peft_model_state_dict(pipeline.transformer)
    StableDiffusion3Pipeline.save_lora_weights(
        tmp_path, transformer_lora_layers=layers, weight_name="mmdit.safetensors"
    )
    monkeypatch.setenv("SERENA_LORA_DIR", str(tmp_path))
    base = generate().images[0]
    assert generate(prompt=PROMPT + " <lora:mmdit:0>").images[0].tobytes() == base.tobytes()
    full = generate(prompt=PROMPT + " <lora:mmdit:1>")
    assert np.abs(pixels(full.images[0]) - pixels(base)).mean() > 0.5
    assert 'Lora hashes: "mmdit: ' in full.infotexts[0]
    assert generate().images[0].tobytes() == base.tobytes()


def test_single_sd3_and_flux_files_are_recognised_from_their_keys(tmp_path):
    """SAI's keys (with the all-in-one prefix) and BFL's (without): read by modules.transformer_single_file, tested in
    test_transformer_single_file."""
    import safetensors.torch

    from modules.sd_single_file import file_architecture

    for family, key in (
        ("sd3", "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"),
        ("flux", "double_blocks.0.img_attn.qkv.weight"),
    ):
        path = tmp_path / f"{family}.safetensors"
        safetensors.torch.save_file({key: torch.zeros(2, 2)}, str(path))
        assert file_architecture(path) == family


def test_skip_layer_guidance_on_the_mmdits_blocks(tiny3):
    """SLG skips the transformer's numbered joint blocks ("block.N"; SD 3.5's reference SLG skips middle ones) in its
    third evaluation: the same prediction as the transformer's own `skip_layers` (diffusers' SD 3 pipeline's SLG); at
    scale 0 it gives CFG's image; a UNet block name is refused with the transformer's."""
    from modules.guidance import perturbed_transformer, transformer_blocks

    transformer = sd_models.load_model("tiny3").pipeline.transformer
    inputs = {
        "hidden_states": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(0)),
        "encoder_hidden_states": torch.randn(1, 9, 96, generator=torch.Generator().manual_seed(1)),
        "pooled_projections": torch.randn(1, 80, generator=torch.Generator().manual_seed(2)),
        "timestep": torch.tensor([500.0]),
    }
    with torch.no_grad():
        reference = transformer(**inputs, skip_layers=[1]).sample
        with perturbed_transformer(transformer_blocks(transformer, "block.1"), "SLG"):
            skipped = transformer(**inputs).sample
        assert torch.equal(skipped, reference) and not torch.equal(transformer(**inputs).sample, reference)
    plain = generate(sampler_name="Euler").images[0]
    made = generate(sampler_name="Euler", guidance="SLG", perturbed_layers="block.1", perturbed_scale=3)
    assert (
        np.abs(pixels(made.images[0]) - pixels(plain)).mean() > 2 and "Perturbed layers: block.1" in made.infotexts[0]
    )
    neutral = generate(sampler_name="Euler", guidance="SLG", perturbed_layers="block.0", perturbed_scale=0)
    assert np.abs(pixels(neutral.images[0]) - pixels(plain)).max() <= 1
    replayed = processing_from_infotext(made.infotexts[0])
    replayed.do_not_save_samples = True
    assert png_of(process_images(replayed).images[0]) == png_of(made.images[0])
    with pytest.raises(
        ValueError, match=r"^perturbed_layers: 'mid' is not a block with attention .*: block.0, block.1$"
    ):
        generate(sampler_name="Euler", guidance="SLG")


def test_perturbed_attention_guidance_on_joint_attention(tiny3):
    """PAG on SD 3: in the perturbed blocks each image token attends to itself among the image's tokens and to the
    text as before: the attention output equals diffusers' PAG joint-attention processor's perturbed half (on an
    attention without q/k norms, which that processor predates); on the tiny model it changes the image, at scale 0
    it gives CFG's, and replay is byte-identical."""
    from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0, PAGJointAttnProcessor2_0

    from modules.guidance import _IdentityImageAttention

    torch.manual_seed(0)
    attention = Attention(query_dim=32, added_kv_proj_dim=32, dim_head=16, heads=2, out_dim=32, context_pre_only=False)
    image, text = torch.randn(1, 12, 32), torch.randn(1, 5, 32)
    with torch.no_grad():
        with _IdentityImageAttention(image_tokens=12, text_first=False):
            ours = JointAttnProcessor2_0()(attention, image, text)
        theirs = PAGJointAttnProcessor2_0()(attention, torch.cat([image] * 2), torch.cat([text] * 2))
        plain = JointAttnProcessor2_0()(attention, image, text)
    assert all(torch.allclose(mine, reference[1:], atol=1e-6) for mine, reference in zip(ours, theirs))
    assert not torch.allclose(ours[0], plain[0], atol=1e-3)  # the image's tokens attend otherwise
    assert torch.allclose(ours[1], plain[1], atol=1e-6)  # the text's as before
    cfg = generate(sampler_name="Euler").images[0]
    made = generate(sampler_name="Euler", guidance="PAG", perturbed_layers="block.0, block.1", perturbed_scale=3)
    assert np.abs(pixels(made.images[0]) - pixels(cfg)).mean() > 2  # not only the guided arithmetic
    neutral = generate(sampler_name="Euler", guidance="PAG", perturbed_layers="block.0", perturbed_scale=0)
    assert np.abs(pixels(neutral.images[0]) - pixels(cfg)).max() <= 1
    replayed = processing_from_infotext(made.infotexts[0])
    replayed.do_not_save_samples = True
    assert png_of(process_images(replayed).images[0]) == png_of(made.images[0])


def test_textual_inversion_on_both_clip_encoders(tiny3, tmp_path, monkeypatch):
    """An SDXL-format embedding (`clip_l`, `clip_g` vectors) acts on SD 3's two CLIP encoders: one whose vectors are
    each encoder's own token embedding of "red" draws what "red" draws (the model without T5, whose sequence is the
    CLIP part alone); the infotext records its hash and replay finds it."""
    import safetensors.torch

    pipeline = sd_models.load_model("tiny3-no-t5").pipeline
    vectors = {}
    for key, tokenizer, encoder in (
        ("clip_l", pipeline.tokenizer, pipeline.text_encoder),
        ("clip_g", pipeline.tokenizer_2, pipeline.text_encoder_2),
    ):
        token = tokenizer("red", add_special_tokens=False).input_ids
        vectors[key] = encoder.get_input_embeddings().weight[token].detach().clone()
    safetensors.torch.save_file(vectors, str(tmp_path / "crimson.safetensors"))
    monkeypatch.setenv("SERENA_EMBEDDINGS_DIR", str(tmp_path))
    red = generate(sd_model_checkpoint="tiny3-no-t5", sampler_name="Euler")
    made = generate(sd_model_checkpoint="tiny3-no-t5", sampler_name="Euler", prompt=PROMPT.replace("red", "crimson"))
    assert made.images[0].tobytes() == red.images[0].tobytes()
    assert 'TI hashes: "crimson: ' in made.infotexts[0]
    replayed = processing_from_infotext(made.infotexts[0])
    replayed.do_not_save_samples = True
    assert png_of(process_images(replayed).images[0]) == png_of(made.images[0])
