#!/usr/bin/env bash
# Issue 20's whole GPU measurement in one command, from the repository root of a fresh CUDA machine:
#
#     bash bench/gpu_run.sh [more bench/gpu.py arguments, e.g. --variants max-autotune]
#
# (With --tiny it runs on CPU without looking for CUDA: how the tests check this script.)
# Ends within GPU_RUN_BUDGET_S seconds (default 450, under 8 minutes): bench/gpu.py skips the parts that would not
# fit, and a timeout stops it otherwise; the tables are then made from what it measured. Writes gpu.json, gpu.log and
# gpu.md (the markdown tables, also printed) to $OUT when set, else to bench/results/gpu_run/. Its parts and their
# estimated costs: docs/benchmarks.md, "GPU run pending (issue 20)".
set -uo pipefail

budget=${GPU_RUN_BUDGET_S:-450}
out=${OUT:-bench/results/gpu_run}
python=${PYTHON:-python3}
mkdir -p "$out"
exec > >(tee "$out/gpu.log") 2>&1
left() { echo $((budget - SECONDS)); }
within() { # seconds left once $1 more are kept back, at least 1
    local seconds=$(($(left) - $1))
    echo $((seconds > 1 ? seconds : 1))
}
tiny=false
for argument in "$@"; do [ "$argument" = --tiny ] && tiny=true; done

# 1. torch with CUDA: the machine's own; installed from the package index only when absent (gigabytes).
has_cuda_torch() {
    timeout 120 "$python" -c 'import sys, torch
print("torch", torch.__version__, "CUDA available:", torch.cuda.is_available())
sys.exit(0 if torch.cuda.is_available() else 1)'
}
if ! $tiny && ! has_cuda_torch; then
    echo "no CUDA-enabled torch here; trying the package index"
    timeout "$(within 240)" "$python" -m pip install --quiet torch || true
    has_cuda_torch || { echo "no GPU usable from torch: nothing to measure"; exit 2; }
fi
$tiny || nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true

# 2. the benchmark's other packages, only those missing (from bench/wheels/ when carried there).
timeout 180 "$python" bench/gpu_setup.py || { echo "missing packages could not be installed"; exit 2; }

# 3. the measurement, with a compile cache of its own: the first compiles are cold, the warm start reuses them.
cache=$(mktemp -d /tmp/serena-gpu-run-cache.XXXXXX)
export SERENA_COMPILE_CACHE=$cache TORCHINDUCTOR_CACHE_DIR=$cache TRITON_CACHE_DIR=$cache/triton PYTHONUNBUFFERED=1
reserve=20  # the tables, and bench/gpu.py's own start before it counts its budget
timeout --kill-after=10 "$(within $reserve)" "$python" bench/gpu.py --batches 1 16 --compile-batches 16 1 \
    --budget-s "$(within $((2 * reserve)))" --out "$out/gpu.json" "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "bench/gpu.py stopped by the time guard; the tables hold what it measured before"
fi

# 4. the tables as a file (bench/gpu.py printed them when it finished), also from a partial run.
if [ -f "$out/gpu.json" ]; then
    "$python" bench/gpu_report.py "$out/gpu.json" >"$out/gpu.md"
    [ "$status" -eq 0 ] || cat "$out/gpu.md"
fi
echo "gpu_run.sh: ${SECONDS} s in all, bench/gpu.py exit status $status"
exit "$status"
