"""The scenes world: 64 px scenes of one to four shapes, for compositional studies (issue 30).

``scoring.py`` reads a scene back (objects, colours, sizes, positions) and answers GenEval's categories of its
caption, with no torch; ``suite_v1.json`` is the benchmark's fixed prompt list (serena_kit.bench runs it). The model
trained on this world, ``serena-scenes`` (``weights/``, made by ``training/scenes_model/train.py``; model card:
docs/scenes_model.md), loads by name like any checkpoint (modules.sd_models.embedded_model_dirs).
"""

from pathlib import Path

SCENES_MODEL_NAME = "serena-scenes"
SCENES_MODEL_DIR = Path(__file__).resolve().parent / "weights"
# The compositional benchmark's prompt list (made by training/scenes_model/make_suite.py; fixed per version).
SUITE_FILE = Path(__file__).resolve().parent / "suite_v1.json"

__all__ = ["SCENES_MODEL_DIR", "SCENES_MODEL_NAME", "SUITE_FILE"]
