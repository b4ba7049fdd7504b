"""How well the example ControlNet places the shape, scored automatically.

    python -m training.controlnet.evaluate [--seeds 24] [--samples-dir DIR]

Each case is a prompt of the default model's evaluation set (shape, colour, background) with a silhouette of the
same shape at a random place and size (12-24 px, seeded), which is where the prompt alone would rarely put it.
Each is generated through the engine (`process_images`, 20 steps, Euler a, CFG 7: the defaults) with the silhouette
as the unit's control image at the example's recommended weight (0.5) and at the extension's default (1), and
without control from the same seed. Printed: the share of images whose shape (the scorer's region) has IoU >= 0.7
with the silhouette, the mean IoU, and the prompt's colour, background and shape adherence.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modules.control_units import ControlNetUnit
from modules.default_model.controls import control_iou, silhouette
from modules.default_model.scoring import CRITERIA, adherence, score_image
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from training.default_model.dataset import IMAGE_SIZE, MARGIN, MAX_SHAPE_SIZE, MIN_SHAPE_SIZE
from training.default_model.evaluate import Case, evaluation_cases

MODEL = "control_serena_shape_mask"
IOU_THRESHOLD = 0.7
# At the default model's CFG 7, weight 1 over-drives (CFG amplifies the residuals' difference between the prompt's
# and the negative prompt's half): the model card's figures.
RECOMMENDED_WEIGHT = 0.5


@dataclass(frozen=True)
class ControlCase:
    case: Case
    left: float
    top: float
    size: float

    @property
    def control(self):
        return silhouette(self.case.shape, self.left, self.top, self.size)


def control_cases(count: int = 24, seed: int = 7) -> list[ControlCase]:
    """`count` cases of the default model's evaluation set (every fourth, so shapes and colours mix), each with a
    seeded silhouette place and size."""
    rng = np.random.default_rng(seed)
    cases = evaluation_cases()[::4][:count]
    placed = []
    for case in cases:
        size = rng.uniform(MIN_SHAPE_SIZE, MAX_SHAPE_SIZE)
        left, top = rng.uniform(MARGIN, IMAGE_SIZE - MARGIN - size, size=2)
        placed.append(ControlCase(case, float(left), float(top), float(size)))
    return placed


def generate(case: ControlCase, controlled: bool = True, **unit_fields):
    unit_fields = {"weight": RECOMMENDED_WEIGHT} | unit_fields
    units = [ControlNetUnit(model=MODEL, image=case.control, **unit_fields)] if controlled else []
    job = StableDiffusionProcessingTxt2Img(
        prompt=case.case.prompt,
        seed=case.case.seed,
        controlnet_units=units,
        do_not_save_samples=True,
        do_not_save_grid=True,
    )
    return process_images(job).images[0]


def score(case: ControlCase, image) -> dict:
    followed = adherence(score_image(image), case.case.shape, case.case.colour, case.case.background)
    return {"iou": control_iou(image, case.control), **followed}


def summary(rows: list[dict]) -> str:
    ious = np.array([row["iou"] for row in rows])
    shares = " ".join(f"{name} {np.mean([row[name] for row in rows]):.1%}" for name in CRITERIA)
    return f"IoU >= {IOU_THRESHOLD}: {np.mean(ious >= IOU_THRESHOLD):.1%}, mean IoU {ious.mean():.2f}; {shares}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=24, help="cases (one seed each)")
    parser.add_argument("--samples-dir", type=Path, default=None, help="save each image and its control here")
    args = parser.parse_args()
    cases = control_cases(args.seeds)
    for label, controlled, weight in (
        (f"weight {RECOMMENDED_WEIGHT:g}", True, RECOMMENDED_WEIGHT),
        ("weight 1", True, 1.0),
        ("without control", False, None),
    ):
        rows = []
        for index, case in enumerate(cases):
            image = generate(case, controlled, weight=weight) if controlled else generate(case, False)
            rows.append(score(case, image))
            if args.samples_dir is not None:
                args.samples_dir.mkdir(parents=True, exist_ok=True)
                image.save(args.samples_dir / f"{index:02d}-{label.replace(' ', '-')}.png")
                case.control.save(args.samples_dir / f"{index:02d}-silhouette.png")
        print(f"[{label}] {len(cases)} images: {summary(rows)}", flush=True)


if __name__ == "__main__":
    main()
