"""A sweep's output directory: each image written as it arrives, an append-only manifest, and resume.

    <outdir>/
        <cell id>.png       one image per distinct cell (its infotext in the `parameters` chunk)
        manifest.jsonl      one JSON line per written image: cell id, file, sha256, axis values, seed, parameters
        random-seeds.json   the seeds drawn for -1 values, so a rerun draws the same ones
        .lock               held while a sweep writes here: one sweep per directory at a time

A cell's id is a hash of its generation parameters (output-only fields left out), so a rerun of the same sweep finds
the files of the cells it already made. A cell is done iff its file exists, the manifest has a line for it, and the
file's sha256 matches that line. Anything else under a cell's name (a file whose line never got written because the
run was killed, or whose bytes differ from its line) is deleted and the cell generated again.

Only the sweep's driver writes here, never a Ray worker: first the image, atomically (a temp file then a link, which
never replaces an existing file, `modules.images.write_new_file`), then its manifest line, flushed to disk. So every
line names a complete file, and a half-written image is only ever a `.tmp-*` file, removed by the next run. A line
cut short by a kill is skipped when reading; when a cell appears on several lines (it was redone), the last wins.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from modules import images, rng
from modules.processing import Processed, StableDiffusionProcessing

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, one sweep per directory is then the caller's promise
    fcntl = None

MANIFEST = "manifest.jsonl"
RANDOM_SEEDS = "random-seeds.json"
LOCK = ".lock"
# Fields that say where or whether the engine saves, not what it generates: they are not part of a cell's identity.
OUTPUT_FIELDS = frozenset({"do_not_save_samples", "do_not_save_grid", "outpath_samples", "outpath_grids"})

# execute(processings, on_result) -> their Processed; on_result(index, processed) as each one finishes.
Execute = Callable[[list[StableDiffusionProcessing], Callable[[int, Processed], None]], list[Processed]]


def plain(value):
    """A JSON-ready stand-in for a field value; images by their size and pixels' hash."""
    if isinstance(value, Image.Image):
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        return f"image {value.mode} {value.width}x{value.height} sha256:{digest}"
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def cell_parameters(p: StableDiffusionProcessing) -> dict:
    """Everything that decides a cell's image: its kind and every compared field but the output ones."""
    return {"kind": type(p).__name__} | {
        field.name: plain(getattr(p, field.name))
        for field in dataclasses.fields(p)
        if field.compare and field.name not in OUTPUT_FIELDS
    }


def cell_id(p: StableDiffusionProcessing) -> str:
    """A stable id for a cell: the same parameters give the same id in every run (and on every machine)."""
    text = json.dumps(cell_parameters(p), sort_keys=True, ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(path: Path) -> dict[str, dict]:
    """{cell id: its last manifest line}; lines that do not parse (one cut short by a kill) are skipped."""
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("cell"), str):
            entries[entry["cell"]] = entry
    return entries


@dataclasses.dataclass
class RandomSeeds:
    """The seeds a sweep drew for -1 values, by where the -1 was ("seed", "subseed", "x[2]", ...)."""

    path: Path
    seeds: dict[str, int]
    changed: bool = False

    @classmethod
    def read(cls, folder: str | os.PathLike) -> RandomSeeds:
        path = Path(folder) / RANDOM_SEEDS
        seeds = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return cls(path, {str(key): int(value) for key, value in seeds.items()})

    def draw(self, key: str) -> int:
        """The seed drawn for `key` in an earlier run of this directory, or a new random one."""
        if key not in self.seeds:
            self.seeds[key] = rng.resolve_seed(-1)
            self.changed = True
        return self.seeds[key]

    def save(self) -> None:
        if self.changed:
            images.replace_file(self.path, json.dumps(self.seeds, indent=1, sort_keys=True).encode("utf-8"))
            self.changed = False


class SweepOutput:
    """An open output directory. Use as a context manager: it holds the directory's lock until closed."""

    def __init__(self, folder: str | os.PathLike, random_seeds: RandomSeeds | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_lock()
        for leftover in self.folder.glob(".tmp-*"):  # a write a killed run never finished
            leftover.unlink(missing_ok=True)
        if random_seeds is not None:
            random_seeds.save()
        self.manifest_path = self.folder / MANIFEST
        self.entries = read_manifest(self.manifest_path)
        self.discarded: list[str] = []  # files deleted because they were not done (no line, or wrong bytes)
        self.written: list[str] = []  # files written by this run, in order
        self._manifest = open(self.manifest_path, "ab")  # noqa: SIM115 - closed in close()
        if self._manifest.tell() and not self.manifest_path.read_bytes().endswith(b"\n"):
            self._write_line(b"")  # end a line cut short by a kill, so the next line stands on its own

    def _acquire_lock(self):
        handle = open(self.folder / LOCK, "a")  # noqa: SIM115 - closed in close()
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise RuntimeError(f"outdir: {self.folder} is in use by another running sweep") from None
        return handle

    def close(self) -> None:
        self._manifest.close()
        self._lock.close()  # closing the file releases the lock

    def __enter__(self) -> SweepOutput:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def path_for(self, cell: str) -> Path:
        return self.folder / f"{cell[:16]}.png"

    def finished(self, cell: str) -> dict | None:
        """The manifest line of a done cell; None when the cell must be generated (a stale file is deleted)."""
        path = self.path_for(cell)
        if not path.exists():
            return None
        entry = self.entries.get(cell)
        if entry is not None and entry.get("file") == path.name and entry.get("sha256") == file_sha256(path):
            return entry
        path.unlink()
        self.discarded.append(path.name)
        return None

    def write(self, cell: str, p: StableDiffusionProcessing, processed: Processed, axes: dict) -> Path:
        """Write a cell's image (atomically, never replacing a file), then its manifest line."""
        image = processed.images[processed.index_of_first_image]
        data = images.png_bytes(image, image.info.get("parameters"))
        path = self.path_for(cell)
        images.write_new_file(path, data)
        entry = {
            "cell": cell,
            "file": path.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "axes": axes,
            "seed": processed.seed,
            "subseed": processed.subseed,
            "prompt": processed.prompt,
            "negative_prompt": processed.negative_prompt,
            "width": processed.width,
            "height": processed.height,
            "model": processed.sd_model_name,
            "model_hash": processed.sd_model_hash,
            "seconds": round(sum(processed.timings.values()), 4),
            "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "parameters": cell_parameters(p),
        }
        self._write_line(json.dumps(entry, ensure_ascii=False, default=repr).encode("utf-8"))
        self.entries[cell] = entry
        self.written.append(path.name)
        return path

    def _write_line(self, line: bytes) -> None:
        self._manifest.write(line + b"\n")
        self._manifest.flush()
        os.fsync(self._manifest.fileno())

    def read_back(self, p: StableDiffusionProcessing, entry: dict) -> Processed:
        """A done cell's Processed, rebuilt from its file and manifest line (no timings: nothing ran)."""
        path = self.folder / entry["file"]
        with Image.open(path) as opened:
            opened.load()
            image = opened.copy()
        return processed_from_file(p.with_overrides(), image, entry, path)

    def run(
        self, processings: list[StableDiffusionProcessing], axes: list[dict], execute: Execute
    ) -> tuple[list[Processed], list[bool]]:
        """Generate the cells not done yet, writing each as it arrives. Returns every cell's Processed (with its
        file in `paths`) and, per cell, whether it was read back instead of generated."""
        cells = [cell_id(p) for p in processings]
        results: list[Processed | None] = []
        for p, cell in zip(processings, cells):
            entry = self.finished(cell)
            results.append(self.read_back(p, entry) if entry else None)
        resumed = [result is not None for result in results]
        todo = [index for index, result in enumerate(results) if result is None]

        def on_result(position: int, processed: Processed) -> None:
            index = todo[position]
            if results[index] is None:  # written once, whatever the executor reports
                path = self.write(cells[index], processings[index], processed, axes[index])
                results[index] = dataclasses.replace(processed, paths=[str(path)])

        if todo:
            returned = execute([processings[index] for index in todo], on_result)
            for position, processed in enumerate(returned):  # executors that do not report as they go
                on_result(position, processed)
        return results, resumed


def processed_from_file(p: StableDiffusionProcessing, image: Image.Image, entry: dict, path: Path) -> Processed:
    infotext = image.info.get("parameters", "")
    return Processed(
        images=[image],
        prompt=entry["prompt"],
        negative_prompt=entry["negative_prompt"],
        seed=entry["seed"],
        subseed=entry["subseed"],
        subseed_strength=p.subseed_strength,
        width=image.width,
        height=image.height,
        sampler_name=p.sampler_name,
        scheduler=p.scheduler,
        cfg_scale=p.cfg_scale,
        steps=p.steps,
        batch_size=1,
        all_prompts=[entry["prompt"]],
        all_negative_prompts=[entry["negative_prompt"]],
        all_seeds=[entry["seed"]],
        all_subseeds=[entry["subseed"]],
        infotexts=[infotext],
        styles=list(p.styles),
        sd_model_name=entry.get("model", ""),
        sd_model_hash=entry.get("model_hash", ""),
        seed_resize_from_w=p.seed_resize_from_w,
        seed_resize_from_h=p.seed_resize_from_h,
        denoising_strength=getattr(p, "denoising_strength", None),
        clip_skip=p.clip_skip,
        extra_generation_params=dict(p.extra_generation_params),
        paths=[str(path)],
    )
