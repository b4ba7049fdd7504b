"""The golden jobs and one batched sweep under whatever kernel settings the process has, as hashes of the PNG files
and of the pixels alone (native mode records its kernels in the infotext, so its files differ by their text too).
test/quality/test_portable_determinism.py runs it in fresh processes (one JSON line) and in the suite's own.

    python test/determinism_probe.py THREADS [--torch-first]

With --torch-first, torch is imported before Serena, as most notebooks begin.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

if "--torch-first" in sys.argv:
    import torch  # noqa: F401

import modules  # noqa: E402, F401  (the kernel caps, before any tensor operation)

# isort: split
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hashes() -> dict:
    """The kernel path, and the hashes of the golden jobs' and the sweep's PNG files and pixels, made here."""
    from golden_cases import generate, golden_jobs

    import serena_kit as sk
    from modules.images import png_bytes

    png = {name: generate(name) for name in golden_jobs()}
    base = {"prompt": "a red circle on a blue background", "seed": 7, "steps": 10, "do_not_save_samples": True}
    result = sk.sweep(base, x=("cfg_scale", [3, 7]), y=("seed", [7, 8]))  # four cells, one batched engine call
    png["sweep"] = b"".join(png_bytes(cell.image, cell.image.info["parameters"]) for cell in result.cells)
    pixels = {name: sha(Image.open(io.BytesIO(data)).tobytes()) for name, data in png.items() if name != "sweep"}
    pixels["sweep"] = sha(b"".join(cell.image.tobytes() for cell in result.cells))
    capability = torch.backends.cpu.get_cpu_capability()
    return {"capability": capability, "png": {k: sha(v) for k, v in png.items()}, "pixels": pixels}


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]))
    print(json.dumps(hashes()))


if __name__ == "__main__":
    main()
