"""Guidance: how the model's predictions for one step combine into the prediction the sampler steps with.

Plain CFG with no rescale over every step keeps the exact arithmetic of diffusers' Stable Diffusion pipeline (the
bytes of every earlier image). Every other setting runs one of diffusers' guiders (`diffusers.guiders`) per image,
each with its own scale and state (APG's momentum), so an image's bytes do not depend on its batch:

- CFG: classifier-free guidance, optionally rescaled (`guidance_rescale`, Lin et al. 2023) or applied only in a
  guidance interval (`guidance_start`..`guidance_end`, fractions of the steps; outside it the prompt's prediction
  alone steps, as Kynkäänniemi et al. 2024 do).
- APG: adaptive projected guidance (Sadat et al. 2024): the guidance update's part parallel to the prompt's
  prediction is scaled by `apg_eta`, its norm clipped at `apg_norm_threshold`, smoothed by `apg_momentum`.
- CFG-Zero*: the unconditional prediction scaled by the optimised factor, the first `zero_init_steps` zeroed.
- PAG / SLG: a third evaluation of the prompt with the denoiser perturbed in `perturbed_layers` (PAG: self-attention
  replaced by identity, Ahn et al. 2024; SLG: the layers' transformer blocks skipped), added at `perturbed_scale`.
  A UNet is perturbed by diffusers' layer-skip hooks, a transformer (SD 3, FLUX) by `perturbed_transformer`, for
  that evaluation only (diffusers counts the perturbed steps from the one after the interval's first, as its
  guiders do).

The rescale and the interval apply to every method.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import guiders
from diffusers.guiders.adaptive_projected_guidance import MomentumBuffer
from diffusers.hooks import LayerSkipConfig
from diffusers.utils import logging as diffusers_logging

from modules.generation_fields import declared

PERTURBING = ("PAG", "SLG")


@dataclass(frozen=True)
class GuidanceSettings:
    """A job's guidance fields (see their declarations in modules.generation_fields)."""

    method: str = declared("guidance")
    rescale: float = declared("guidance_rescale")
    start: float = declared("guidance_start")
    end: float = declared("guidance_end")
    apg_eta: float = declared("apg_eta")
    apg_norm_threshold: float = declared("apg_norm_threshold")
    apg_momentum: float = declared("apg_momentum")
    zero_init_steps: int = declared("zero_init_steps")
    perturbed_scale: float = declared("perturbed_scale")
    perturbed_layers: str = declared("perturbed_layers")
    distilled_cfg_scale: float = declared("distilled_cfg_scale")  # FLUX.1 dev's guidance input (modules.families)

    @classmethod
    def of(cls, p) -> GuidanceSettings:
        return cls(
            p.guidance,
            p.guidance_rescale,
            p.guidance_start,
            p.guidance_end,
            p.apg_eta,
            p.apg_norm_threshold,
            p.apg_momentum,
            p.zero_init_steps,
            p.perturbed_scale,
            p.perturbed_layers,
            p.distilled_cfg_scale,
        )

    @property
    def is_plain_cfg(self) -> bool:
        return self.method == "CFG" and self.rescale == 0 and (self.start, self.end) == (0.0, 1.0)


def layer_skip_configs(unet, layers: str, perturb_attention_scores: bool) -> list[LayerSkipConfig]:
    """diffusers' layer-skip configurations for a UNet's `layers` ("mid", "down.1", "up.0"; comma-separated): every
    transformer block of the named UNet blocks. PAG perturbs their self-attention scores; SLG skips the blocks."""
    available = unet_layer_names(unet)
    configs = []
    for name in (part.strip() for part in layers.split(",")):
        if name not in available:
            raise ValueError(
                f"perturbed_layers: {name!r} is not a UNet block with attention in this model; "
                f"allowed: {', '.join(available)}"
            )
        for path, blocks in available[name]:
            configs.append(
                LayerSkipConfig(
                    indices=list(range(len(blocks))),
                    fqn=path,
                    skip_attention=not perturb_attention_scores,
                    skip_attention_scores=perturb_attention_scores,
                    skip_ff=not perturb_attention_scores,
                )
            )
    return configs


def transformer_blocks(transformer, layers: str) -> dict[str, torch.nn.Module]:
    """The blocks `layers` names ("block.7, block.8": SD 3's joint blocks, FLUX's double-stream blocks; "single.N":
    FLUX's single-stream blocks), checked against the transformer's."""
    available = {f"block.{index}": block for index, block in enumerate(transformer.transformer_blocks)}
    singles = getattr(transformer, "single_transformer_blocks", None) or []
    available |= {f"single.{index}": block for index, block in enumerate(singles)}
    names = [part.strip() for part in layers.split(",")]
    for name in names:
        if name not in available:
            raise ValueError(
                f"perturbed_layers: {name!r} is not a block with attention in this model; "
                f"allowed: {', '.join(available)}"
            )
    return {name: available[name] for name in sorted(set(names), key=list(available).index)}


def transformer_skip_configs(
    blocks: dict[str, torch.nn.Module], perturb_attention_scores: bool
) -> list[LayerSkipConfig]:
    """The guider's configuration for a transformer's `blocks` (the guider combines predictions; the perturbation
    itself is `perturbed_transformer`'s, not the configuration's hooks)."""
    indices = [int(name.split(".")[1]) for name in blocks]
    return [
        LayerSkipConfig(
            indices=indices,
            fqn="transformer_blocks",
            skip_attention=not perturb_attention_scores,
            skip_attention_scores=perturb_attention_scores,
            skip_ff=not perturb_attention_scores,
        )
    ]


class _IdentityImageAttention(torch.overrides.TorchFunctionMode):
    """PAG's perturbation of joint attention (as diffusers' PAG processors for SD 3 do it): in every attention of a
    block, each image token attends to itself among the image's tokens (the image-image scores become an identity)
    and to the text's tokens as before; text tokens attend as before. Injected as a mask into the block's own
    attention calls, so the processors are diffusers' own."""

    def __init__(self, image_tokens: int, text_first: bool):
        super().__init__()
        self.image_tokens, self.text_first = image_tokens, text_first

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.nn.functional.scaled_dot_product_attention:
            query = kwargs.get("query", args[0] if args else None)
            length = query.shape[-2]
            start = length - self.image_tokens if self.text_first else 0  # an image-only attention: the whole
            mask = torch.zeros(length, length, dtype=query.dtype, device=query.device)
            image = slice(start, start + self.image_tokens)
            mask[image, image] = float("-inf")
            mask[image, image].fill_diagonal_(0)
            if len(args) > 3:
                args, kwargs["attn_mask"] = args[:3], args[3]
            given = kwargs.get("attn_mask")
            kwargs["attn_mask"] = mask if given is None else given + mask
        return func(*args, **kwargs)


@contextmanager
def perturbed_transformer(blocks: dict[str, torch.nn.Module], method: str):
    """The transformer's `blocks` perturbed while inside: SLG skips them (each returns its inputs), PAG makes their
    image self-attention an identity. Written here: diffusers 0.42's block-skip hook returns a joint block's two
    outputs in the wrong order, and its attention-score hook knows no joint-attention processor."""

    def perturb(block):
        forward = block.forward

        def perturbed_forward(hidden_states, encoder_hidden_states, *args, **kwargs):
            if method == "SLG":  # SD 3's and FLUX's blocks return (text, image)
                return encoder_hidden_states, hidden_states
            text_first = type(block).__name__ != "JointTransformerBlock"
            with _IdentityImageAttention(hidden_states.shape[1], text_first):
                return forward(hidden_states, encoder_hidden_states, *args, **kwargs)

        return perturbed_forward

    for block in blocks.values():
        block.forward = perturb(block)
    try:
        yield
    finally:
        for block in blocks.values():
            del block.forward


def unet_layer_names(unet) -> dict[str, list[tuple[str, torch.nn.ModuleList]]]:
    """The UNet's blocks that hold transformer blocks, by the names `perturbed_layers` takes."""
    named = {}
    groups = [("mid", "mid_block", [unet.mid_block])]
    groups += [(f"down.{i}", f"down_blocks.{i}", [block]) for i, block in enumerate(unet.down_blocks)]
    groups += [(f"up.{i}", f"up_blocks.{i}", [block]) for i, block in enumerate(unet.up_blocks)]
    for name, path, (block,) in groups:
        attentions = getattr(block, "attentions", None) or []
        stacks = [
            (f"{path}.attentions.{j}.transformer_blocks", attention.transformer_blocks)
            for j, attention in enumerate(attentions)
            if hasattr(attention, "transformer_blocks")
        ]
        if stacks:
            named[name] = stacks
    return named


def make_guider(settings: GuidanceSettings, cfg_scale: float, skip_configs: list[LayerSkipConfig] | None):
    common = {"guidance_scale": cfg_scale, "guidance_rescale": settings.rescale}
    interval = {"start": settings.start, "stop": settings.end}
    if settings.method == "CFG":
        return guiders.ClassifierFreeGuidance(**common, **interval)
    if settings.method == "APG":
        guider = guiders.AdaptiveProjectedGuidance(
            **common,
            **interval,
            eta=settings.apg_eta,
            adaptive_projected_guidance_rescale=settings.apg_norm_threshold,
            adaptive_projected_guidance_momentum=settings.apg_momentum or None,
        )
        if settings.apg_momentum:  # diffusers' modular pipelines make it at step 0; Serena's loop is not one
            guider.momentum_buffer = MomentumBuffer(settings.apg_momentum)
        return guider
    if settings.method == "CFG-Zero*":
        return guiders.ClassifierFreeZeroStarGuidance(**common, **interval, zero_init_steps=settings.zero_init_steps)
    if settings.method == "PAG":
        return guiders.PerturbedAttentionGuidance(
            **common,
            perturbed_guidance_scale=settings.perturbed_scale,
            perturbed_guidance_start=settings.start,
            perturbed_guidance_stop=settings.end,
            perturbed_guidance_config=skip_configs,
            **interval,
        )
    return guiders.SkipLayerGuidance(
        **common,
        skip_layer_guidance_scale=settings.perturbed_scale,
        skip_layer_guidance_start=settings.start,
        skip_layer_guidance_stop=settings.end,
        skip_layer_config=skip_configs,
        **interval,
    )


class BatchGuidance:
    """One batch's guidance for one sampling pass: a guider per image (its own scale and momentum)."""

    def __init__(self, settings: GuidanceSettings, cfg_scales: list[float], total_steps: int, unet):
        self.settings, self.total_steps = settings, total_steps
        # A UNet is perturbed by the guider's hooks; a transformer's blocks by perturbed_transformer.
        skip_configs, self.blocks = None, None
        if settings.method in PERTURBING:
            attention_scores = settings.method == "PAG"
            if hasattr(unet, "mid_block"):
                skip_configs = layer_skip_configs(unet, settings.perturbed_layers, attention_scores)
            else:
                self.blocks = transformer_blocks(unet, settings.perturbed_layers)
                skip_configs = transformer_skip_configs(self.blocks, attention_scores)
        quiet = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # each guider warns that guiders are experimental
        try:
            self.guiders = [make_guider(settings, float(scale), skip_configs) for scale in cfg_scales]
        finally:
            diffusers_logging.set_verbosity(quiet)

    @property
    def perturbs(self) -> bool:
        """Whether each step needs the prompt's prediction from the perturbed UNet too (PAG, SLG)."""
        return self.settings.method in PERTURBING

    @contextmanager
    def perturbed(self, unet):
        """The UNet perturbed for one evaluation: the guider's hooks for its third prediction, removed after."""
        if self.blocks is not None:
            with perturbed_transformer(self.blocks, self.settings.method):
                yield
            return
        guider = self.guiders[0]  # the hooks are the UNet's, shared by the batch's guiders
        for _ in range(3):  # diffusers' protocol: the prompt's, the negative prompt's, then the perturbed evaluation
            guider.prepare_models(unet)
        try:
            yield
        finally:
            guider.cleanup_models(unet)

    def combine(self, step_index: int, timestep, uncond, cond, perturbed=None) -> torch.Tensor:
        """The guided prediction of each image, from its unconditional, conditional (and perturbed) predictions."""
        rows = []
        for index, guider in enumerate(self.guiders):
            guider.set_state(step_index, self.total_steps, timestep)
            predictions = {"pred_cond": cond[index : index + 1], "pred_uncond": uncond[index : index + 1]}
            if perturbed is not None:
                predictions["pred_cond_skip"] = perturbed[index : index + 1]
            rows.append(guider.forward(**predictions).pred)
        return torch.cat(rows)


def for_batch(settings: GuidanceSettings | None, cfg_scales, total_steps: int, unet) -> BatchGuidance | None:
    """None for plain CFG (the loop's own arithmetic), else the batch's guiders."""
    if settings is None or settings.is_plain_cfg:
        return None
    return BatchGuidance(settings, cfg_scales, total_steps, unet)
