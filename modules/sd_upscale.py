"""The webui's "SD upscale" img2img script: upscale the init image, cut it into tiles of the job's size that overlap
by `overlap` pixels, run img2img on every tile, and lay the tiles back together, blending each overlap with a linear
ramp. As in the webui, the job's batch size is how many tiles run at once, each batch of tiles takes the next seed
(the first batch the job's seed), and each of `n_iter` upscales starts from the job's seed + its index.

Tiles are placed as the webui's `split_grid` places them (evenly spread, the last flush with the edge) and blended
as its `combine_grid` blends them, so a result has the webui's geometry; the code is Serena's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modules import images, masking, processing, rng, sd_models, upscalers

OVERLAP_KEY = "SD upscale overlap"
UPSCALER_KEY = "SD upscale upscaler"
MAX_TILES = 256  # per upscale: a 4096 px image in 256 px tiles


@dataclass
class TileRow:
    y: int
    height: int
    tiles: list[tuple[int, int, Image.Image]]  # (x, width, image)


@dataclass
class TileGrid:
    rows: list[TileRow]
    tile_width: int
    tile_height: int
    width: int
    height: int
    overlap: int

    def images(self) -> list[Image.Image]:
        return [tile for row in self.rows for _, _, tile in row.tiles]

    def with_images(self, replacements: list[Image.Image]) -> TileGrid:
        """The grid with its tiles' images replaced, in reading order."""
        it = iter(replacements)
        rows = [TileRow(row.y, row.height, [(x, w, next(it)) for x, w, _ in row.tiles]) for row in self.rows]
        return dataclasses.replace(self, rows=rows)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles of `tile` px start along a side of `size` px: as few as cover it with at least `overlap` px of
    overlap, spread evenly, the last flush with the end."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    step = (size - tile) / (count - 1)
    return [min(int(index * step), size - tile) for index in range(count)]


def split_tiles(image: Image.Image, tile_width: int, tile_height: int, overlap: int) -> TileGrid:
    rows = [
        TileRow(
            y,
            tile_height,
            [
                (x, tile_width, image.crop((x, y, x + tile_width, y + tile_height)))
                for x in tile_starts(image.width, tile_width, overlap)
            ],
        )  # fmt: skip
        for y in tile_starts(image.height, tile_height, overlap)
    ]
    return TileGrid(rows, tile_width, tile_height, image.width, image.height, overlap)


def ramp(length: int, across: int, horizontal: bool) -> Image.Image:
    """An 8-bit mask rising linearly from 0 over `length` px (the overlap), `across` px wide the other way."""
    values = (np.arange(length, dtype=np.float32) * 255 / max(length, 1)).astype(np.uint8)
    block = np.repeat(values[None, :], across, 0) if horizontal else np.repeat(values[:, None], across, 1)
    return Image.fromarray(block, "L")


def combine_tiles(grid: TileGrid) -> Image.Image:
    """The tiles laid back together: each tile after the first in a row (and each row after the first) fades in
    over the overlap."""
    overlap = grid.overlap
    combined = Image.new("RGB", (grid.width, grid.height))
    for row in grid.rows:
        strip = Image.new("RGB", (grid.width, row.height))
        for x, width, tile in row.tiles:
            if x == 0 or overlap == 0:
                strip.paste(tile, (x, 0))
                continue
            strip.paste(tile.crop((0, 0, overlap, row.height)), (x, 0), ramp(overlap, row.height, True))
            strip.paste(tile.crop((overlap, 0, width, row.height)), (x + overlap, 0))
        if row.y == 0 or overlap == 0:
            combined.paste(strip, (0, row.y))
            continue
        combined.paste(strip.crop((0, 0, grid.width, overlap)), (0, row.y), ramp(overlap, grid.width, False))
        combined.paste(strip.crop((0, overlap, grid.width, row.height)), (0, row.y + overlap))
    return combined


def check_arguments(overlap, upscaler, scale, field: str = "script_args") -> None:
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= 256:
        raise ValueError(f"{field}: the tile overlap {overlap!r} is not allowed; allowed 0..256 pixels")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 <= scale <= 8:
        raise ValueError(f"{field}: the scale factor {scale!r} is not allowed; allowed 1..8")
    upscalers.check_name(field, upscaler)
    if upscalers.is_latent(upscaler):
        raise ValueError(f"{field}: {upscaler} is a latent mode; SD upscale takes an image upscaler")


def run(p: processing.StableDiffusionProcessingImg2Img, overlap: int, upscaler: str, scale: float):
    """SD upscale of `p`'s first init image; a Processed with one combined image per upscale (n_iter)."""
    check_arguments(overlap, upscaler, scale)
    p.validate()
    native = sd_models.configured_native_size(sd_models.resolve_checkpoint(p.effective().sd_model_checkpoint))
    tile_width, tile_height = p.width or native or 512, p.height or native or 512
    if overlap >= min(tile_width, tile_height):
        raise ValueError(f"script_args: the overlap {overlap} is not below the tile size {tile_width}x{tile_height}")
    source = masking.flatten(p.init_images[0])
    size = (int(source.width * scale), int(source.height * scale))
    upscaled = source if upscaler == "None" else upscalers.upscale_image(source, *size, upscaler)
    if upscaled.width < tile_width or upscaled.height < tile_height:
        upscaled = upscaled.resize((max(upscaled.width, tile_width), max(upscaled.height, tile_height)))
    grid = split_tiles(upscaled, tile_width, tile_height, overlap)
    work = grid.images()
    if len(work) > MAX_TILES:
        raise ValueError(f"script_args: {len(work)} tiles of {tile_width}x{tile_height}; at most {MAX_TILES}")
    extra = dict(p.extra_generation_params) | {OVERLAP_KEY: overlap, UPSCALER_KEY: upscaler}
    first_seed = rng.resolve_seed(p.seed if isinstance(p.seed, int) else p.seed[0])
    results, infotexts, paths, seeds = [], [], [], []
    first = None
    for iteration in range(p.n_iter):
        seed = first_seed + iteration
        done = []
        for start in range(0, len(work), p.batch_size):
            batch = work[start : start + p.batch_size]
            tile_job = dataclasses.replace(
                p,
                init_images=batch,
                seed=seed,
                batch_size=len(batch),
                n_iter=1,
                width=tile_width,
                height=tile_height,
                do_not_save_samples=True,
                do_not_save_grid=True,
                extra_generation_params=extra,
            )
            processed = processing.process_images(tile_job)
            first = first or processed
            seed = processed.seed + 1
            done += processed.images[processed.index_of_first_image :]
            if p.state.interrupted:
                break
        if len(done) < len(work):  # interrupted: the tiles not redone stay as upscaled
            done += work[len(done) :]
        combined = combine_tiles(grid.with_images(done))
        combined.info["parameters"] = first.info
        results.append(combined)
        infotexts.append(first.info)
        seeds.append(first_seed + iteration)
        if not p.do_not_save_samples:
            path = images.save_image(combined, p.outpath_samples, str(first_seed + iteration), first.info,
                                     file_format=p.samples_format)  # fmt: skip
            paths.append(str(path))
        if p.state.interrupted:
            break
    return dataclasses.replace(
        first,
        images=results,
        infotexts=infotexts,
        index_of_first_image=0,
        seed=first_seed,
        all_seeds=seeds,
        width=upscaled.width,
        height=upscaled.height,
        batch_size=p.batch_size,
        paths=paths,
    )
