"""SDXL base and refiner: two CLIP text encoders (the refiner has the second only) whose penultimate hidden states are
concatenated, the second's pooled output and the image's size (the refiner: an aesthetic score) as micro-conditioning,
an empty negative prompt encoded as zeros, as the webui and diffusers do."""

from __future__ import annotations

import torch

from modules.families.base import ModelFamily

SDXL_CROP_TOP_LEFT = (0, 0)  # the webui's defaults (its sdxl_crop_top / sdxl_crop_left options)
REFINER_AESTHETIC_SCORES = (2.5, 6.0)  # negative, positive: the webui's sdxl_refiner_low/high_aesthetic_score


class StableDiffusionXL(ModelFamily):
    def matches(self, pipeline) -> bool:
        return getattr(pipeline, "unet", None) is not None and getattr(pipeline, "text_encoder_2", None) is not None

    def encoder_output(self, text_encoder, input_ids, attention_mask, clip_skip: int):
        """The penultimate layer's hidden states whatever the clip skip (as diffusers' SDXL pipelines), and the
        second encoder's pooled projection."""
        return penultimate_and_pooled(text_encoder, input_ids)

    def step_conditioning(self, model, latents: torch.Tensor, distilled_cfg_scale=None) -> torch.Tensor:
        return size_conditioning(model, latents)

    def denoiser_kwargs(self, step_conditioning, conditioning, step_index: int) -> dict:
        pooled = conditioning.pooled_at(step_index)
        return {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": step_conditioning}}


def penultimate_and_pooled(text_encoder, input_ids):
    """A CLIP encoder's penultimate hidden states and its projected pooled output (None without a projection)."""
    output = text_encoder(input_ids, output_hidden_states=True)
    pooled = output.text_embeds if hasattr(output, "text_embeds") else None
    return output.hidden_states[-2], pooled


def size_conditioning(model, latents: torch.Tensor) -> torch.Tensor:
    """SDXL's micro-conditioning, one row per CFG row (negatives, then prompts): original size, crop, target size
    (the image's own size, as the webui sets them), or, for the refiner, the aesthetic score instead of the target."""
    unet_config = model.pipeline.unet.config
    pooled_dim = model.pipeline.text_encoder_2.config.projection_dim
    ids_count = (unet_config.projection_class_embeddings_input_dim - pooled_dim) // unet_config.addition_time_embed_dim
    height, width = (side * model.vae_scale_factor for side in latents.shape[-2:])
    size_and_crop = [height, width, *SDXL_CROP_TOP_LEFT]
    if ids_count == 5:  # the refiner
        rows = [size_and_crop + [REFINER_AESTHETIC_SCORES[0]]] * len(latents)
        rows += [size_and_crop + [REFINER_AESTHETIC_SCORES[1]]] * len(latents)
    else:
        rows = [size_and_crop + [height, width]] * (2 * len(latents))
    return torch.tensor(rows, device=model.device, dtype=model.dtype)


STABLE_DIFFUSION_XL = StableDiffusionXL("sdxl", ("sdxl", "sdxl-refiner"), zero_empty_negative=True)
