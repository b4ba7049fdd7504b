"""What the prompt language costs: a 20-step default-model generation with a plain prompt, against the same with
emphasis and with prompt editing, run alternately in one process (drift hits all three alike).

The model's prompt cache is emptied before every generation, so each one pays for parsing and encoding its texts
(an editing prompt encodes two), the worst case; in a sweep the encodings are cached after the first cell.

Last line: prompt_language_ratio=<x>, the larger of the two ratios of medians (target <= 1.05).

    python bench/prompt_language.py [--runs 20] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import modules  # noqa: E402, F401  (portable CPU kernels, before torch loads)
from bench.timing import alternate  # noqa: E402

PROMPTS = {
    "plain": "a red circle on a blue background",
    "emphasis": "a (red:1.3) circle on a [blue] background",
    "editing": "a [red:green:0.5] circle on a blue background",
}


def run(runs: int = 20, steps: int = 20) -> dict:
    from modules import sd_models
    from modules.processing import StableDiffusionProcessingTxt2Img, process_images

    model = sd_models.load_model()

    def generate(prompt: str):
        def call():
            model.prompt_cache.clear()
            job = StableDiffusionProcessingTxt2Img(prompt=prompt, seed=1, steps=steps, do_not_save_samples=True)
            return process_images(job)

        return call

    calls = [generate(prompt) for prompt in PROMPTS.values()]
    for call in calls:
        call()  # warm-up: first-call allocations and the parsers' grammars
    times = dict(zip(PROMPTS, alternate(calls, runs)))
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    ratios = {name: medians[name] / medians["plain"] for name in ("emphasis", "editing")}
    ratio = max(ratios.values())
    return {
        "name": "prompt_language",
        "ratio": ratio,
        "target": "<= 1.05",
        "met": ratio <= 1.05,
        "runs": runs,
        "steps": steps,
        "median_ms": {name: median * 1000 for name, median in medians.items()},
        "emphasis_ratio": ratios["emphasis"],
        "editing_ratio": ratios["editing"],
        "prompts": PROMPTS,
    }


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="generations per prompt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = run(args.runs, args.steps)
    print(f"runs={args.runs} steps={args.steps} threads={args.threads}")
    for name, prompt in PROMPTS.items():
        print(f"{name:<9} {result['median_ms'][name]:8.2f} ms  {prompt}")
    print(f"emphasis/plain {result['emphasis_ratio']:.4f}  editing/plain {result['editing_ratio']:.4f}")
    print(f"prompt_language_ratio={result['ratio']:.4f}")
    return result["ratio"]


if __name__ == "__main__":
    main()
