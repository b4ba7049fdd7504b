"""Stable Diffusion 1.x and 2.x (and other sizes of the same UNet, as the embedded models): one CLIP text encoder
whose hidden states condition the UNet, epsilon or v prediction (the scheduler config says which)."""

from __future__ import annotations

from modules.families.base import ModelFamily


class StableDiffusion(ModelFamily):
    def matches(self, pipeline) -> bool:
        return getattr(pipeline, "unet", None) is not None and getattr(pipeline, "text_encoder_2", None) is None


STABLE_DIFFUSION = StableDiffusion("sd", ("sd1", "sd2", "sd"))
