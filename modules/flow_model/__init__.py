"""Serena's example flow-matching transformer: a tiny Stable Diffusion 3 layout trained on the default model's data.

The weights live in ``weights/`` as a diffusers ``StableDiffusion3Pipeline`` folder without T5 (as Stability AI
allows for SD 3): an MMDiT over the default model's autoencoder (frozen, with a latent shift), two small CLIP text
encoders over the default model's tokenizer, and a flow-matching Euler schedule. It exists so that the transformer
families' path is tested on a model that means something; what made it is in ``training/flow_model``.
"""

from pathlib import Path

FLOW_MODEL_DIR = Path(__file__).resolve().parent / "weights"
FLOW_MODEL_NAME = "serena-flow"

__all__ = ["FLOW_MODEL_DIR", "FLOW_MODEL_NAME"]
