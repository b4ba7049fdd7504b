"""The benchmark runner: one row per image with each category's verdict, kept as Parquet beside the images, an
interrupted or repeated run does not redo finished images, settings crossed with `vary`, and summaries with
intervals. Run on the default model (the suite's mechanics; its scores mean nothing for that model)."""

import json
import math

import pandas as pd
import pytest

from serena_kit import benchmarks as bench

MODEL = "serena-default"


def test_a_quick_run_keeps_rows_and_images_and_resumes(tmp_path):
    calls = []
    run = bench.bench(
        "scenes",
        MODEL,
        seeds=1,
        quick=True,
        out_dir=tmp_path,
        steps=2,
        batch_size=13,
        progress=lambda done, total: calls.append((done, total)),
    )
    rows = run.rows
    assert len(rows) == len(bench.quick_prompts(bench.load_suite("scenes"))) == run.generated >= 24
    assert set(rows["category"]) == set(bench.load_suite("scenes").categories)
    assert {"correct", "objects", "position", "model_hash", "setting_steps", "seed", "image"} <= set(rows.columns)
    assert calls[-1] == (len(rows), len(rows))
    kept = pd.read_parquet(run.folder / "rows.parquet")
    assert kept.sort_values(["prompt_index", "seed"]).reset_index(drop=True).equals(rows)
    assert all((run.folder / "images" / name).is_file() for name in rows["image"])
    assert json.loads((run.folder / "run.json").read_text())["setting_steps"] == 2
    # Again, and with one more seed: only the new seed's images are made.
    again = bench.bench("scenes", MODEL, seeds=2, quick=True, out_dir=tmp_path, steps=2)
    assert again.generated == len(rows) and len(again.rows) == 2 * len(rows)
    assert again.rows[again.rows["seed"] == 0].reset_index(drop=True)["image"].equals(rows["image"])
    assert len(bench.load_bench_runs(tmp_path)) == 2 * len(rows)


def test_vary_crosses_the_suite_with_settings_one_run_each(tmp_path):
    run = bench.bench("scenes", MODEL, seeds=1, quick=True, out_dir=tmp_path, steps=1, vary={"cfg_scale": [2, 7]})
    assert sorted(set(run.rows["setting_cfg_scale"])) == [2, 7]
    assert len(list(tmp_path.glob("*/rows.parquet"))) == 2
    summary = bench.summarize(run.rows, by=["setting_cfg_scale"])
    overall = summary[summary["category"] == "overall"]
    assert len(overall) == 2 and overall["rate"].between(0, 1).all()


def test_summary_rates_and_wilson_intervals():
    rows = pd.DataFrame({"category": ["a"] * 10 + ["b"] * 4, "correct": [True] * 7 + [False] * 3 + [True] * 4})
    summary = bench.summarize(rows).set_index("category")
    assert summary.loc["a", "rate"] == 0.7 and summary.loc["b", "rate"] == 1.0
    assert summary.loc["overall", "rate"] == pytest.approx(0.85)  # GenEval: the mean of the category rates
    low, high = bench.wilson_interval(7, 10)
    assert (round(low, 3), round(high, 3)) == (0.397, 0.892)
    assert bench.wilson_interval(4, 4)[1] == 1.0 and math.isnan(bench.wilson_interval(0, 0)[0])


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="suite: unknown suite 'geneval'; available: scenes"):
        bench.bench("geneval", MODEL)
    with pytest.raises(ValueError, match="seeds: 0 is not allowed"):
        bench.bench("scenes", MODEL, seeds=0)
