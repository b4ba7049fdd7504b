"""How a sweep's distinct cells run on the engine: the executor protocol and the local executors.

An executor takes the distinct cells' processing objects and returns one Processed per cell, in order. The default,
`run_batched`, runs cells that differ only in prompt, seeds or CFG as one engine batch and splits the result per
cell; `run_distinct` makes one `process_images` call per cell. The Ray executor (serena_kit.distributed) batches
the same way, on remote actors.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

from modules import generation_fields
from modules.processing import Processed, StableDiffusionProcessing, process_images
from modules.runtime.state import GenerationState
from modules.sweeps import output as sweep_output

# An executor runs the distinct cells and returns their results in order. One that also takes `on_result` reports
# each cell as it finishes, `on_result(index, processed)`, so a sweep with an output directory writes it at once.
OnResult = Callable[[int, Processed], None]


def run_distinct(processings: list[StableDiffusionProcessing], on_result: OnResult | None = None) -> list[Processed]:
    """Generate each distinct cell, one `process_images` call each, grouped by model so a model loads once."""
    order = sorted(range(len(processings)), key=lambda i: str(processings[i].sd_model_checkpoint or ""))
    results: list[Processed | None] = [None] * len(processings)
    for index in order:
        results[index] = process_images(processings[index])
        if on_result:
            on_result(index, results[index])
    return results


MAX_BATCH = 16


def batch_key(p: StableDiffusionProcessing) -> sweep_output.FrozenDict:
    """Cells with equal keys can share one batch: all but the per-image fields (prompts, seeds, CFG) are the same."""
    return sweep_output.cell_parameters(p, leave_out=generation_fields.per_image_names())


def plan_batches(processings: list[StableDiffusionProcessing], max_batch: int = MAX_BATCH) -> list[list[int]]:
    """The cells' indices in batches: cells with equal `batch_key`, at most `max_batch` each, grouped by model."""
    groups: dict[tuple, list[int]] = {}
    for index, p in enumerate(processings):
        groups.setdefault(batch_key(p), []).append(index)
    ordered = sorted(groups.values(), key=lambda members: str(processings[members[0]].sd_model_checkpoint or ""))
    return [members[start : start + max_batch] for members in ordered for start in range(0, len(members), max_batch)]


def batch_processing(cells: list[StableDiffusionProcessing]) -> StableDiffusionProcessing:
    """One job for cells of one batch: the first cell's fields, with one prompt, seed and CFG per image."""
    return dataclasses.replace(
        cells[0],
        **{name: [getattr(p, name) for p in cells] for name in generation_fields.per_image_names()},
        batch_size=len(cells),
        n_iter=1,
        do_not_save_grid=True,
        state=GenerationState(),
    )


def run_batched(
    processings: list[StableDiffusionProcessing], max_batch: int = MAX_BATCH, on_result: OnResult | None = None
) -> list[Processed]:
    """The default sweep execution: cells that share size, steps, sampler, model (all but prompt, seeds and CFG)
    run as one batch with per-image noise and per-image CFG, then each cell gets its own Processed.

    In exact mode (`exact=True` on the base) the engine samples a batch one image at a time, so cells are
    byte-identical to single calls; otherwise they may differ from them by 1/255 (see README).
    """
    results: list[Processed | None] = [None] * len(processings)
    for chunk in plan_batches(processings, max_batch):
        cells = [processings[i] for i in chunk]
        for index, processed in zip(chunk, split_processed(process_images(batch_processing(cells)), cells)):
            results[index] = processed
            if on_result:
                on_result(index, processed)
    return results


def run_executor(execute: Callable, processings: list[StableDiffusionProcessing], on_result: OnResult | None):
    """Call an executor, passing `on_result` when it takes one."""
    parameters = inspect.signature(execute).parameters
    if on_result is not None and "on_result" in parameters:
        return execute(processings, on_result=on_result)
    return execute(processings)


def split_processed(batch: Processed, cells: list[StableDiffusionProcessing]) -> list[Processed]:
    """One Processed per cell of a batch; timings are the batch's divided evenly (the cost per image), and
    `batch_size` stays the job's (as in the webui), so a cell's record says its timings are a share."""
    count = len(batch.all_seeds)
    share = {phase: seconds / count for phase, seconds in batch.timings.items()}
    return [dataclasses.replace(batch.for_samples([i]), timings=dict(share), batch_size=count) for i in range(count)]
