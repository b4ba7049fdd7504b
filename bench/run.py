"""Serena's benchmark suite: every speed claim as a ratio measured side by side in one run.

    python -m bench [--only NAME ...] [--threads 2]

Prints a table, writes bench/results/bench.json and bench/results/bench.png (ratios against their targets).
Run nothing else on the CPU meanwhile: two torch processes on two cores slow each other 10-20x.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

import modules  # noqa: E402, F401  (the kernel caps, before torch: some benchmarks compare pixels)


def benchmarks() -> dict:
    from bench import (
        attention_cost,
        cold_start,
        lora_cost,
        model_switch,
        preview_cost,
        prompt_language,
        runner_overhead,
        sweep_throughput,
        vs_diffusers,
    )

    return {
        "runner_overhead": runner_overhead.run,
        "serena_vs_diffusers": vs_diffusers.run,
        "sweep_throughput": sweep_throughput.run,
        "cold_start": cold_start.run,
        "model_switch": model_switch.run,
        "prompt_language": prompt_language.run,
        "lora_cost": lora_cost.run,
        "preview_cost": preview_cost.run,
        "attention_cost": attention_cost.run,
    }


def headline(result: dict) -> str:
    for key in ("ratio", "speedup", "seconds", "median_switch_s"):
        if key in result:
            return f"{key}={result[key]:.3f}"
    return ""


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r["name"], r.get("ratio", r.get("speedup"))) for r in results if "ratio" in r or "speedup" in r]
    figure, axes = plt.subplots(figsize=(6, 3))
    axes.barh([name for name, _ in rows], [value for _, value in rows], color="#4a7ab5")
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("ratio (overheads: lower is better; speedups: higher)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(benchmarks()), default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    results = []
    for name, run in benchmarks().items():
        if args.only and name not in args.only:
            continue
        result = run(threads=args.threads) if name == "cold_start" else run()
        results.append(result)
        print(f"{name:<22} {headline(result):<24} target {result['target']:<34} met={result['met']}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "machine": platform.machine(),
        "cpu_threads": args.threads,
        "results": results,
    }
    (RESULTS / "bench.json").write_text(json.dumps(report, indent=2))
    plot(results, RESULTS / "bench.png")
    print(f"wrote {RESULTS / 'bench.json'} and {RESULTS / 'bench.png'}")
    return results


if __name__ == "__main__":
    main()
