"""What the example networks do to the default model, measured with the project's scorer.

    python -m training.networks.evaluate

Rings: "a red ring on a blue background" over 24 seeds with `<lora:ring:w>` for w in 0, 0.5, 1 (and without the
tag): share scored a ring, share with the right colours. Violet: 24 images "a violet <shape> on a <colour>
background" with the embedding (the word is the embedding's name) and with the embedding absent (SERENA_EMBEDDINGS_DIR
pointed at an empty folder and the example folder hidden): share scored purple.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from modules.default_model import scoring
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from training.default_model import dataset
from training.networks.train import EMBEDDING_COLOUR, EMBEDDING_NAME, LORA_NAME

SEEDS = list(range(24))
RING_PROMPT = dataset.caption_for("ring", "red", "blue")
# Every shape on every background but purple (21 prompts), then the first three again: 24, each with its own seed.
_VIOLET_PAIRS = [
    (shape, background) for shape in dataset.SHAPES for background in dataset.PALETTE if background != EMBEDDING_COLOUR
]
VIOLET_CASES = list(itertools.islice(itertools.cycle(_VIOLET_PAIRS), len(SEEDS)))


def generate(prompts: list[str], seeds: list[int], **fields) -> list:
    job = StableDiffusionProcessingTxt2Img(
        prompt=prompts,
        seed=seeds,
        batch_size=len(prompts),
        steps=20,
        do_not_save_samples=True,
        do_not_save_grid=True,
        **fields,
    )
    return process_images(job).images


def lora_prompt(weight: float | None) -> str:
    return RING_PROMPT if weight is None else f"{RING_PROMPT} <lora:{LORA_NAME}:{weight:g}>"


def ring_rates(images) -> dict[str, float]:
    scores = [scoring.score_image(image) for image in images]
    return {
        "ring": float(np.mean([score.shape == "ring" for score in scores])),
        "colour": float(np.mean([score.colour == "red" for score in scores])),
        "background": float(np.mean([score.background == "blue" for score in scores])),
    }


def violet_prompts() -> list[str]:
    return [f"a {EMBEDDING_NAME} {shape} on a {background} background" for shape, background in VIOLET_CASES]


def violet_rates(images) -> dict[str, float]:
    scores = [scoring.score_image(image) for image in images]
    return {
        "purple": float(np.mean([score.colour == EMBEDDING_COLOUR for score in scores])),
        "shape": float(np.mean([score.shape == shape for score, (shape, _) in zip(scores, VIOLET_CASES)])),
        "background": float(
            np.mean([score.background == background for score, (_, background) in zip(scores, VIOLET_CASES)])
        ),
    }


def main() -> None:
    import os
    import tempfile
    from unittest import mock

    for weight in (None, 0, 0.5, 1):
        images = generate([lora_prompt(weight)] * len(SEEDS), SEEDS)
        print(f"{lora_prompt(weight)!r}: {ring_rates(images)}", flush=True)
    print(f"violet with the embedding: {violet_rates(generate(violet_prompts(), SEEDS))}", flush=True)
    with tempfile.TemporaryDirectory() as empty, mock.patch.dict(os.environ, {"SERENA_EMBEDDINGS_DIR": empty}):
        with mock.patch("modules.default_model.EXAMPLE_EMBEDDINGS_DIR", Path(empty)):
            from modules import sd_models

            sd_models.model_cache.clear()  # a fresh model: no embedding loaded
            print(f"violet without it: {violet_rates(generate(violet_prompts(), SEEDS))}", flush=True)


if __name__ == "__main__":
    main()
