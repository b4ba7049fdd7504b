"""FLUX.1 (dev, schnell): a rectified-flow transformer (diffusers' `FluxTransformer2DModel`) over 2x2-packed latents,
conditioned by T5's hidden states and CLIP-L's pooled output; dev is guidance-distilled (the guidance it was
distilled from is an input, `distilled_cfg_scale`, Forge's "Distilled CFG Scale"), schnell is not and samples in a
few steps.

As diffusers' `FluxPipeline`: CLIP-L's pooled output of the prompt's first 77-token chunk, T5's last hidden states
(512 tokens), latents packed into 2x2 patches with their (0, row, column) position ids and zero text ids, timesteps
over 1000 as the transformer's, and the flow schedule shifted by the image's token count (`mu`). Serena's loop keeps
latents unpacked between steps (the scheduler's steps are elementwise, so this changes no value) and packs them for
each call. Real CFG applies when the CFG scale is not 1 (the webui family's default for FLUX is 1). Prompt syntax
acts on CLIP-L only, whose one contribution is the pooled output (which emphasis leaves alone, as for SDXL): T5 reads
the words, without weights.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

from modules.families.base import ModelFamily
from modules.families.sd3 import t5_hidden_states

T5_SEQUENCE_LENGTH = 512  # diffusers' FLUX default (max_sequence_length)
DEFAULT_DISTILLED_CFG = 3.5  # FluxPipeline's guidance_scale default, Forge's Distilled CFG Scale default


class Flux(ModelFamily):
    def matches(self, pipeline) -> bool:
        return type(getattr(pipeline, "transformer", None)).__name__ == "FluxTransformer2DModel"

    def denoiser(self, pipeline):
        return pipeline.transformer

    def native_size(self, model) -> int:
        return int(model.pipeline.vae.config.sample_size)

    def clip_encoders(self, pipeline) -> list[tuple]:
        return [(pipeline.tokenizer, pipeline.text_encoder)]  # text_encoder_2 is T5

    def encoder_output(self, text_encoder, input_ids, attention_mask, clip_skip: int):
        output = text_encoder(input_ids, output_hidden_states=False)
        return output.last_hidden_state, output.pooler_output

    def pooled_embedding(self, pooled: list):
        return pooled[0]

    def text_context(self, model, clip_hidden, text: str):
        pipeline = model.pipeline
        return t5_hidden_states(pipeline.tokenizer_2, pipeline.text_encoder_2, text, T5_SEQUENCE_LENGTH), None

    def guidance_distilled(self, model) -> bool:
        return bool(model.pipeline.transformer.config.guidance_embeds)

    def step_conditioning(self, model, latents, distilled_cfg_scale: float | None = None):
        if not self.guidance_distilled(model):
            return None
        scale = DEFAULT_DISTILLED_CFG if distilled_cfg_scale is None else distilled_cfg_scale
        return torch.tensor([scale], device=model.device, dtype=torch.float32)

    def denoiser_kwargs(self, step_conditioning, conditioning, step_index: int) -> dict:
        return {"pooled_projections": conditioning.pooled_at(step_index), "guidance": step_conditioning}

    def schedule_kwargs(self, scheduler, latent_shape, steps: int) -> dict:
        """FluxPipeline's schedule: sigmas from 1 to 1/steps, shifted by mu for the image's packed token count."""
        config = scheduler.config
        tokens = (latent_shape[-2] // 2) * (latent_shape[-1] // 2)
        slope = (config.get("max_shift", 1.15) - config.get("base_shift", 0.5)) / (
            config.get("max_image_seq_len", 4096) - config.get("base_image_seq_len", 256)
        )
        mu = config.get("base_shift", 0.5) + slope * (tokens - config.get("base_image_seq_len", 256))
        accepted = inspect.signature(scheduler.set_timesteps).parameters
        kwargs = {"mu": mu}
        if "sigmas" in accepted:
            kwargs["sigmas"] = np.linspace(1.0, 1 / steps, steps)
        return {name: value for name, value in kwargs.items() if name in accepted}

    def predict(self, denoiser, latents, timestep, text, extra) -> torch.Tensor:
        batch, channels, height, width = latents.shape
        packed = pack(latents)
        image_ids = torch.zeros(height // 2, width // 2, 3)
        image_ids[..., 1] += torch.arange(height // 2)[:, None]
        image_ids[..., 2] += torch.arange(width // 2)[None, :]
        image_ids = image_ids.reshape(-1, 3).to(latents.device, latents.dtype)
        text_ids = torch.zeros(text.shape[1], 3, device=latents.device, dtype=text.dtype)
        guidance = extra.get("guidance")
        prediction = denoiser(
            hidden_states=packed,
            timestep=torch.as_tensor(timestep, device=latents.device).expand(batch).to(latents.dtype) / 1000,
            guidance=None if guidance is None else guidance.expand(batch),
            pooled_projections=extra["pooled_projections"],
            encoder_hidden_states=text,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]
        return unpack(prediction, channels, height, width)


def pack(latents: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def unpack(packed: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    batch = packed.shape[0]
    patches = packed.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels, height, width)


FLUX = Flux("flux", ("flux",), default_sampler="Euler", flow=True)
