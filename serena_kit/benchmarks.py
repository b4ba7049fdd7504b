"""Benchmarks: a named suite of prompts run against any loadable model and any generation settings, each image scored,
one row per image in a pandas DataFrame, kept as Parquet beside the images so runs made at different times compare.

    run = sk.bench("scenes", "serena-scenes", cfg_scale=5)           # 553 prompts x 4 seeds
    run.rows                      # one row per image: prompt, category, seed, each check, correct, settings, model hash
    run.summary()                 # per category: images, correct, rate, 95 % interval; and GenEval's overall score
    sk.bench("scenes", "serena-scenes", quick=True, vary={"sampler": ["Euler a", "DPM++ 2M"], "cfg_scale": [3, 7]})
    sk.bench("scenes", "serena-scenes", vary={"lora:NAME": [0, 0.5, 1]})   # any sweep axis: fields, LoRA weights
    sk.load_bench_runs("outputs/bench")                                  # every run kept there, as one table

The suite "scenes" (modules.scenes_model: its prompt list, versioned, and its scorer) is GenEval's six categories
(single object, two objects, counting, colours, position, colour attribution) in GenEval's proportions. A run's key
is the suite and version, the model hash and the settings: running it again in the same folder skips the images it
has (an interrupted run resumes), and a changed setting is another run. `vary` takes the axes a sweep takes (a
field by its name or short name, "lora:NAME" for a LoRA's weight), parsed and checked by the sweep's own rules.
`quick` takes a fixed stratified part of the prompts (25 prompts x 4 seeds = 100 images). Each batch is generated
through `process_images` like any job.
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

import numpy as np

from modules import images as image_files
from modules import sd_models
from serena_kit.extras import require
from serena_kit.plots import wilson_interval

QUICK_PROMPTS = 25
DEFAULT_SEEDS = 4
BATCH_SIZE = 16
# Fields a run decides itself, so a caller may neither set nor vary them.
BENCH_DECIDES = (
    "prompt",
    "seed",
    "batch_size",
    "n_iter",
    "sd_model_checkpoint",
    "do_not_save_samples",
    "do_not_save_grid",
)


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    prompts: tuple[dict, ...]  # {"prompt", "category"}
    categories: tuple[str, ...]
    checks: tuple[str, ...]  # the scorer's checks besides "correct" (True, False, or None where not asked)
    score: Callable  # (image, prompt) -> {"category", checks..., "correct"}


def scenes_suite() -> Suite:
    from modules.scenes_model import SUITE_FILE, scoring

    data = json.loads(SUITE_FILE.read_text())
    return Suite(
        data["name"], data["version"], tuple(data["prompts"]), scoring.CATEGORIES, scoring.CHECKS, scoring.score_prompt
    )


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


def run_key(suite: Suite, model_hash: str, settings: dict) -> str:
    text = json.dumps({"suite": suite.name, "version": suite.version, "model": model_hash, **settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class BenchRun:
    """The rows (a pandas DataFrame) of one run, or of every run a `vary` made, and the folders they are kept in."""

    rows: object
    folders: tuple[Path, ...] = ()
    generated: int = 0  # images made by this call (the rest were already in the folder)

    @property
    def folder(self) -> Path | None:
        """The run's folder (the first, when `vary` made several)."""
        return self.folders[0] if self.folders else None

    def summary(self):
        return summarize(self.rows, by=[f"setting_{name}" for name in varied_settings(self.rows)])

    def failures(self, category: str | None = None, **settings):
        """The rows the scorer judged wrong (optionally of one category and at given settings, by setting name),
        with a `failed` column naming the checks that failed ("binding" where each held alone but not together)."""
        rows = self.rows[~self.rows["correct"].astype(bool)]
        if category is not None:
            rows = rows[rows["category"] == category]
        for name, value in settings.items():
            rows = rows[rows[f"setting_{name}"] == value]
        checks = [] if rows.empty else load_suite(rows["suite"].iloc[0]).checks
        # Every check held but not together on the same objects: the attributes are there, bound wrongly.
        failed = [
            ", ".join(check for check in checks if row[check] is False) or "binding" for _, row in rows.iterrows()
        ]
        return rows.assign(failed=failed)

    def image(self, row):
        """The kept image of a row."""
        from PIL import Image

        folder = next(folder for folder in self.folders if folder.name.endswith(row["run"]))
        with Image.open(folder / "images" / row["image"]) as image:
            return image.convert("RGB")

    def grid(self, rows, columns: int = 4, title: str = "", cell_size: int = 128):
        """The images of `rows` (e.g. `failures(...)`) in a grid, each labelled with its prompt and failed checks."""
        from modules.grids import labelled_grid, stacked

        records = [row for _, row in rows.iterrows()]
        if not records:
            raise ValueError("rows: no rows to show")
        cells = [self.image(row) for row in records]
        labels = [
            row["prompt"].removeprefix("a photo of ") + (f" [{row['failed']}]" if row.get("failed") else "")
            for row in records
        ]
        grid_rows = [cells[start : start + columns] for start in range(0, len(cells), columns)]
        label_rows = [labels[start : start + columns] for start in range(0, len(labels), columns)]
        # labelled_grid labels columns, not cells: each row of the grid is its own grid, stacked.
        return stacked(
            [
                labelled_grid([row], row_labels, [""], title if i == 0 else "", cell_size)
                for i, (row, row_labels) in enumerate(zip(grid_rows, label_rows))
            ]
        )


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


def varied_settings(rows) -> list[str]:
    """The settings that differ between the runs in `rows` (what a summary groups by)."""
    columns = [column for column in rows.columns if column.startswith("setting_")]
    return [column.removeprefix("setting_") for column in columns if rows[column].nunique(dropna=False) > 1]


def plot_rates(summary, against: str, by: str | None = None, categories: list[str] | None = None):
    """One panel per category (overall last): the rate against the setting `against`, one line per value of `by`,
    with 95 % Wilson intervals (GenEval's overall score has none). Settings by name ("cfg_scale"); returns the
    matplotlib Figure."""
    plt = require("matplotlib.pyplot", "Plotting a benchmark summary")

    against_column, by_column = f"setting_{against}", by and f"setting_{by}"
    names = categories or [name for name in dict.fromkeys(summary["category"]) if name != "overall"] + ["overall"]
    figure, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.8), sharey=True, layout="constrained")
    groups = summary.groupby(by_column, sort=False) if by_column else [(None, summary)]
    for index, (value, group) in enumerate(groups):
        # Lines of equal values would hide each other: each is moved a little sideways.
        offset = (index - (len(groups) - 1) / 2) * 0.06
        for ax, name in zip(axes, names):
            points = group[group["category"] == name].sort_values(against_column)
            xs = np.arange(len(points)) + offset
            errors = [points["rate"] - points["ci_low"], points["ci_high"] - points["rate"]]
            ax.errorbar(
                xs,
                points["rate"],
                yerr=None if name == "overall" else errors,
                marker="o",
                capsize=2,
                label=f"{value}" if by else None,
            )
            ax.set_xticks(
                np.arange(len(points)),
                [f"{x:g}" if isinstance(x, (float, np.floating)) else str(x) for x in points[against_column]],
            )
    for ax, name in zip(axes, names):
        ax.set_title(name.replace("_", " "), fontsize=9)
        ax.set_xlabel(against, fontsize=8)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share correct (95 % CI)")
    if by:
        axes[-1].legend(title=by, fontsize=7, title_fontsize=7)
    return figure


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
    check_not_decided(fields)  # before the axes' base job is built from them
    axes = bench_axes(vary or {}, fields)
    check_not_decided([axis.field for axis in axes])
    combinations = [list(zip(axes, values)) for values in product(*(axis.values for axis in axes))]
    all_rows, generated, folders = [], 0, []
    for combination in combinations:
        run = run_one(spec, model, seeds, quick, out_dir, batch_size, progress, fields, combination)
        all_rows.append(run.rows)
        generated += run.generated
        folders += run.folders
    rows = pd.concat(all_rows, ignore_index=True)
    return BenchRun(rows, tuple(folders), generated)


def check_not_decided(names) -> None:
    for name in names:
        if name in BENCH_DECIDES:
            raise ValueError(
                f"{name}: the benchmark sets it (the suite's prompts and seeds, the model argument, its own batches "
                "and files); vary or set any other generation setting"
            )


def bench_axes(vary: dict[str, list], fields: dict) -> list:
    """`vary` as sweep axes, checked as a sweep checks them (a field's values, a LoRA that exists)."""
    from modules.processing import StableDiffusionProcessingTxt2Img
    from modules.sweeps.axes import parse_axis

    base = StableDiffusionProcessingTxt2Img(prompt="", **fields)
    axes = [parse_axis(f"vary[{name!r}]", (name, values), base) for name, values in vary.items()]
    for axis in axes:
        if axis.field in fields:
            raise ValueError(f"vary[{axis.name!r}]: {axis.field} is also given as a fixed setting; give it once")
    return axes


def run_one(
    spec: Suite, model: str, seeds: int, quick: bool, out_dir, batch_size: int, progress, fields, axes_at=()
) -> BenchRun:
    """One run: the suite with `fields`, each axis of `axes_at` ((axis, value) pairs) at its value."""
    import dataclasses

    import pandas as pd

    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    checkpoint = sd_models.resolve_checkpoint(model)
    fields = {"sampler_name": "Euler a", "steps": 20} | fields
    settings = fields | {axis.field: value for axis, value in axes_at}
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
            sd_model_checkpoint=checkpoint.name if checkpoint.embedded else str(checkpoint.path),
            do_not_save_samples=True,
            do_not_save_grid=True,
            **fields,
        )
        for axis, value in axes_at:
            job = dataclasses.replace(job, **axis.changes(job, value))
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
    rows = rows.sort_values(["prompt_index", "seed"]).reset_index(drop=True)
    return BenchRun(rows, (folder,) if folder else (), len(todo))


def load_bench_runs(folder: str | os.PathLike = "outputs/bench"):
    """Every run kept under `folder`, as one DataFrame (compare runs with `summarize(rows, by=[...])`)."""
    import pandas as pd

    files = sorted(Path(folder).glob("*/rows.parquet"))
    if not files:
        raise ValueError(f"folder: no benchmark runs (*/rows.parquet) under {folder}")
    return pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
