"""Configurations of the default model's components, built with seeded random weights.

The layout is a scaled-down Stable Diffusion 1.x: a 3-level AutoencoderKL (scale factor 4, 4 latent channels),
a UNet2DConditionModel with CrossAttnDownBlock2D/DownBlock2D blocks, and a CLIP text encoder over the model's
own tokenizer. Native resolution is 32x32 pixels (8x8x4 latents).
"""

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

NATIVE_SIZE = 32
LATENT_CHANNELS = 4
TEXT_HIDDEN_SIZE = 64

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 32, 32),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    # With one channel per group GroupNorm removes each channel's mean, i.e. the flat colours this model draws;
    # 4 channels per group trains several times faster. (Original ldm code hard-codes 32 groups, so converted
    # checkpoints need this config rather than the ldm default.)
    norm_num_groups=8,
    sample_size=NATIVE_SIZE,
)

UNET_CONFIG = dict(
    sample_size=NATIVE_SIZE // 4,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64, 64),
    layers_per_block=1,
    cross_attention_dim=TEXT_HIDDEN_SIZE,
    # As in SD 1.x configs, diffusers reads attention_head_dim as the number of heads.
    attention_head_dim=4,
    # Same reason as the VAE: 32 groups over 32 channels would normalise away flat colours.
    norm_num_groups=8,
)

# Stable Diffusion 1.x noise schedule. clip_sample/set_alpha_to_one/skip_prk_steps are listed so that DDIM and
# PNDM built with from_config() behave as they do for SD 1.5 (DDIM would otherwise clip latents to [-1, 1]).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="leading",
    clip_sample=False,
    set_alpha_to_one=False,
    skip_prk_steps=True,
)


def _seeded(seed: int):
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    return generator_state


def build_vae(seed: int = 0) -> AutoencoderKL:
    state = _seeded(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    torch.random.set_rng_state(state)
    return vae


def build_unet(seed: int = 1) -> UNet2DConditionModel:
    state = _seeded(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    torch.random.set_rng_state(state)
    return unet


def text_encoder_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=4 * TEXT_HIDDEN_SIZE,
        projection_dim=TEXT_HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_text_encoder(tokenizer: CLIPTokenizer, seed: int = 2) -> CLIPTextModel:
    state = _seeded(seed)
    text_encoder = CLIPTextModel(text_encoder_config(tokenizer))
    torch.random.set_rng_state(state)
    return text_encoder


def build_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG)


def native_size(unet: UNet2DConditionModel, vae: AutoencoderKL) -> int:
    """Native pixel size as the engine derives it from the component configs."""
    return unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)
