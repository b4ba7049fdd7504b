"""Serena's embedded default model: a tiny Stable Diffusion pipeline trained on procedural shapes.

The weights live in ``weights/`` as a diffusers ``StableDiffusionPipeline`` folder; build them with
``python -m modules.default_model.build --random`` (untrained) or ``python -m modules.default_model.train``.
"""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights"

__all__ = ["DEFAULT_MODEL_DIR"]
