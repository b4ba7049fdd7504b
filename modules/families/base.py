"""What a model family decides, with the defaults the UNet families share (modules.families)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelFamily:
    """One family of checkpoints.

    name: the short name (the API's `sd-models` architecture prefix).
    architectures: the checkpoint architectures it loads (modules.sd_models.CheckpointInfo.architecture).
    zero_empty_negative: an empty negative prompt is encoded as zeros (embedding and pooled), not as "".
    default_sampler: the sampler its models are usually run with.
    flow: the denoiser predicts a rectified flow (velocity), sampled by flow-matching schedulers (modules.sd_samplers);
    otherwise it predicts noise or v and the UNet schedulers apply.
    """

    name: str
    architectures: tuple[str, ...]
    zero_empty_negative: bool = False
    default_sampler: str = "Euler a"
    flow: bool = False

    def matches(self, pipeline) -> bool:
        raise NotImplementedError

    # The denoiser: the UNet, or the transformer of the flow families.
    def denoiser(self, pipeline):
        return pipeline.unet

    def predict(self, denoiser, latents: torch.Tensor, timestep, text: torch.Tensor, extra: dict) -> torch.Tensor:
        """One evaluation of the denoiser on `latents` (rows matching `text`'s) at `timestep`."""
        return denoiser(latents, timestep, encoder_hidden_states=text, return_dict=False, **extra)[0]

    def native_size(self, model) -> int:
        """The size its denoiser was trained at, in pixels."""
        return int(self.denoiser(model.pipeline).config.sample_size) * model.vae_scale_factor

    # Text: how an encoder's output for one 77-token chunk becomes the denoiser's conditioning.
    def encoder_output(self, text_encoder, input_ids, attention_mask, clip_skip: int):
        """(hidden states (1, 77, dim), pooled output or None) of one chunk; `clip_skip` counts like the webui's."""
        if clip_skip == 1:
            return text_encoder(input_ids, attention_mask=attention_mask)[0], None
        output = text_encoder(input_ids, attention_mask=attention_mask, output_hidden_states=True)
        # transformers 5's CLIPTextModel has the layer norm at the top level (older versions: under text_model).
        final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        return final_layer_norm(output.hidden_states[-clip_skip]), None

    def pooled_embedding(self, pooled: list):
        """The text's pooled embedding from each CLIP encoder's pooled output (None where an encoder has none)."""
        return pooled[-1]

    def text_context(self, model, clip_hidden: torch.Tensor, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the CLIP chunks' hidden states as the denoiser takes them, tokens that follow them or None)."""
        return clip_hidden, None

    def clip_encoders(self, pipeline) -> list[tuple]:
        """(tokenizer, CLIP text encoder) pairs in concatenation order: SD's one, SDXL's and SD 3's two, the SDXL
        refiner's second."""
        pairs = []
        if getattr(pipeline, "text_encoder", None) is not None:
            pairs.append((pipeline.tokenizer, pipeline.text_encoder))
        if getattr(pipeline, "text_encoder_2", None) is not None:
            pairs.append((pipeline.tokenizer_2, pipeline.text_encoder_2))
        return pairs

    def guidance_distilled(self, model) -> bool:
        """Whether its denoiser takes the guidance scale it was distilled from as an input (FLUX.1 dev)."""
        return False

    # The denoiser: what it takes besides latents, timestep and text embeddings.
    def step_conditioning(self, model, latents: torch.Tensor, distilled_cfg_scale: float | None = None):
        """What the denoiser needs for this batch besides the text (None: nothing), made once per sampling pass."""
        return None

    def schedule_kwargs(self, scheduler, latent_shape, steps: int) -> dict:
        """What the scheduler's set_timesteps takes besides the step count (FLUX: its sigmas and shift)."""
        return {}

    def denoiser_kwargs(self, step_conditioning, conditioning, step_index: int) -> dict:
        """The denoiser's extra keyword arguments at a step, from `step_conditioning` and the prompt conditioning."""
        return {}

    # Latents: the VAE's latent format.
    def latent_channels(self, model) -> int:
        return model.pipeline.vae.config.latent_channels

    def to_latents(self, model, encoded: torch.Tensor) -> torch.Tensor:
        """The VAE encoder's output as the denoiser's latents (scaled, shifted where the VAE says so)."""
        vae = model.pipeline.vae
        shift = vae.config.get("shift_factor") or None
        return ((encoded if shift is None else encoded - shift) * vae.config.scaling_factor).to(model.dtype)

    def from_latents(self, model, latents: torch.Tensor) -> torch.Tensor:
        """The denoiser's latents as the VAE decoder takes them."""
        vae = model.pipeline.vae
        shift = vae.config.get("shift_factor") or None
        latents = latents / vae.config.scaling_factor
        return (latents if shift is None else latents + shift).to(vae.dtype)
