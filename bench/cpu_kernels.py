"""What portable CPU kernels cost: 20-step generations under each kernel setting, side by side in one run.

    python -m bench.cpu_kernels                 # the default model at 32 px
    python -m bench.cpu_kernels --sd15 256      # also an SD 1.5-architecture model (random weights) at 256 px

Settings: `native` (each library picks this CPU's fastest path, oneDNN convolutions) and `portable` (Serena's
default: AVX2 caps, ATen's own convolutions). Kernel paths are fixed when torch loads, so every setting runs in its
own process; the processes alternate round by round. Each also generates (4 steps) at 1 and 2 threads to show
whether the bytes depend on the thread count.
Run nothing else on the CPU meanwhile.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {
    "native": {"SERENA_CPU_KERNELS": "native"},
    "portable": {"SERENA_CPU_KERNELS": "portable"},
}
PROMPT = "a red circle on a blue background"
HASH_STEPS = 4


def child(model: str | None, size: int | None, steps: int, runs: int, threads: int) -> dict:
    """Runs inside one setting's process: warm-up, then `runs` timed generations; hashes at 1 and 2 threads."""
    import modules  # noqa: F401  (the caps, before torch)

    # isort: split
    import torch

    from modules import determinism
    from modules.images import png_bytes
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    def generate(steps: int = steps) -> str:
        p = StableDiffusionProcessingTxt2Img(
            prompt=PROMPT, seed=1, steps=steps, width=size, height=size, sd_model_checkpoint=model,
            do_not_save_samples=True, do_not_save_grid=True,
        )  # fmt: skip
        image = process_images(p).images[0]
        return hashlib.sha256(png_bytes(image, None)).hexdigest()[:16]

    hashes = {}
    for count in (1, 2):  # a few steps tell whether bytes depend on the thread count
        torch.set_num_threads(count)
        hashes[count] = generate(HASH_STEPS)
    torch.set_num_threads(threads)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        generate()
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "hashes": hashes, "kernels": determinism.cpu_kernels()}


def run_setting(setting: str, model: str | None, size: int | None, steps: int, runs: int, threads: int) -> dict:
    from modules import determinism

    caps = determinism.PORTABLE_ENVIRONMENT  # each setting decides them afresh, not this process's
    environment = {key: value for key, value in os.environ.items() if key not in caps}
    environment |= SETTINGS[setting] | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    arguments = json.dumps([model, size, steps, runs, threads])
    output = subprocess.run(
        [sys.executable, "-m", "bench.cpu_kernels", "--child", arguments],
        env=environment, cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def compare(label: str, model: str | None, size: int | None, steps: int, rounds: int, runs: int, threads: int):
    results: dict[str, dict] = {setting: {"seconds": []} for setting in SETTINGS}
    for _ in range(rounds):
        for setting in SETTINGS:
            result = run_setting(setting, model, size, steps, runs, threads)
            results[setting]["seconds"] += result["seconds"]
            results[setting] |= {"hashes": result["hashes"], "kernels": result["kernels"]}
    native = statistics.median(results["native"]["seconds"])
    rows = []
    for setting, result in results.items():
        median = statistics.median(result["seconds"])
        hashes = result["hashes"]
        rows.append(
            {
                "model": label,
                "setting": setting,
                "cpu_capability": result["kernels"]["cpu_capability"],
                "median_s": median,
                "min_s": min(result["seconds"]),
                "max_s": max(result["seconds"]),
                "ratio_to_native": median / native,
                "same_bytes_1_vs_2_threads": hashes["1"] == hashes["2"],
                "hash_1_thread": hashes["1"],
            }
        )
    return rows


def build_sd15(folder: Path) -> str:
    import torch

    from bench.gpu import build_random_pipeline

    build_random_pipeline(folder, tiny=False, dtype=torch.float32, device=torch.device("cpu"))
    return str(folder)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sd15", type=int, metavar="SIZE", help="also time an SD 1.5-architecture model at SIZE px")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads for the timed runs")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*json.loads(args.child))))
        return []
    rows = compare("default model, 32 px", None, None, args.steps, args.rounds, 5, args.threads)
    if args.sd15:
        with tempfile.TemporaryDirectory() as folder:
            model = build_sd15(Path(folder) / "sd15")
            rows += compare(f"SD 1.5 architecture, {args.sd15} px", model, args.sd15, args.steps, 1, 1, args.threads)
    print(f"{'model':<28} {'setting':<20} {'path':<8} {'median s':>9} {'vs native':>9}  same bytes at 1/2 threads")
    for row in rows:
        print(
            f"{row['model']:<28} {row['setting']:<20} {row['cpu_capability']:<8} {row['median_s']:>9.3f} "
            f"{row['ratio_to_native']:>9.3f}  {row['same_bytes_1_vs_2_threads']}"
        )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "cpu_kernels.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
