"""The scenes model's card figures: the full benchmark and its quick part, timed, and the sample grids.

    python -m training.scenes_model.evaluate [--model serena-scenes] [--out docs/scenes_model] [--threads 2]

Runs the suite (553 prompts x 4 seeds, Euler a, 20 steps, the engine's default CFG 7) and its quick part (25 prompts
x 4 seeds) through `serena_kit.bench`, each timed from a loaded model; prints the card's table (each category's
share with its 95 % Wilson interval, against the issue's target) and writes one grid per category of the first
images of seed 0 (each labelled with its prompt and, when wrong, the checks that failed) to --out.
"""

import argparse
import tempfile
import time
from pathlib import Path

import serena_kit as sk  # first: portable CPU kernels before torch loads
from modules.scenes_model import SCENES_MODEL_NAME
from serena_kit import benchmarks

# Issue 30's targets on the full benchmark (share correct).
TARGETS = {
    "single_object": 0.95,
    "colors": 0.90,
    "two_object": 0.80,
    "counting": 0.60,
    "position": 0.50,
    "color_attr": 0.50,
}


def timed_run(model: str, quick: bool, seeds: int, out_dir: Path) -> tuple[benchmarks.BenchRun, float]:
    start = time.perf_counter()
    run = sk.bench("scenes", model, seeds=seeds, quick=quick, out_dir=out_dir)
    return run, time.perf_counter() - start


def card_table(summary) -> str:
    lines = [
        "| category | images | correct | share | 95 % interval | target | met |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for row in summary.itertuples():
        if row.category == "overall":
            lines.append(f"| overall (GenEval's score) | {row.images} | {row.correct} | {row.rate:.3f} | | | |")
            continue
        target = TARGETS[row.category]
        met = "yes" if row.rate >= target else "**no**"
        lines.append(
            f"| {row.category} | {row.images} | {row.correct} | {row.rate:.3f} | [{row.ci_low:.3f}, {row.ci_high:.3f}]"
            f" | {target:.2f} | {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=SCENES_MODEL_NAME)
    parser.add_argument("--out", type=Path, default=Path("docs/scenes_model"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=benchmarks.DEFAULT_SEEDS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    sk.load_model(args.model)  # the load is not part of either timing
    with tempfile.TemporaryDirectory() as folder:
        quick, quick_seconds = timed_run(args.model, True, args.seeds, Path(folder) / "quick")
        full, full_seconds = timed_run(args.model, False, args.seeds, Path(folder) / "full")
        print(
            f"quick: {len(quick.rows)} images in {quick_seconds:.1f} s ({quick_seconds / len(quick.rows):.3f} s each)"
        )
        print(
            f"full: {len(full.rows)} images in {full_seconds / 60:.1f} min ({full_seconds / len(full.rows):.3f} s each)"
        )
        print(card_table(full.summary()))
        print("quick run:", quick.summary().loc[:, ["category", "rate"]].to_dict("records"))
        args.out.mkdir(parents=True, exist_ok=True)
        first_seed = full.rows[full.rows["seed"] == 0]
        failed = full.failures()
        labelled = first_seed.merge(failed[["prompt_index", "seed", "failed"]], how="left", on=["prompt_index", "seed"])
        labelled["failed"] = labelled["failed"].fillna("")
        for category in benchmarks.load_suite("scenes").categories:
            rows = labelled[labelled["category"] == category].head(8)
            full.grid(rows, columns=4, title=category.replace("_", " ")).save(args.out / f"samples_{category}.png")
        print(f"wrote {args.out}/samples_*.png")


if __name__ == "__main__":
    main()
