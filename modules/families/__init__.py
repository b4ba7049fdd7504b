"""Model families: what differs between SD 1.x/2.x and SDXL (and the families after them), asked by the engine
instead of tested for.

A family (`ModelFamily`, modules.families.base) says how its text encoders' outputs condition the denoiser, what
else the denoiser takes at each step, its latent format (channels, the VAE's scale and shift) and its sampling
defaults; the sampling loop (modules.diffusion) and the prompt encoder (modules.prompt_encoding) ask the loaded
model's family. Adding a family is one module here and its configs. The table of families: docs/families.md.
"""

from __future__ import annotations

from modules.families.base import ModelFamily
from modules.families.flux import FLUX
from modules.families.sd import STABLE_DIFFUSION
from modules.families.sd3 import STABLE_DIFFUSION_3
from modules.families.sdxl import STABLE_DIFFUSION_XL

FAMILIES: tuple[ModelFamily, ...] = (FLUX, STABLE_DIFFUSION_3, STABLE_DIFFUSION_XL, STABLE_DIFFUSION)
# The checkpoint architectures whose models predict a flow (their samplers are checked before loading them).
FLOW_ARCHITECTURES: tuple[str, ...] = tuple(name for family in FAMILIES if family.flow for name in family.architectures)


def family_of(pipeline) -> ModelFamily:
    """The family of a loaded pipeline: the first whose components it has."""
    for family in FAMILIES:
        if family.matches(pipeline):
            return family
    raise ValueError(f"no model family has the components of {type(pipeline).__name__}")
