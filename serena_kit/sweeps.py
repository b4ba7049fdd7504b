"""Parameter sweeps, the notebook-native X/Y/Z plot: one generation per distinct cell, then a labelled grid.

    result = sweep(base, x=("cfg_scale", [3, 7, 12]), y=("steps", [10, 20]))
    result.grid()          # labelled grid image
    result.to_records()    # one dict per cell: parameters, timings, image hash
    result.score("adherence"); result.to_dataframe(); result.plot("adherence", against="cfg_scale", over="seed")

An axis is `(name, values)`. The name is any processing field that changes the image ("cfg_scale", "steps", "seed",
"denoising_strength", ...), a field's short name ("sampler" for sampler_name, "model" for sd_model_checkpoint, as on
the CLI), "prompt_sr": the webui's Prompt S/R, whose first value is the text to search for and every value the
text to put in its place in prompt and negative prompt, or "lora:NAME": that LoRA's weight, added to the prompt as
the tag `<lora:NAME:weight>` (so it works wherever a prompt does: API, CLI, Ray workers, infotext replay). Cells are
labelled with the fields' declared labels (the infotext's names: "CFG scale: 7").

Every cell uses the same seed unless the seed is an axis (a base seed of -1 is resolved once, up front), and cells
with identical parameters are generated once.

With `outdir=` each image is written to that folder as it arrives, with a manifest line, and a rerun skips the cells
already there (serena_kit.sweep_output); `executor="ray"` runs the cells on Ray actors (serena_kit.distributed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modules import extra_networks, generation_fields, images, rng
from modules.field_types import Seed
from modules.processing import Processed, StableDiffusionProcessing, StableDiffusionProcessingTxt2Img
from modules.runtime.state import GenerationState
from serena_kit import metrics, plots, sweep_output
from serena_kit.extras import require
from serena_kit.grids import CELL_SIZE, labelled_grid, side_by_side
from serena_kit.sweep_executors import run_batched, run_executor

PROMPT_SR = "prompt_sr"
LORA_PREFIX = "lora:"  # "lora:ring" sweeps the weight of LoRA "ring"


@dataclass(frozen=True)
class Axis:
    """One swept parameter: `name` as the caller wrote it, `field` the processing field it sets."""

    name: str
    field: str
    values: tuple

    def changes(self, p: StableDiffusionProcessing, value) -> dict:
        """The processing-field changes that put this axis at `value`."""
        if self.field.startswith(LORA_PREFIX):
            tag = f" <{self.field}:{value:g}>"
            return {"prompt": [text + tag for text in p.prompt] if isinstance(p.prompt, list) else p.prompt + tag}
        if self.field != PROMPT_SR:
            return {self.field: value}
        search = self.values[0]
        return {
            "prompt": p.prompt.replace(search, value),
            "negative_prompt": p.negative_prompt.replace(search, value),
        }

    def label(self, value) -> str:
        if self.field == PROMPT_SR:
            return str(value)  # the webui labels Prompt S/R cells with the replacement text alone
        if self.field.startswith(LORA_PREFIX):
            return f"LoRA {self.field[len(LORA_PREFIX) :]}: {value:g}"
        declaration = generation_fields.declaration_of(self.field)
        return f"{declaration.label}: {declaration.display(value)}"


def sweepable_fields(base: StableDiffusionProcessing) -> dict[str, str]:
    """{axis name: field} for every field of `base` a sweep can vary: short names ("sampler") first, then fields."""
    sweepable = [declaration for declaration in generation_fields.declarations_of(base) if declaration.sweepable]
    aliases = {d.short_name: d.name for d in sweepable if d.short_name != d.name}
    return aliases | {d.name: d.name for d in sweepable}


def seed_fields() -> list[str]:
    """The fields whose -1 means a random seed."""
    return [declaration.name for declaration in generation_fields.FIELDS if isinstance(declaration.kind, Seed)]


def draw_seed(key: str) -> int:
    """A fresh random seed for the -1 at `key` ("seed", "x[2]", ...); an output directory remembers its draws."""
    return rng.resolve_seed(-1)


def parse_axis(
    position: str, spec, base: StableDiffusionProcessing, draw: Callable[[str], int] = draw_seed
) -> Axis | None:
    """`(name, values)` (or an Axis) -> Axis, with a ValueError naming the axis for what cannot be swept."""
    if spec is None or isinstance(spec, Axis):
        return spec
    if not (isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str)):
        raise TypeError(f"{position}: expected (parameter name, list of values), got {spec!r}")
    name, values = spec
    values = list(values) if isinstance(values, Iterable) and not isinstance(values, (str, bytes)) else []
    values = [value.item() if isinstance(value, np.generic) else value for value in values]  # numpy -> Python
    if not values:
        raise ValueError(f"{position}: {name!r} needs a non-empty list of values, got {spec[1]!r}")
    if name.startswith(LORA_PREFIX):
        return lora_axis(position, name, values)
    fields = sweepable_fields(base)
    if name != PROMPT_SR and name not in fields:
        valid = ", ".join([PROMPT_SR, LORA_PREFIX + "NAME", *fields])
        raise ValueError(f"{position}: {name!r} cannot be swept; valid: {valid}")
    target = fields.get(name, name)
    if target == PROMPT_SR:
        check_prompt_search(position, base, values)
    if target in seed_fields():  # a random seed in an axis is drawn once, so its cells can be compared
        values = [draw(f"{position}[{index}]") if value == -1 else value for index, value in enumerate(values)]
    return Axis(name, target, tuple(values))


def lora_axis(position: str, name: str, values: list) -> Axis:
    try:
        extra_networks.find_lora(name[len(LORA_PREFIX) :])
    except ValueError as error:
        raise ValueError(f"{position}: {str(error).removeprefix('prompt: ')}") from None
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in values):
        raise TypeError(f"{position}: {name} values are LoRA weights (numbers), got {values!r}")
    return Axis(name, name, tuple(values))


def check_prompt_search(position: str, base: StableDiffusionProcessing, values) -> None:
    if not all(isinstance(value, str) for value in values):
        raise TypeError(f"{position}: prompt_sr values must be strings, got {list(values)!r}")
    if not isinstance(base.prompt, str) or not isinstance(base.negative_prompt, str):
        raise TypeError(f"{position}: prompt_sr needs a single prompt string, not a list")
    if values[0] not in base.prompt and values[0] not in base.negative_prompt:
        raise ValueError(f"{position}: prompt_sr search text {values[0]!r} is not in the prompt or negative prompt")


def with_fixed_seeds(
    base: StableDiffusionProcessing, axes: list[Axis], draw: Callable[[str], int] = draw_seed
) -> StableDiffusionProcessing:
    """Resolve a random (-1) seed and variation seed once, so every cell starts from the same noise."""
    swept = {axis.field for axis in axes}
    drawn = [name for name in seed_fields() if getattr(base, name) == -1 and name not in swept]
    return dataclasses.replace(base, **{name: draw(name) for name in drawn})


def parameter_key(p: StableDiffusionProcessing) -> sweep_output.FrozenDict:
    """Equal keys mean equal images: the cell's kind and every field that affects its image."""
    return sweep_output.cell_parameters(p)


def plan_cells(base: StableDiffusionProcessing, axes: list[Axis | None]) -> tuple[list[tuple], list]:
    """Every cell's processing object, z-major then y then x, with equal ones merged.

    Returns (positions, distinct): per cell its (x, y, z) values, the index of its object in `distinct`, and
    whether it is the first cell with that object.
    """
    x_axis, y_axis, z_axis = axes
    positions, distinct, index_of_key = [], [], {}
    for z in axis_values(z_axis):
        for y in axis_values(y_axis):
            for x in axis_values(x_axis):
                p = dataclasses.replace(base, state=GenerationState())  # each cell reports its own progress
                for axis, value in ((x_axis, x), (y_axis, y), (z_axis, z)):
                    if axis:  # applied in turn, so two prompt_sr axes both take effect
                        p = dataclasses.replace(p, **axis.changes(p, value))
                key = parameter_key(p)
                first = key not in index_of_key
                if first:
                    index_of_key[key] = len(distinct)
                    distinct.append(p)
                positions.append(((x, y, z), index_of_key[key], first))
    return positions, distinct


# A record's parameter columns: the sweepable fields a result reports, as the engine used them.
RECORD_FIELDS = tuple(
    declaration.name
    for declaration in generation_fields.FIELDS
    if declaration.sweepable and declaration.name in {f.name for f in dataclasses.fields(Processed)}
)


@dataclass
class SweepCell:
    x: object  # this cell's axis values (None for an unused axis)
    y: object
    z: object
    processing: StableDiffusionProcessing = dataclasses.field(repr=False)
    processed: Processed = dataclasses.field(repr=False)
    generated: bool = True  # False: an identical earlier cell made this image
    resumed: bool = False  # True: read back from the sweep's output directory, not generated by this run

    @property
    def image(self) -> Image.Image:
        return self.processed.images[self.processed.index_of_first_image]

    @property
    def seconds(self) -> float:
        """Engine time for the generation that made this image (model load included); for a cell of a batch, its
        share: the batch's time divided by its images (see `batch_size`)."""
        return sum(self.processed.timings.values())

    @property
    def batch_size(self) -> int:
        """Images in the engine job that made this cell: above 1, its timings are a share of that job's."""
        return self.processed.batch_size

    @property
    def file(self) -> str | None:
        return self.processed.paths[0] if self.processed.paths else None

    def png_sha256(self) -> str:
        return hashlib.sha256(images.png_bytes(self.image, self.image.info.get("parameters"))).hexdigest()


@dataclass
class SweepResult:
    x: Axis | None
    y: Axis | None
    z: Axis | None
    cells: list[SweepCell]  # z-major, then y, then x
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)  # column -> value per cell (score)

    def __repr__(self) -> str:
        axes = ", ".join(
            f"{position}={axis.name} {list(axis.values)}"
            for position, axis in (("x", self.x), ("y", self.y), ("z", self.z))
            if axis
        )
        return f"SweepResult({axes}; {len(self.cells)} cells, {self.generated_count} generated)"

    @property
    def images(self) -> list[Image.Image]:
        return [cell.image for cell in self.cells]

    @property
    def generated_count(self) -> int:
        return sum(cell.generated for cell in self.cells)

    @property
    def resumed_count(self) -> int:
        """Distinct images read back from the output directory instead of generated."""
        return sum(cell.generated and cell.resumed for cell in self.cells)

    def cell(self, x=None, y=None, z=None) -> SweepCell:
        """The cell at these axis values."""
        for cell in self.cells:
            if (cell.x, cell.y, cell.z) == (x, y, z):
                return cell
        raise KeyError(f"no cell at x={x!r}, y={y!r}, z={z!r}")

    def grids(self, cell_size: int = CELL_SIZE) -> list[Image.Image]:
        """One labelled grid per z value: x values across, y values down."""
        xs, ys, zs = axis_values(self.x), axis_values(self.y), axis_values(self.z)
        result = []
        for z_index, z in enumerate(zs):
            first = z_index * len(ys) * len(xs)  # cells run z-major, then y, then x
            rows = [
                [self.cells[first + y_index * len(xs) + x_index].image for x_index in range(len(xs))]
                for y_index in range(len(ys))
            ]
            result.append(
                labelled_grid(
                    rows,
                    column_labels=[self.x.label(x) for x in xs] if self.x else [],
                    row_labels=[self.y.label(y) for y in ys] if self.y else [],
                    title=self.z.label(z) if self.z else "",
                    cell_size=cell_size,
                )
            )
        return result

    def grid(self, cell_size: int = CELL_SIZE) -> Image.Image:
        """The labelled grid; with a z axis, its grids side by side."""
        return side_by_side(self.grids(cell_size))

    def to_records(self) -> list[dict]:
        """One dict per cell, for tables: axis values, the parameters the engine used, timings, image hash, file,
        and the metrics computed so far (`score`).

        Timings: `seconds` and `sample_seconds` are the cell's share of its engine job; `batch_seconds` is the whole
        job's time and `batch_size` its images. Cells of a batch (batch_size > 1) were not timed one by one.
        """
        records = []
        for index, cell in enumerate(self.cells):
            processed = cell.processed
            record = {
                axis.name: value for axis, value in zip((self.x, self.y, self.z), (cell.x, cell.y, cell.z)) if axis
            }
            record |= {name: getattr(processed, name) for name in RECORD_FIELDS}
            record |= {
                "model": processed.sd_model_name,
                "generated": cell.generated,
                "seconds": cell.seconds,
                "sample_seconds": processed.timings.get("sample", 0.0),
                "batch_size": cell.batch_size,
                "batch_seconds": cell.seconds * cell.batch_size,
                "timing": "per batch" if cell.batch_size > 1 else "per cell",
                "png_sha256": cell.png_sha256(),
                "file": cell.file,
                "infotext": processed.infotexts[processed.index_of_first_image],
            }
            record |= {name: values[index] for name, values in self.metrics.items()}
            records.append(record)
        return records

    def to_dataframe(self):
        """`to_records()` as a pandas DataFrame (the notebook extra); `attrs["timing"]` says how cells were timed."""
        pandas = require("pandas", "A sweep's table (SweepResult.to_dataframe)")
        frame = pandas.DataFrame.from_records(self.to_records())
        batched = any(cell.batch_size > 1 for cell in self.cells)
        frame.attrs["timing"] = (
            "seconds and sample_seconds are each cell's share of its batch's time (batch_seconds), not measured "
            "per cell"
            if batched
            else "seconds and sample_seconds measured per cell"
        )
        return frame

    def reference_image(self, reference) -> Image.Image:
        """A reference for SSIM/PSNR: an image, a cell, or the axis values of a cell ({"x": 7, "y": 20})."""
        if isinstance(reference, Image.Image):
            return reference
        if isinstance(reference, SweepCell):
            return reference.image
        if isinstance(reference, dict):
            unknown = sorted(set(reference) - {"x", "y", "z"})
            if unknown:
                raise ValueError(f"reference: {unknown[0]!r} is not an axis; give x=, y= and z= values")
            return self.cell(**reference).image
        raise TypeError(f"reference: expected an image, a SweepCell or a dict of axis values, got {reference!r}")

    def score(self, metric: str | Callable[[Image.Image], float], *, reference=None, clip_model=None) -> list[float]:
        """Compute `metric` for every cell, keep it as a column of `to_records()`/`to_dataframe()`, and return it.

        `metric`: "adherence" (the default model's scorer against each cell's prompt; also adds one column per
        criterion), "ssim" or "psnr" against `reference` (an image, a cell, or {"x": ..., "y": ...}), "brightness",
        "contrast", "saturation", "clip" with `clip_model` (a local CLIP folder), or any function of the image.
        See serena_kit.metrics.
        """
        image = self.reference_image(reference) if reference is not None else None
        prompts = [cell.processed.prompt for cell in self.cells]
        columns = metrics.compute(metric, self.images, prompts, reference=image, clip_model=clip_model)
        self.metrics |= columns
        return columns[metrics.metric_name(metric)]

    def plot(
        self,
        metric: str | Callable[[Image.Image], float],
        against: str | None = None,
        by: str | None = None,
        over: str | None = None,
        ax=None,
    ):
        """Plot `metric` against an axis (default: x), one line per value of `by` (default: y unless it is `over`).

        `metric`: a column of `to_records()` ("batch_seconds", a computed score), or what `score` takes (computed
        first). `over`: an axis to average over (e.g. "seed"): each point is the mean over its values, with a 95 %
        confidence band. Per-cell times of batched cells are shares of their batch's, so "seconds" and
        "sample_seconds" are refused there: plot "batch_seconds", or sweep with execute=run_distinct.
        """
        against = against or (self.x.name if self.x else None)
        if against is None:
            raise ValueError("against: this sweep has no x axis; name the parameter to plot against")
        if by is None and self.y is not None and self.y.name not in (against, over):
            by = self.y.name
        records = self.to_records()
        if isinstance(metric, str) and metric in ("seconds", "sample_seconds"):
            batched = sorted({record["batch_size"] for record in records if record["batch_size"] > 1})
            if batched:
                raise ValueError(
                    f"metric: {metric!r} of batched cells (batches of {batched}) is a share of the batch's time, not "
                    "measured per cell; plot 'batch_seconds', or sweep with execute=run_distinct"
                )
        if isinstance(metric, str) and metric in records[0] and metric not in metrics.BUILT_IN:
            values = [float(record[metric]) for record in records]
        elif isinstance(metric, str) and metric in self.metrics:
            values = self.metrics[metric]
        elif isinstance(metric, str) and metric not in metrics.BUILT_IN:
            valid = ", ".join([*metrics.BUILT_IN, *records[0]])
            raise ValueError(f"metric: unknown metric {metric!r}; valid: {valid}, or a function of the image")
        else:
            values = self.score(metric)
            records = self.to_records()
        return plots.plot_metric(records, values, metrics.metric_name(metric), against, by, over, ax=ax)


def base_processing(base: StableDiffusionProcessing | dict) -> StableDiffusionProcessing:
    """A sweep's base: a processing object, or a dict of txt2img fields."""
    if isinstance(base, dict):
        base = StableDiffusionProcessingTxt2Img(**base)
    if not isinstance(base, StableDiffusionProcessing):
        raise TypeError(
            f"base: expected a StableDiffusionProcessing or a dict of its fields, got {type(base).__name__}"
        )
    return base


def axis_values(axis: Axis | None) -> tuple:
    return axis.values if axis else (None,)


def sweep(
    base: StableDiffusionProcessing | dict,
    x: tuple | Axis | None = None,
    y: tuple | Axis | None = None,
    z: tuple | Axis | None = None,
    *,
    save: bool = False,
    execute: Callable[[list[StableDiffusionProcessing]], list[Processed]] | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    outdir: str | os.PathLike | None = None,
    on_cell: Callable[[SweepCell], None] | None = None,
) -> SweepResult:
    """Generate every combination of the axis values on top of `base` (a processing object, or a dict of its
    fields for txt2img). One image per cell; images are saved only with `save=True` (to base's outpath_samples).
    Every cell is validated before anything is generated. Cells run batched (`run_batched`); set `exact=True` on
    the base for cells byte-identical to single calls, or pass `execute=run_distinct` for one call per cell (both
    in serena_kit.sweep_executors).

    `outdir`: write each image there as it arrives, with a manifest line; rerunning with the same outdir skips the
    cells already there (see serena_kit.sweep_output). `executor="ray"`: run the cells on Ray actors; `ray_address`
    None starts a local Ray, "auto" or "ray://host:port" joins a cluster; `workers` actors (default: as many as
    the cluster holds) with `gpus_per_worker` GPUs each (default 1; 0 for CPU workers). See serena_kit.distributed.

    `on_cell(cell)` is called for every cell as soon as its image exists (a widget fills its grid this way; an
    exception it raises stops the sweep, e.g. to interrupt it).
    """
    execute = choose_executor(
        execute, executor, save, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker
    )
    base = base_processing(base)
    seeds = sweep_output.RandomSeeds.read(outdir) if outdir is not None else None  # a rerun draws the same -1s
    draw = seeds.draw if seeds else draw_seed
    axes = {position: parse_axis(position, spec, base, draw) for position, spec in (("x", x), ("y", y), ("z", z))}
    used = [axis for axis in axes.values() if axis]
    fields = [axis.field for axis in used if axis.field != PROMPT_SR]  # a LoRA axis's field is "lora:NAME"
    if len(set(fields)) != len(fields):
        raise ValueError(f"sweep: a parameter appears on two axes ({', '.join(fields)})")
    base = dataclasses.replace(
        with_fixed_seeds(base, used, draw), batch_size=1, n_iter=1, do_not_save_samples=not save, do_not_save_grid=True
    )

    positions, distinct = plan_cells(base, [axes["x"], axes["y"], axes["z"]])
    for p in distinct:
        p.validate()
    reporter = CellReporter(positions, distinct, on_cell)
    if outdir is None:
        results = run_executor(execute, distinct, reporter.report if on_cell else None)
        resumed = [False] * len(distinct)
    else:
        with sweep_output.SweepOutput(outdir, seeds) as output:
            labels = axis_labels(axes, positions, len(distinct))
            results, resumed = output.run(
                distinct, labels, lambda todo, report: run_executor(execute, todo, reporter.chain(todo, report))
            )
    for index, processed in enumerate(results):  # cells read back, or from executors that do not report
        reporter.report(index, processed, resumed[index])
    cells = [
        SweepCell(*values, distinct[index], results[index], generated=first, resumed=resumed[index])
        for values, index, first in positions
    ]
    return SweepResult(axes["x"], axes["y"], axes["z"], cells)


class CellReporter:
    """Calls `on_cell` once for every cell of the grid as the distinct cell that makes its image arrives."""

    def __init__(self, positions: list[tuple], distinct: list[StableDiffusionProcessing], on_cell):
        self.positions, self.distinct, self.on_cell = positions, distinct, on_cell
        self.reported: set[int] = set()
        self.index_of = {id(p): index for index, p in enumerate(distinct)}

    def report(self, index: int, processed: Processed, resumed: bool = False) -> None:
        if self.on_cell is None or index in self.reported:
            return
        self.reported.add(index)
        for values, cell_index, first in self.positions:
            if cell_index == index:
                self.on_cell(SweepCell(*values, self.distinct[index], processed, generated=first, resumed=resumed))

    def chain(self, todo: list[StableDiffusionProcessing], report: Callable[[int, Processed], None]):
        """`report` (an output directory's writer, by position in `todo`), then this reporter."""

        def both(position: int, processed: Processed) -> None:
            report(position, processed)
            self.report(self.index_of[id(todo[position])], processed)

        return both


def choose_executor(execute, executor: str, save: bool, **ray_options) -> Callable:
    """The function that runs the distinct cells: `execute`, `run_batched`, or a Ray executor from the options."""
    if executor not in ("local", "ray"):
        raise ValueError(f"executor: expected 'local' or 'ray', got {executor!r}")
    given = [name for name, value in ray_options.items() if value is not None]
    if executor == "local":
        if given:
            raise ValueError(f"{given[0]}: only with executor='ray'")
        return execute or run_batched
    if execute is not None:
        raise ValueError("execute: pass an execute function or executor='ray', not both")
    if save:
        raise ValueError("save: Ray workers do not save; pass outdir= and the sweep writes each image as it arrives")
    from serena_kit.distributed import RayExecutor

    options = {name: value for name, value in ray_options.items() if value is not None}
    if "ray_address" in options:
        options["address"] = options.pop("ray_address")
    return RayExecutor(**options)


def axis_labels(axes: dict[str, Axis | None], positions: list[tuple], count: int) -> list[dict]:
    """For each distinct cell, {axis name: value} at the first cell that uses it (for the manifest)."""
    labels: list[dict] = [{} for _ in range(count)]
    for values, index, first in positions:
        if first:
            labels[index] = {axis.name: value for axis, value in zip(axes.values(), values) if axis}
    return labels
