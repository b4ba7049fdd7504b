"""Write the scenes benchmark's prompt list (modules/scenes_model/suite_v1.json): GenEval's six categories in its
proportions (80 single object, 99 two objects, 80 counting, 94 colours, 100 position, 100 colour attribution: 553
prompts), drawn by the dataset's scene generator from their own seed, every prompt different.

    python -m training.scenes_model.make_suite

The file is committed: a suite version never changes (a new list is a new version and a new file).
"""

import json

import numpy as np

from modules.scenes_model import SUITE_FILE, scoring
from training.scenes_model import dataset

VERSION = 1
SEED = 2026
GENEVAL_COUNTS = {
    "single_object": 80,
    "two_object": 99,
    "counting": 80,
    "colors": 94,
    "position": 100,
    "color_attr": 100,
}


def suite_prompts(seed: int = SEED) -> list[dict]:
    rng = np.random.default_rng(seed)
    prompts = []
    for category, count in GENEVAL_COUNTS.items():
        chosen: dict[str, None] = {}
        while len(chosen) < count:
            scene = dataset.random_scene(rng, category)
            shapes = [obj.shape for obj in scene.objects]
            if category in ("two_object", "position", "color_attr") and shapes[0] == shapes[1]:
                continue  # GenEval pairs two different objects
            caption = dataset.benchmark_caption(scene, rng)
            assert caption.category == category, (caption.text(), category)
            chosen[caption.text()] = None
        prompts += [{"prompt": text, "category": category} for text in chosen]
    return prompts


def main() -> None:
    prompts = suite_prompts()
    for entry in prompts:  # every prompt is one the scorer reads, in its category
        assert scoring.parse_or_raise(entry["prompt"]).category == entry["category"]
    suite = {"name": "scenes", "version": VERSION, "seed": SEED, "counts": GENEVAL_COUNTS, "prompts": prompts}
    SUITE_FILE.write_text(json.dumps(suite, indent=1) + "\n")
    print(f"wrote {SUITE_FILE}: {len(prompts)} prompts")


if __name__ == "__main__":
    main()
