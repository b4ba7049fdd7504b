"""Cold start: a fresh process imports Serena, loads the default model and makes the first image.
Seconds from process start (target < 10 s on the 2-core CPU machine) and the process's peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, resource, time
start = time.time()
import torch
torch.set_num_threads({threads})
from serena_kit import txt2img, load_model
imported = time.time()
load_model()
loaded = time.time()
txt2img("a red circle on a blue background", seed=1)
done = time.time()
print(json.dumps({{"imported": imported, "loaded": loaded, "done": done,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def run(threads: int = 2) -> dict:
    root = Path(__file__).resolve().parent.parent
    start = time.time()
    output = subprocess.run(
        [sys.executable, "-c", CHILD.format(threads=threads)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env=None,
    ).stdout
    marks = json.loads(output.strip().splitlines()[-1])
    total = marks["done"] - start
    return {
        "name": "cold_start",
        "seconds": total,
        "target": "< 10 s",
        "met": total < 10,
        "import_s": marks["imported"] - start,
        "load_s": marks["loaded"] - marks["imported"],
        "first_image_s": marks["done"] - marks["loaded"],
        "peak_rss_mib": marks["peak_rss_mib"],
    }
