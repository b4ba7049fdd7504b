"""Stable Diffusion 3 and 3.5 (Medium, Large; SD 3 Medium loads the same way): an MMDiT (diffusers'
`SD3Transformer2DModel`) predicting a rectified flow, conditioned by two CLIP encoders and an optional T5.

As diffusers' `StableDiffusion3Pipeline.encode_prompt`: each CLIP encoder's penultimate hidden states (no final layer
norm; Clip skip does not apply), side by side and zero-padded to the transformer's joint attention width, then T5's
hidden states for the same text (max_sequence_length tokens) after them; the pooled embedding is both CLIP encoders'
projected outputs side by side. Prompt syntax (emphasis, BREAK, chunks of 75 tokens) acts on the CLIP part as for
SDXL; T5 reads the prompt's words without the syntax and without weights (emphasis does not apply to T5).

Without T5 (Stability AI allows dropping it), Serena conditions on the CLIP part alone, as ComfyUI does; diffusers'
pipeline appends a block of zeros in T5's place instead, which changes the attention's normalisation. The embedded
flow model (modules.flow_model) was trained on the CLIP part alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modules import prompt_parser
from modules.families.base import ModelFamily
from modules.families.sdxl import penultimate_and_pooled

T5_SEQUENCE_LENGTH = 256  # diffusers' SD 3 default (max_sequence_length)


class StableDiffusion3(ModelFamily):
    def matches(self, pipeline) -> bool:
        return type(getattr(pipeline, "transformer", None)).__name__ == "SD3Transformer2DModel"

    def denoiser(self, pipeline):
        return pipeline.transformer

    def predict(self, denoiser, latents, timestep, text, extra) -> torch.Tensor:
        timestep = torch.as_tensor(timestep, device=latents.device).expand(latents.shape[0])
        return denoiser(
            hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False, **extra
        )[0]

    def encoder_output(self, text_encoder, input_ids, attention_mask, clip_skip: int):
        return penultimate_and_pooled(text_encoder, input_ids)

    def pooled_embedding(self, pooled: list):
        return torch.cat(pooled, dim=-1)

    def text_context(self, model, clip_hidden, text: str):
        joint_width = model.pipeline.transformer.config.joint_attention_dim
        context = F.pad(clip_hidden, (0, joint_width - clip_hidden.shape[-1]))
        if getattr(model.pipeline, "text_encoder_3", None) is None:
            return context, None
        pipeline = model.pipeline
        return context, t5_hidden_states(pipeline.tokenizer_3, pipeline.text_encoder_3, text, T5_SEQUENCE_LENGTH)

    def denoiser_kwargs(self, step_conditioning, conditioning, step_index: int) -> dict:
        return {"pooled_projections": conditioning.pooled_at(step_index)}


def words_of(text: str) -> str:
    """A prompt's words without emphasis syntax or BREAK, for an encoder that takes no weights (T5)."""
    if not prompt_parser.has_syntax(text):
        return text
    words = " ".join(fragment.text for segment in prompt_parser.parse_emphasis(text) for fragment in segment)
    return " ".join(words.split())


def t5_hidden_states(tokenizer, encoder, text: str, length: int) -> torch.Tensor:
    """T5's last hidden states for `text`, padded (or cut) to `length` tokens, as diffusers' pipelines compute them."""
    ids = tokenizer(
        words_of(text),
        padding="max_length",
        max_length=length,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    ).input_ids
    return encoder(ids.to(encoder.device))[0]


STABLE_DIFFUSION_3 = StableDiffusion3("sd3", ("sd3",), default_sampler="Euler", flow=True)
