"""Same bytes on every machine: two CPU generations simulated on one host by forcing each library's kernel path.

A machine without AVX-512 is simulated with the AVX2 settings, one with it by the libraries' own choice (on a CPU
without AVX-512 that choice is AVX2, and there is nothing to tell apart). Each run is a fresh process (the paths are
fixed when torch loads) that makes the golden images and one batched sweep.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from golden_cases import GOLDEN_DIR, golden_jobs
from helpers import sha, unmeasured

from modules import determinism

pytestmark = pytest.mark.whole_machine  # generations at two thread counts

PROBE = Path(__file__).resolve().parent.parent / "determinism_probe.py"
CAP_VARIABLES = tuple(determinism.PORTABLE_ENVIRONMENT)
AVX2_MACHINE = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
AVX512_MACHINE = {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
OWN_CHOICE: dict = {}  # no caps: each library picks by this CPU (forcing AVX-512 where it is missing is SIGILL)


def probe(machine: dict, mode: str | None, threads: int = 1, torch_first: bool = False) -> dict:
    environment = {key: value for key, value in unmeasured().items() if key not in CAP_VARIABLES}
    environment.pop(determinism.MODE_VARIABLE, None)
    environment |= machine | ({determinism.MODE_VARIABLE: mode} if mode else {})
    command = [sys.executable, str(PROBE), str(threads)] + (["--torch-first"] if torch_first else [])
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, f"exit {completed.returncode}: {completed.stderr[-2000:]}"
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def native_runs():
    avx512 = probe(OWN_CHOICE, determinism.NATIVE)
    if avx512["capability"] != "AVX512":
        pytest.skip(f"this CPU has no AVX-512 (torch picks {avx512['capability']}): nothing to tell apart")
    return probe(AVX2_MACHINE, determinism.NATIVE), avx512


def test_without_portable_mode_two_cpu_generations_give_other_bytes(native_runs):
    avx2, avx512 = native_runs
    assert (avx2["capability"], avx512["capability"]) == ("AVX2", "AVX512")
    differing = [name for name in avx2["pixels"] if avx2["pixels"][name] != avx512["pixels"][name]]
    assert differing, "the AVX2 and AVX-512 paths gave identical pixels: the simulation shows nothing"


def test_portable_mode_gives_the_committed_bytes_on_both_cpu_generations_at_any_thread_count():
    import determinism_probe

    here = determinism_probe.hashes()  # this suite's process: portable, this CPU, one thread
    simulated = probe(AVX512_MACHINE, None, threads=2)  # portable is the default: the caps override the machine's
    assert here["capability"] == simulated["capability"] == determinism.PORTABLE_CAPABILITY
    assert here["png"] == simulated["png"]
    for name in golden_jobs():
        assert here["png"][name] == sha((GOLDEN_DIR / f"{name}.png").read_bytes()), name


def test_torch_imported_first_still_gives_the_committed_bytes():
    """Most notebooks start with `import torch`: the caps are read at the first CPU operation, so Serena imported
    next still sets them in time (on this CPU without Serena: see the native runs)."""
    torch_first = probe(OWN_CHOICE, None, threads=2, torch_first=True)
    assert torch_first["capability"] == determinism.PORTABLE_CAPABILITY
    for name in golden_jobs():
        assert torch_first["png"][name] == sha((GOLDEN_DIR / f"{name}.png").read_bytes()), name


def kernel_warnings(code_before_serena: str) -> tuple[int, str, str]:
    """(warnings, first message, torch's capability) of a fresh process that runs `code_before_serena`, imports
    modules and checks its kernels twice."""
    code = (
        f"import warnings, torch\n{code_before_serena}\nimport modules\n"
        "from modules import determinism\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    determinism.check_cpu_kernels(); determinism.check_cpu_kernels()\n"
        "print(len(caught)); print(torch.backends.cpu.get_cpu_capability())\n"
        "print(caught[0].message if caught else '')\n"
    )
    environment = {key: value for key, value in os.environ.items() if key not in CAP_VARIABLES}
    environment.pop(determinism.MODE_VARIABLE, None)
    completed = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    count, capability, message = completed.stdout.split("\n", 2)
    return int(count), message, capability


def test_torch_imported_first_needs_no_warning():
    count, message, capability = kernel_warnings("")
    assert (count, message.strip()) == (0, ""), message
    if determinism.applies_here():
        assert capability == determinism.PORTABLE_CAPABILITY


def test_a_tensor_operation_before_serena_is_reported_once_with_the_fix():
    count, message, capability = kernel_warnings("torch.zeros(2) + 1")
    if not determinism.applies_here() or capability == determinism.PORTABLE_CAPABILITY:
        # Arm, or a CPU without AVX-512: the native paths are the capped ones, there is nothing to warn about
        assert count == 0, message
        return
    assert count == 1, message
    assert "a CPU tensor operation ran before serena_kit/modules was imported" in message
    assert "ATEN_CPU_CAPABILITY=avx2" in message
