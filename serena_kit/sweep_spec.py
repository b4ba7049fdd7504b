"""Sweep specs: a sweep written down in YAML, run by `serena sweep SPEC.yaml [--ray ADDRESS]` or `run_spec(path)`.

    base:                               # processing fields, as for sweep(); init_images (paths) make it img2img
      prompt: a red circle on a blue background
      steps: 20
      seed: 21
      exact: true
    x: {name: cfg_scale, values: [3, 7, 12]}    # or [cfg_scale, [3, 7, 12]]
    y: {name: seed, values: [1, 2, 3]}
    z: {name: steps, values: [10, 20]}          # x, y and z are each optional
    outdir: sweeps/cfg-by-seed          # required; relative paths start at the spec file's folder
    grid: grid.png                      # the labelled grid, written into outdir (default grid.png; false: none)
    executor: ray                       # default local
    ray: {address: auto, workers: 8, gpus_per_worker: 1, batch_size: 8}   # for executor ray, all optional
    # also cpus_per_worker, max_attempts, batch_timeout_s, resource_wait_s: RayExecutor's options, same names

Rerunning a spec resumes it: the cells already in outdir are read back, only the missing ones are generated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modules.images import open_image, png_bytes, replace_file
from modules.processing import StableDiffusionProcessing, StableDiffusionProcessingImg2Img
from serena_kit.sweeps import SweepResult, sweep

TOP_LEVEL_KEYS = ("base", "x", "y", "z", "outdir", "grid", "executor", "ray")
RAY_KEYS = (
    "address",
    "workers",
    "gpus_per_worker",
    "cpus_per_worker",
    "batch_size",
    "max_attempts",
    "batch_timeout_s",
    "resource_wait_s",
)


@dataclass
class SweepSpec:
    base: StableDiffusionProcessing | dict
    axes: dict[str, tuple]  # position -> (name, values)
    outdir: Path
    grid: str | None = "grid.png"
    executor: str = "local"
    ray: dict = field(default_factory=dict)


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and check a spec file; ValueError/TypeError name the key at fault."""
    path = Path(path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError("expected a mapping with base, x, y, z, outdir, ...")
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    folder = path.resolve().parent
    if not data.get("outdir"):
        raise ValueError("outdir: required (the folder the images and the manifest go to)")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise TypeError(f"base: expected a mapping of processing fields, got {base!r}")
    if "init_images" in base:
        init = base["init_images"]
        paths = [init] if isinstance(init, str) else list(init)
        images = [open_image(folder / image_path, "base.init_images") for image_path in paths]
        base = StableDiffusionProcessingImg2Img(**(base | {"init_images": images}))
    ray = data.get("ray") or {}
    if not isinstance(ray, dict) or set(ray) - set(RAY_KEYS):
        raise ValueError(f"ray: expected a mapping with keys among {', '.join(RAY_KEYS)}, got {ray!r}")
    grid = data.get("grid", "grid.png")
    axes = {position: parse_axis_spec(position, data[position]) for position in ("x", "y", "z") if data.get(position)}
    return SweepSpec(
        base=base,
        axes=axes,
        outdir=folder / data["outdir"],
        grid=str(grid) if grid else None,
        executor=str(data.get("executor", "local")),
        ray=dict(ray),
    )


def parse_axis_spec(position: str, spec) -> tuple:
    if isinstance(spec, dict) and set(spec) == {"name", "values"}:
        return spec["name"], spec["values"]
    if isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], str):
        return spec[0], spec[1]
    raise ValueError(f"{position}: expected {{name: PARAMETER, values: [...]}} or [PARAMETER, [...]], got {spec!r}")


def run_spec(
    spec: str | os.PathLike | SweepSpec,
    *,
    ray_address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    outdir: str | os.PathLike | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run (or resume) a spec. A `ray_address` (or `workers`/`gpus_per_worker`) runs it on Ray whatever the spec's
    executor; the arguments override the spec's `ray:` options, `outdir` its outdir. Writes the grid if asked."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    outdir = Path(outdir) if outdir is not None else spec.outdir
    overrides = {"address": ray_address, "workers": workers, "gpus_per_worker": gpus_per_worker}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    on_ray = spec.executor == "ray" or bool(overrides)
    if on_ray:
        from serena_kit.distributed import RayExecutor

        execute = RayExecutor(**(spec.ray | overrides), progress=progress)
        result = sweep(spec.base, **spec.axes, outdir=outdir, execute=execute)
    else:
        if spec.executor != "local":
            raise ValueError(f"executor: expected local or ray, got {spec.executor!r}")
        result = sweep(spec.base, **spec.axes, outdir=outdir)
    if spec.grid:
        replace_file(outdir / spec.grid, png_bytes(result.grid(), None))  # derived from the cells: replaced
    return result
