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

from modules import generation_fields, images, rng
from modules.processing import Processed, StableDiffusionProcessing

try:
    import fcntl
except ImportError:  # Windows: no advisory lock, one sweep per directory is then the caller's promise
    fcntl = None

MANIFEST = "manifest.jsonl"
RANDOM_SEEDS = "random-seeds.json"
LOCK = ".lock"

# execute(processings, on_result) -> their Processed; on_result(index, processed) as each one finishes.
Execute = Callable[[list[StableDiffusionProcessing], Callable[[int, Processed], None]], list[Processed]]


class FrozenDict(dict):
    """A dict that can be a dict key (its items are hashable); JSON writes it as the dict it is."""

    def __hash__(self):
        return hash(frozenset(self.items()))


def plain(value):
    """A stand-in for a field value that is both hashable (cells are compared by it) and JSON-ready (the manifest):
    lists as tuples, dicts and dataclasses as FrozenDicts, images by their size and pixels' hash."""
    if isinstance(value, Image.Image):
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        return f"image {value.mode} {value.width}x{value.height} sha256:{digest}"
    if isinstance(value, dict):
        return FrozenDict({str(key): plain(item) for key, item in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a ControlNet unit: its fields
        return FrozenDict({f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, (list, tuple)):
        return tuple(plain(item) for item in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def cell_parameters(p: StableDiffusionProcessing, leave_out: tuple[str, ...] = ()) -> FrozenDict:
    """Everything that decides a cell's image: its kind and every field that affects the image (not those saying
    where or whether it is saved), but those in `leave_out`. Equal parameters, equal images."""
    return FrozenDict(
        {"kind": type(p).__name__}
        | {
            declaration.name: plain(getattr(p, declaration.name))
            for declaration in generation_fields.declarations_of(p)
            if declaration.affects_image and declaration.name not in leave_out
        }
    )


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
            **{name: getattr(processed, name) for name in generation_fields.per_image_names()},
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
        return processed_from_file(p.effective(), images.open_image(path), entry, path)

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
    """A done cell's result: its per-image values from its manifest line (the cell's own where an older line lacks
    one), the rest from the cell's job."""
    per_image = {name: [entry.get(name, getattr(p, name))] for name in generation_fields.per_image_names()}
    return Processed.of_job(
        p,
        per_image=per_image,
        images=[image],
        width=image.width,
        height=image.height,
        infotexts=[image.info.get("parameters", "")],
        sd_model_name=entry.get("model", ""),
        sd_model_hash=entry.get("model_hash", ""),
        paths=[str(path)],
    )
