"""Single-file (original SD layout) checkpoints: round trip, detection, pickle policy, shipped configs."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from modules.sd_single_file import (
    SHIPPED_CONFIGS,
    checkpoint_signature,
    detect_config_dir,
    load_single_file_pipeline,
    original_state_dict,
    read_checkpoint,
    save_single_file,
)

torch.set_num_threads(1)

COMPONENTS = ("unet", "vae", "text_encoder")
GENERATION = {"prompt": "a photo of a cat", "num_inference_steps": 2, "height": 64, "width": 64, "output_type": "np"}


def build_tiny_pipeline() -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        # One layer per level exercises the block numbering that SD's two layers per level would hide.
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(SHIPPED_CONFIGS["sd15"] / "tokenizer", local_files_only=True),
        unet=unet,
        scheduler=PNDMScheduler.from_pretrained(SHIPPED_CONFIGS["sd15"] / "scheduler", local_files_only=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: StableDiffusionPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(**GENERATION, generator=torch.Generator().manual_seed(0)).images


def assert_same_weights(expected: StableDiffusionPipeline, actual: StableDiffusionPipeline) -> None:
    for component in COMPONENTS:
        expected_state = getattr(expected, component).state_dict()
        actual_state = getattr(actual, component).state_dict()
        assert actual_state.keys() == expected_state.keys(), component
        for key, tensor in expected_state.items():
            assert torch.equal(actual_state[key], tensor), f"{component}.{key}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_file")
    pipe = build_tiny_pipeline()
    diffusers_dir = root / "tiny-diffusers"
    pipe.save_pretrained(diffusers_dir)
    checkpoint = root / "models" / "Stable-diffusion" / "tiny.safetensors"
    save_single_file(pipe, checkpoint)
    return SimpleNamespace(pipe=pipe, diffusers_dir=diffusers_dir, checkpoint=checkpoint, images=generate(pipe))


def meta_models(config_name: str) -> SimpleNamespace:
    """A shipped architecture at full size on the meta device: shapes without memory or init time."""
    folder = SHIPPED_CONFIGS[config_name]
    with init_empty_weights():
        return SimpleNamespace(
            unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            vae=AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        )


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def test_round_trip_is_exact(tiny):
    assert not list(tiny.checkpoint.parent.glob("*.tmp")), "atomic write left its temp file behind"
    keys = read_checkpoint(tiny.checkpoint).keys()
    assert {key.split(".")[0] for key in keys} == {"model", "first_stage_model", "cond_stage_model"}
    assert "first_stage_model.decoder.mid.attn_1.q.weight" in keys

    loaded = load_single_file_pipeline(tiny.checkpoint, config_dir=tiny.diffusers_dir)

    assert_same_weights(tiny.pipe, loaded)
    np.testing.assert_array_equal(generate(loaded), tiny.images)


def test_vae_attention_is_stored_as_1x1_convolution(tiny):
    state_dict = read_checkpoint(tiny.checkpoint)
    linear = tiny.pipe.vae.decoder.mid_block.attentions[0].to_q.weight
    assert state_dict["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (*linear.shape, 1, 1)


def test_sidecar_config_dir_and_v_parameterization(tiny, tmp_path):
    checkpoint = tmp_path / "tiny-v.safetensors"
    shutil.copy(tiny.checkpoint, checkpoint)
    shutil.copytree(tiny.diffusers_dir, tmp_path / "tiny-v.config")
    (tmp_path / "tiny-v.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')

    loaded = load_single_file_pipeline(checkpoint)

    assert loaded.scheduler.config.prediction_type == "v_prediction"
    assert_same_weights(tiny.pipe, loaded)


def test_torch_dtype_is_applied(tiny):
    loaded = load_single_file_pipeline(tiny.checkpoint, config_dir=tiny.diffusers_dir, torch_dtype=torch.bfloat16)
    assert {getattr(loaded, component).dtype for component in COMPONENTS} == {torch.bfloat16}


def test_pickle_checkpoint_needs_allow_flag(tiny, tmp_path):
    checkpoint = tmp_path / "tiny.ckpt"
    torch.save({"global_step": 1, "state_dict": read_checkpoint(tiny.checkpoint)}, checkpoint)

    with pytest.raises(ValueError, match="allow") as refused:
        load_single_file_pipeline(checkpoint, config_dir=tiny.diffusers_dir)
    assert "tiny.ckpt" in str(refused.value)

    loaded = load_single_file_pipeline(checkpoint, config_dir=tiny.diffusers_dir, allow_pickle=True)
    assert_same_weights(tiny.pipe, loaded)


def test_unknown_extension_lists_allowed_ones(tmp_path):
    checkpoint = tmp_path / "model.onnx"
    checkpoint.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.safetensors.*\.ckpt"):
        load_single_file_pipeline(checkpoint)


def test_unknown_architecture_is_refused(tiny):
    state_dict = read_checkpoint(tiny.checkpoint)
    # The tiny model matches no shipped config ...
    with pytest.raises(ValueError, match="not supported"):
        detect_config_dir(state_dict)
    # ... and an inpainting-style 9-channel UNet no longer matches its own config.
    state_dict["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 9, 3, 3)
    with pytest.raises(ValueError, match="unet_in_channels': 9"):
        detect_config_dir(state_dict, config_dir=tiny.diffusers_dir)
    with pytest.raises(ValueError, match="not supported"):
        detect_config_dir({"some.other.model.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("config_name", "unet_params", "vae_params", "text_params"),
    [("sd15", 859_520_964, 83_653_863, 123_060_480), ("sd2", 865_910_724, 83_653_863, 340_387_840)],
)
def test_shipped_configs_have_published_sizes(config_name, unet_params, vae_params, text_params):
    models = meta_models(config_name)
    assert parameter_count(models.unet) == unet_params
    assert parameter_count(models.vae) == vae_params
    assert parameter_count(models.text_encoder) == text_params


@pytest.mark.parametrize("config_name", ["sd15", "sd2"])
def test_shipped_tokenizers_are_clip_bpe(config_name):
    tokenizer = CLIPTokenizer.from_pretrained(SHIPPED_CONFIGS[config_name] / "tokenizer", local_files_only=True)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.pad_token == {"sd15": "<|endoftext|>", "sd2": "!"}[config_name]


def test_sd15_layout_is_detected_and_matches_diffusers_conversion():
    models = meta_models("sd15")
    state_dict = original_state_dict(models)

    assert detect_config_dir(state_dict) == SHIPPED_CONFIGS["sd15"]
    # Names from released SD 1.5 files; diffusers' loader also accepts some misplaced ones (e.g. upsampler slots).
    assert sum(key.startswith("model.diffusion_model.") for key in state_dict) == 686
    assert {
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "first_stage_model.encoder.down.0.downsample.conv.weight",
        "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
    } <= state_dict.keys()
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in state_dict
    # diffusers' own original->diffusers conversion must land on exactly the model's keys and shapes.
    for name, convert in (("unet", convert_ldm_unet_checkpoint), ("vae", convert_ldm_vae_checkpoint)):
        model = getattr(models, name)
        converted = convert(state_dict, dict(model.config))
        expected = model.state_dict()
        assert converted.keys() == expected.keys(), name
        assert all(converted[key].shape == tensor.shape for key, tensor in expected.items()), name


def test_sd2_layout_with_open_clip_is_detected():
    models = meta_models("sd2")
    state_dict = {
        key: tensor for key, tensor in original_state_dict(models).items() if not key.startswith("cond_stage_model.")
    }
    state_dict["cond_stage_model.model.token_embedding.weight"] = torch.empty(49408, 1024, device="meta")

    assert checkpoint_signature(state_dict)["unet_use_linear_projection"] is True
    assert detect_config_dir(state_dict) == SHIPPED_CONFIGS["sd2"]
