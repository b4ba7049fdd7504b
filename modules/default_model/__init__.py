"""Serena's embedded default model: a tiny Stable Diffusion pipeline trained on procedural shapes.

The weights live in ``weights/`` as a diffusers ``StableDiffusionPipeline`` folder. What made them (dataset,
tokenizer, training, evaluation) is not part of the package: see ``training/default_model`` in the source tree.
"""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["DEFAULT_MODEL_DIR"]
