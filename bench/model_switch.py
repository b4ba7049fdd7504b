"""Model switch: load A, load B, back to A, ten times; seconds per switch and resident memory after each, to show
that switching frees the old model (no growth over the switches)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path


def resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def run(switches: int = 10) -> dict:
    from modules import sd_models
    from modules.default_model import DEFAULT_MODEL_DIR

    with tempfile.TemporaryDirectory() as temp:
        model_b = Path(temp) / "model-b"
        shutil.copytree(DEFAULT_MODEL_DIR, model_b)
        sd_models.load_model()
        seconds, memory = [], []
        for switch in range(switches):
            target = str(model_b) if switch % 2 == 0 else None
            start = time.perf_counter()
            sd_models.load_model(target)
            seconds.append(time.perf_counter() - start)
            memory.append(resident_mib())
        sd_models.load_model()
    growth = memory[-1] - memory[1]
    return {
        "name": "model_switch",
        "median_switch_s": statistics.median(seconds),
        "rss_mib": memory,
        "rss_growth_mib": growth,
        "target": "no growth (< 25 MiB over the switches)",
        "met": growth < 25,
    }
