"""Serena's embedded default model: a tiny Stable Diffusion pipeline trained on procedural shapes.

The weights live in ``weights/`` as a diffusers ``StableDiffusionPipeline`` folder. ``networks/`` holds example
extra networks for it: a LoRA that teaches it rings (``Lora/ring.safetensors``) and an embedding for the word
"violet" (``embeddings/violet.safetensors``), and a ControlNet that places the shape where a white silhouette on
black says (``ControlNet/control_serena_shape_mask``, a diffusers folder; ``controls.py`` draws silhouettes). What
made them (dataset, tokenizer, training, evaluation) is not part of the package: see ``training/default_model``,
``training/networks`` and ``training/controlnet`` in the source tree.
"""

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights"
EXAMPLE_LORA_DIR = Path(__file__).resolve().parent / "networks" / "Lora"
EXAMPLE_EMBEDDINGS_DIR = Path(__file__).resolve().parent / "networks" / "embeddings"
EXAMPLE_CONTROLNET_ROOT = Path(__file__).resolve().parent / "networks" / "ControlNet"
EXAMPLE_CONTROLNET_DIR = EXAMPLE_CONTROLNET_ROOT / "control_serena_shape_mask"
# The live preview's latent-to-RGB map for its VAE (modules.previews); made by training/default_model/fit_preview_map.py
DEFAULT_PREVIEW_MAP = Path(__file__).resolve().parent / "latent_preview.json"

__all__ = [
    "DEFAULT_MODEL_DIR",
    "EXAMPLE_CONTROLNET_DIR",
    "EXAMPLE_CONTROLNET_ROOT",
    "DEFAULT_PREVIEW_MAP",
    "EXAMPLE_EMBEDDINGS_DIR",
    "EXAMPLE_LORA_DIR",
]
