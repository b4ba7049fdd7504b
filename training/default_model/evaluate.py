"""Prompt adherence of the default model, scored automatically.

    python -m training.default_model.evaluate [--model DIR] [--samples-dir DIR]

Generates a fixed prompt x seed set (every shape x colour pair, two backgrounds each, two seeds: 96 images) per
sampler and guidance scale through the engine (`process_images`, the same path as every face), scores each image
with ``modules.default_model.scoring.score_image`` and prints the share of images whose shape colour, background
colour and shape kind match the caption.
"""

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modules.default_model import DEFAULT_MODEL_DIR
from modules.default_model.scoring import adherence, score_image
from modules.processing import StableDiffusionProcessingTxt2Img, process_images
from training.default_model.dataset import PALETTE, SHAPES, caption_for

SAMPLERS = ("Euler a", "DPM++ 2M", "DDIM")
GUIDANCE_SCALES = (1.0, 3.0, 7.0)
STEPS = 20
BATCH_SIZE = 48  # images per engine batch: the 96 cases in two batches
CRITERIA = ("colour", "background", "shape")


@dataclass(frozen=True)
class Case:
    shape: str
    colour: str
    background: str
    seed: int

    @property
    def prompt(self) -> str:
        return caption_for(self.shape, self.colour, self.background)


def evaluation_cases(backgrounds_per_pair: int = 2, seeds: tuple[int, ...] = (0, 1)) -> list[Case]:
    """Every shape x colour pair, each on a few fixed backgrounds of another colour, rendered from each seed."""
    colours = tuple(PALETTE)
    rng = np.random.default_rng(1234)
    cases = []
    for shape in SHAPES:
        for colour in colours:
            others = [background for background in colours if background != colour]
            for background in rng.choice(others, size=backgrounds_per_pair, replace=False):
                cases.extend(Case(shape, colour, str(background), seed) for seed in seeds)
    return cases


def generate(
    model_dir: Path,
    cases: list[Case],
    sampler: str,
    guidance_scale: float,
    steps: int = STEPS,
    batch_size: int = BATCH_SIZE,
) -> list[Image.Image]:
    """One image per case (its own prompt and seed), one engine job per `batch_size` cases (the last may be smaller)."""
    checkpoint = None if Path(model_dir) == DEFAULT_MODEL_DIR else str(model_dir)
    images = []
    for start in range(0, len(cases), batch_size):
        batch = cases[start : start + batch_size]
        job = StableDiffusionProcessingTxt2Img(
            prompt=[case.prompt for case in batch],
            seed=[case.seed for case in batch],
            sampler_name=sampler,
            cfg_scale=guidance_scale,
            steps=steps,
            batch_size=len(batch),
            sd_model_checkpoint=checkpoint,
            do_not_save_samples=True,
            do_not_save_grid=True,
        )
        images.extend(process_images(job).images)
    return images


def adherence_rates(cases: list[Case], images: list[Image.Image]) -> dict[str, float]:
    totals = dict.fromkeys(CRITERIA + ("all",), 0)
    for case, image in zip(cases, images):
        matches = adherence(score_image(image), case.shape, case.colour, case.background)
        for criterion in CRITERIA:
            totals[criterion] += matches[criterion]
        totals["all"] += all(matches.values())
    return {name: count / len(cases) for name, count in totals.items()}


def save_grid(images: list[Image.Image], path: Path, columns: int = 16, zoom: int = 2) -> None:
    width, height = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new("RGB", (columns * (width + 2), rows * (height + 2)), (128, 128, 128))
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * (width + 2), (index // columns) * (height + 2)))
    grid.resize((grid.width * zoom, grid.height * zoom), Image.Resampling.NEAREST).save(path)


def evaluate(
    model_dir: Path, samplers: list[str], guidance_scales: list[float], samples_dir: Path | None = None
) -> list[dict]:
    cases = evaluation_cases()
    rows = []
    for sampler in samplers:
        for guidance_scale in guidance_scales:
            start = time.perf_counter()
            images = generate(model_dir, cases, sampler, guidance_scale)
            rows.append(
                dict(
                    sampler=sampler,
                    cfg=guidance_scale,
                    seconds=time.perf_counter() - start,
                    **adherence_rates(cases, images),
                )
            )
            if samples_dir is not None:
                samples_dir.mkdir(parents=True, exist_ok=True)
                save_grid(images, samples_dir / f"{sampler.replace(' ', '_')}_cfg{guidance_scale:g}.png")
    return rows


def format_table(rows: list[dict], image_count: int) -> str:
    lines = [
        f"adherence over {image_count} images, {STEPS} steps",
        "| sampler  | CFG | colour | background | shape | all   | time   |",
        "|----------|-----|--------|------------|-------|-------|--------|",
    ]
    for row in rows:
        lines.append(
            f"| {row['sampler']:<8} | {row['cfg']:>3g} | {row['colour']:>6.1%} | {row['background']:>10.1%} "
            f"| {row['shape']:>5.1%} | {row['all']:>5.1%} | {row['seconds']:>5.1f}s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="pipeline folder")
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), help="webui sampler names")
    parser.add_argument("--cfg", nargs="+", type=float, default=list(GUIDANCE_SCALES))
    parser.add_argument("--samples-dir", type=Path, help="also save one image grid per sampler and CFG here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = evaluate(args.model.resolve(), args.samplers, args.cfg, args.samples_dir)
    print(format_table(rows, len(evaluation_cases())))


if __name__ == "__main__":
    main()
