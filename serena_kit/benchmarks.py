"""Benchmarks: a named suite of prompts run against any loadable model and any generation settings, each image scored,
one row per image in a pandas DataFrame, kept as Parquet beside the images so runs made at different times compare.

    run = sk.bench("scenes", "models/scenes", cfg_scale=5)           # 553 prompts x 4 seeds
    run.rows                      # one row per image: prompt, category, seed, each check, correct, settings, model hash
    run.summary()                 # per category: images, correct, rate, 95 % interval; and GenEval's overall score
    sk.bench("scenes", "models/scenes", quick=True, vary={"sampler_name": ["Euler a", "DPM++ 2M"]})  # crossed
    sk.load_bench_runs("outputs/bench")                                  # every run kept there, as one table

The suite "scenes" (modules.scenes_model: its prompt list, versioned, and its scorer) is GenEval's six categories
(single object, two objects, counting, colours, position, colour attribution) in GenEval's proportions. A run's key
is the suite and version, the model hash and the settings: running it again in the same folder skips the images it
has (an interrupted run resumes), and a changed setting is another run. `quick` takes a fixed stratified part of the
prompts (25 prompts x 4 seeds = 100 images). Each batch is generated through `process_images` like any job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from modules import images as image_files
from modules import sd_models

QUICK_PROMPTS = 25
DEFAULT_SEEDS = 4
BATCH_SIZE = 16
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    prompts: tuple[dict, ...]  # {"prompt", "category"}
    categories: tuple[str, ...]
    score: Callable  # (image, prompt) -> {"category", checks..., "correct"}


def scenes_suite() -> Suite:
    from modules.scenes_model import SUITE_FILE, scoring

    data = json.loads(SUITE_FILE.read_text())
    return Suite(data["name"], data["version"], tuple(data["prompts"]), scoring.CATEGORIES, scoring.score_prompt)


SUITES: dict[str, Callable[[], Suite]] = {"scenes": scenes_suite}


def load_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ValueError(f"suite: unknown suite {name!r}; available: {', '.join(SUITES)}")
    return SUITES[name]()


def quick_prompts(suite: Suite, count: int = QUICK_PROMPTS) -> list[int]:
    """A fixed stratified part: each category's share of `count` prompts, evenly spaced through its list."""
    chosen = []
    total = len(suite.prompts)
    for category in suite.categories:
        members = [i for i, entry in enumerate(suite.prompts) if entry["category"] == category]
        share = max(1, round(count * len(members) / total))
        step = len(members) / share
        chosen += [members[int(k * step)] for k in range(share)]
    return sorted(chosen)


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate (sound at 0 % and 100 %, unlike the normal approximation)."""
    if total == 0:
        return (math.nan, math.nan)
    rate = correct / total
    denominator = 1 + Z_95**2 / total
    centre = (rate + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(rate * (1 - rate) / total + Z_95**2 / (4 * total**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_key(suite: Suite, model_hash: str, settings: dict) -> str:
    text = json.dumps({"suite": suite.name, "version": suite.version, "model": model_hash, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class BenchRun:
    """One run's rows (a pandas DataFrame) and where they are kept."""

    rows: object
    folder: Path | None = None
    generated: int = 0  # images made by this call (the rest were already in the folder)

    def summary(self):
        return summarize(self.rows)


def summarize(rows, by: list[str] | None = None):
    """Per category (and per `by` columns, e.g. a varied setting): images, correct, rate and its 95 % interval; an
    "overall" row per group is GenEval's score, the mean of the category rates."""
    import pandas as pd

    by = list(by or [])
    records = []
    groups = rows.groupby(by, sort=False) if by else [((), rows)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        rates = []
        for category, members in group.groupby("category", sort=False):
            correct, total = int(members["correct"].sum()), len(members)
            low, high = wilson_interval(correct, total)
            rates.append(correct / total)
            records.append(
                dict(zip(by, key))
                | {
                    "category": category,
                    "images": total,
                    "correct": correct,
                    "rate": correct / total,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        records.append(
            dict(zip(by, key))
            | {
                "category": "overall",
                "images": len(group),
                "correct": int(group["correct"].sum()),
                "rate": sum(rates) / len(rates),
                "ci_low": math.nan,
                "ci_high": math.nan,
            }
        )
    return pd.DataFrame.from_records(records)


def write_parquet(rows, path: Path) -> None:
    """Atomically: a run interrupted while writing keeps its last complete file."""
    partial = path.with_name(path.name + ".partial")
    rows.to_parquet(partial, index=False)
    os.replace(partial, path)


def settings_columns(settings: dict) -> dict:
    return {
        f"setting_{name}": json.dumps(value) if isinstance(value, (list, dict)) else value
        for name, value in settings.items()
    }


def bench(
    suite: str,
    model: str,
    seeds: int = DEFAULT_SEEDS,
    quick: bool = False,
    out_dir: str | os.PathLike | None = "outputs/bench",
    vary: dict[str, list] | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int, int], None] | None = None,
    **fields,
) -> BenchRun:
    """Run `suite` against `model` (a checkpoint name or path) with generation `fields`; `vary` crosses the suite
    with every combination of the listed values of other fields (one run each). Returns every run's rows together.
    Images and rows are kept under `out_dir` (None: nothing written, nothing resumed)."""
    import pandas as pd

    spec = load_suite(suite)
    if seeds < 1:
        raise ValueError(f"seeds: {seeds} is not allowed; allowed 1 or more seeds per prompt")
    names = list(vary or {})
    runs = [dict(zip(names, values)) for values in product(*(vary or {}).values())] or [{}]
    all_rows, generated, folder = [], 0, None
    for varied in runs:
        run = run_one(spec, model, seeds, quick, out_dir, batch_size, progress, fields | varied)
        all_rows.append(run.rows)
        generated += run.generated
        folder = run.folder
    rows = pd.concat(all_rows, ignore_index=True)
    return BenchRun(rows, folder if len(runs) == 1 else (Path(out_dir) if out_dir else None), generated)


def run_one(spec: Suite, model: str, seeds: int, quick: bool, out_dir, batch_size: int, progress, fields) -> BenchRun:
    import pandas as pd

    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    checkpoint = sd_models.resolve_checkpoint(model)
    settings = {"sampler_name": "Euler a", "steps": 20} | fields
    key = run_key(spec, checkpoint.shorthash, settings)
    indices = quick_prompts(spec) if quick else list(range(len(spec.prompts)))
    wanted = [(index, seed) for index in indices for seed in range(seeds)]
    folder = Path(out_dir) / f"{spec.name}-v{spec.version}-{key}" if out_dir is not None else None
    rows_file = folder / "rows.parquet" if folder else None
    done = pd.read_parquet(rows_file) if rows_file and rows_file.is_file() else None
    have = set(zip(done["prompt_index"], done["seed"])) if done is not None else set()
    todo = [item for item in wanted if item not in have]
    records = []
    common = {
        "suite": spec.name,
        "suite_version": spec.version,
        "run": key,
        "model": checkpoint.name,
        "model_hash": checkpoint.shorthash,
        "settings": json.dumps(settings, sort_keys=True),
    } | settings_columns(settings)
    if folder:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps(common, indent=1, sort_keys=True) + "\n")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        prompts = [spec.prompts[index]["prompt"] for index, _ in batch]
        job = StableDiffusionProcessingTxt2Img(
            prompt=prompts,
            seed=[seed for _, seed in batch],
            batch_size=len(batch),
            sd_model_checkpoint=str(checkpoint.path) if checkpoint.name != sd_models.DEFAULT_MODEL_NAME else None,
            do_not_save_samples=True,
            do_not_save_grid=True,
            **settings,
        )
        result = process_images(job)
        for (index, seed), image, prompt in zip(batch, result.images, prompts):
            verdict = spec.score(image, prompt)
            name = f"{index:04d}-{seed}.png"
            if folder:
                path = folder / "images" / name
                partial = path.with_name(name + ".partial")
                partial.write_bytes(image_files.png_bytes(image, image.info.get("parameters")))
                os.replace(partial, path)
            records.append(common | {"prompt_index": index, "prompt": prompt, "seed": seed, "image": name} | verdict)
        if rows_file:
            new = pd.DataFrame.from_records(records)
            write_parquet(pd.concat([done, new], ignore_index=True) if done is not None else new, rows_file)
        if progress:
            progress(start + len(batch), len(todo))
    rows = pd.DataFrame.from_records(records)
    if done is not None:
        rows = pd.concat([done, rows], ignore_index=True)
    asked = set(wanted)  # a resumed folder may hold more seeds than this call asks for
    rows = rows[[(index, seed) in asked for index, seed in zip(rows["prompt_index"], rows["seed"])]]
    return BenchRun(rows.sort_values(["prompt_index", "seed"]).reset_index(drop=True), folder, len(todo))


def load_bench_runs(folder: str | os.PathLike = "outputs/bench"):
    """Every run kept under `folder`, as one DataFrame (compare runs with `summarize(rows, by=[...])`)."""
    import pandas as pd

    files = sorted(Path(folder).glob("*/rows.parquet"))
    if not files:
        raise ValueError(f"folder: no benchmark runs (*/rows.parquet) under {folder}")
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
