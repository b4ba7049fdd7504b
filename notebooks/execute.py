"""Re-execute the notebooks in place, so their committed outputs are the ones CI's nbval compares against.

    python notebooks/execute.py                       # every notebook
    python notebooks/execute.py notebooks/03_sweeps.ipynb

Run it with the project's venv when outputs change on purpose (new default weights, a changed engine), review
the diff (`git diff --stat notebooks/`, and the printed image hashes), then commit the notebooks.

Outputs are made the way CI re-makes them: this interpreter's kernel, portable CPU kernels (whatever
SERENA_CPU_KERNELS says), one thread, the CPU, the embedded default model on the plain path (SERENA_MODEL,
SERENA_DTYPE and SERENA_FAST_PATH are ignored here), so the image hashes printed in the notebooks match CI's.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from modules import determinism

NOTEBOOKS_DIR = Path(__file__).resolve().parent
PINNED_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",  # what the notebooks' own timings assume; portable bytes do not depend on it
    "MKL_NUM_THREADS": "1",
    "SERENA_DEVICE": "cpu",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_OFFLINE": "1",
}
CELL_TIMEOUT_S = 600


def pin_kernel_environment() -> None:
    """The kernel inherits this process's environment."""
    os.environ.update(PINNED_ENVIRONMENT | determinism.PORTABLE_ENVIRONMENT)
    for name in ("SERENA_MODEL", "SERENA_DTYPE", "SERENA_FAST_PATH", determinism.MODE_VARIABLE):  # other models, or options that move pixels
        os.environ.pop(name, None)


def execute_in_place(path: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",  # "python" in the kernelspec resolves to this interpreter (jupyter_client)
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,  # no timestamps in the committed files
        store_widget_state=False,  # widget model ids change every run; the notebooks show results as images too
    )
    started = time.perf_counter()
    client.execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    pin_kernel_environment()
    for path in paths:
        seconds = execute_in_place(path.resolve())
        print(f"{path.name}: executed in {seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
