"""The benchmark runner: one row per image with each category's verdict, kept as Parquet beside the images, an
interrupted or repeated run does not redo finished images, settings crossed with `vary`, and summaries with
intervals. Run on the default model (the suite's mechanics; its scores mean nothing for that model)."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from serena_kit import benchmarks as bench
from serena_kit.cli import main

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


def test_vary_takes_the_sweeps_axes_short_names_and_lora_weights(tmp_path):
    run = bench.bench(
        "scenes",
        MODEL,
        seeds=1,
        quick=True,
        out_dir=tmp_path,
        steps=1,
        vary={"sampler": ["Euler"], "lora:ring": [0, 1]},
    )
    assert len(run.folders) == 2 and all((folder / "rows.parquet").is_file() for folder in run.folders)
    assert set(run.rows["setting_sampler_name"]) == {"Euler"} and sorted(set(run.rows["setting_lora:ring"])) == [0, 1]
    assert bench.varied_settings(run.rows) == ["lora:ring"]
    # The LoRA is applied (its tag goes into the job's prompt); the rows keep the suite's prompt, which is scored.
    without, with_ring = (run.rows[run.rows["setting_lora:ring"] == weight] for weight in (0, 1))
    assert list(without["prompt"]) == list(with_ring["prompt"])
    infotexts = [
        Image.open(folder / "images" / name).info["parameters"]
        for folder, name in ((run.folders[0], without["image"].iloc[0]), (run.folders[1], with_ring["image"].iloc[0]))
    ]
    assert "<lora:ring:0>" in infotexts[0] and "<lora:ring:1>" in infotexts[1]


def test_vary_is_checked_before_the_first_image(tmp_path):
    with pytest.raises(ValueError, match=r"vary\['sampler'\]: sampler_name is also given as a fixed setting"):
        bench.bench("scenes", MODEL, quick=True, out_dir=tmp_path, sampler_name="Euler", vary={"sampler": ["DDIM"]})
    with pytest.raises(ValueError, match=r"vary\['colour'\]: 'colour' cannot be swept; valid: "):
        bench.bench("scenes", MODEL, quick=True, out_dir=tmp_path, vary={"colour": [1]})
    with pytest.raises(ValueError, match="^seed: the benchmark sets it"):
        bench.bench("scenes", MODEL, quick=True, out_dir=tmp_path, vary={"seed": [1, 2]})
    with pytest.raises(ValueError, match="^prompt: the benchmark sets it"):
        bench.bench("scenes", MODEL, quick=True, out_dir=tmp_path, prompt="a photo of a cat")
    with pytest.raises(ValueError, match="no LoRA named 'nope'"):
        bench.bench("scenes", MODEL, quick=True, out_dir=tmp_path, vary={"lora:nope": [1]})
    assert not list(tmp_path.iterdir())


def test_the_cli_runs_a_suite_prints_the_rows_files_and_the_summary(tmp_path, capsys):
    csv = tmp_path / "summary.csv"
    code = main(
        ["bench", "--model", MODEL, "--quick", "--seeds", "1", "--set", "steps=1", "--vary", "cfg_scale=2,7"]
        + ["--outdir", str(tmp_path / "runs"), "--csv", str(csv), "--quiet"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    files = out.splitlines()
    assert len(files) == 2 and all(Path(line).is_file() and line.endswith("rows.parquet") for line in files)
    summary = pd.read_csv(csv)
    assert sorted(summary.loc[summary["category"] == "overall", "setting_cfg_scale"]) == [2, 7]
    assert "overall" in err and "ci_low" in err
    # Again: nothing is generated, the same files are printed.
    assert (
        main(
            ["bench", "--model", MODEL, "--quick", "--seeds", "1", "--set", "steps=1", "--vary", "cfg_scale=2,7"]
            + ["--outdir", str(tmp_path / "runs"), "--quiet"]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == files


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--set", "colour=red"], "--set: colour is not a generation setting; valid: "),
        (["--set", "cfg_scale=2,7"], "--set: cfg_scale takes one value"),
        (["--vary", "cfg_scale=lots"], "--vary: cfg_scale: "),
        (["--vary", "steps"], "--vary: expected NAME=VALUE[,VALUE...]"),
        (["--model", "nope"], "sd_model_checkpoint: no model 'nope'"),
    ],
)
def test_the_cli_names_the_bad_option_in_one_line(tmp_path, capsys, arguments, message):
    model = [] if "--model" in arguments else ["--model", MODEL]
    code = main(["bench", *model, "--quick", "--outdir", str(tmp_path), *arguments])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
