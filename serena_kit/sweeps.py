"""Parameter sweeps in a notebook: the engine's sweeps (modules.sweeps.run) with tables, scores, plots and Ray.

    result = sweep(base, x=("cfg_scale", [3, 7, 12]), y=("steps", [10, 20]))
    result.grid()          # labelled grid image
    result.to_records()    # one dict per cell: parameters, timings, image hash
    result.score("adherence"); result.to_dataframe(); result.plot("adherence", against="cfg_scale", over="seed")

Axes (modules.sweeps.axes): any processing field that changes the image, a field's short name ("sampler"),
"prompt_sr" (the webui's Prompt S/R) or "lora:NAME" (that LoRA's weight). Cells are labelled with the fields'
declared labels (the infotext's names: "CFG scale: 7").

With `outdir=` each image is written to that folder as it arrives, with a manifest line, and a rerun skips the cells
already there (modules.sweeps.output); `executor="ray"` runs the cells on Ray actors (serena_kit.distributed).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PIL import Image

from modules.processing import Processed, StableDiffusionProcessing
from modules.sweeps import run
from modules.sweeps.axes import Axis
from modules.sweeps.executors import run_batched
from modules.sweeps.run import SweepCell
from serena_kit import metrics, plots
from serena_kit.extras import require


class SweepResult(run.SweepResult):
    """A sweep's cells with what a study needs: a DataFrame, scores, plots."""

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
    """The engine's sweep (modules.sweeps.run.sweep: axes, saving, `outdir`, `on_cell`) returning a SweepResult
    with tables, scores and plots, and run where the options say.

    `execute`: a function that runs the distinct cells (default `run_batched`, or `run_distinct`, both in
    modules.sweeps.executors). `executor="ray"`: run the cells on Ray actors; `ray_address` None starts a local Ray,
    "auto" or "ray://host:port" joins a cluster; `workers` actors (default: as many as the cluster holds) with
    `gpus_per_worker` GPUs each (default 1; 0 for CPU workers). See serena_kit.distributed.
    """
    execute = choose_executor(
        execute, executor, save, ray_address=ray_address, workers=workers, gpus_per_worker=gpus_per_worker
    )
    return run.sweep(base, x, y, z, save=save, execute=execute, outdir=outdir, on_cell=on_cell, result_type=SweepResult)


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
