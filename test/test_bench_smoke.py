"""Benchmark scripts run end to end with tiny settings; they check what a benchmark reports, never how fast anything is.

The GPU benchmark's one command runs on CPU with a tiny config (CI never has a GPU): every part that can run on CPU
runs, what needs CUDA says so, and the tables come out of the JSON. The runner overhead reports its two figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import unmeasured

from bench import gpu_report, gpu_variants, prompt_language, runner_overhead

pytestmark = pytest.mark.whole_machine  # the GPU benchmark's CPU run compiles on every core

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    done = subprocess.run(
        ["bash", "bench/gpu_run.sh", "--tiny", "--batches", "1", "2", "--compile-batches", "2", "1", "--steps", "3"],
        cwd=ROOT,
        env=unmeasured() | dict(OUT=str(out), GPU_RUN_BUDGET_S="400", PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert done.returncode == 0, done.stdout[-4000:]
    return json.loads((out / "gpu.json").read_text()), out


def test_raw_default_and_fast_paths_are_measured(tiny_run):
    report, _ = tiny_run
    assert [row["batch"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["raw"]["it_s"] > 0 and row["default"]["it_s"] > 0 and row["fast"]["it_s"] > 0
        assert row["default"]["e2e_images_s"] > 0 and row["fast"]["decode_ms_per_image"] > 0
        assert row["fast"]["pixels_ok"]  # fused QKV only on CPU: a rounding-level change
    assert set(report["vae_decode_ms_per_image"]) == {"1", "2"}


def test_every_variant_is_measured_or_says_why_not(tiny_run):
    report, _ = tiny_run
    variants = {entry["name"]: entry for entry in report["variants"]}
    assert list(variants) == gpu_variants.DEFAULT_VARIANTS
    for name in ("channels-last", "sdpa-flash", "sdpa-math", "bf16"):
        assert variants[name]["status"] == "measured", variants[name]
        assert variants[name]["image_steps_s"] > 0 and variants[name]["e2e_images_s"] > 0
    for name in ("channels-last", "sdpa-flash", "sdpa-math"):
        assert variants[name]["pixels_ok"], variants[name]
    assert variants["channels-last"]["fast_path"] == "fused-qkv"  # same maths: not in the infotext
    assert variants["sdpa-math"]["fast_path"] == "fused-qkv+sdpa-math"
    assert variants["bf16"]["dtype"] == "bfloat16"
    assert variants["sdpa-cudnn"] == {"name": "sdpa-cudnn", "status": "skipped", "reason": "needs CUDA"}
    assert variants["max-autotune"]["status"] == "skipped" and "torch.compile" in variants["max-autotune"]["reason"]


def test_warm_start_times_a_second_process_to_its_first_image(tiny_run):
    warm = tiny_run[0]["warm_start"]
    assert 0 < warm["imports_s"] < warm["model_loaded_s"] < warm["first_image_s"]
    assert warm["steady_call_s"] > 0 and warm["fx_graph_cache"] and warm["autograd_cache"]
    assert warm["inductor_cache_dir"].startswith("/tmp/serena-gpu-run-cache.")  # the run's own cache


def test_both_paths_are_profiled(tiny_run):
    profile = tiny_run[0]["profile"]
    for summary in (profile["eager default"], profile["compiled fast"]):
        assert summary["categories"]["convolution"] > 0
        assert sum(summary["categories"].values()) == pytest.approx(1)


def test_sdxl_raw_default_and_fast_paths_are_measured(tiny_run):
    sdxl = tiny_run[0]["sdxl"]
    assert sdxl["size"] == 64 and [row["batch"] for row in sdxl["rows"]] == [1, 2]
    for row in sdxl["rows"]:
        assert row["raw"]["it_s"] > 0 and row["default"]["it_s"] > 0 and row["fast"]["it_s"] > 0
        assert row["fast"]["pixels_ok"]  # fused QKV only on CPU


def test_the_flow_models_raw_and_default_paths_are_measured(tiny_run):
    flow = tiny_run[0]["flow"]
    assert list(flow) == ["sd35", "flux"]
    for entry in flow.values():
        assert entry["size"] == 64 and [row["batch"] for row in entry["rows"]] == [1, 2]
        for row in entry["rows"]:
            assert row["raw"]["it_s"] > 0 and row["default"]["it_s"] > 0 and row["default"]["e2e_images_s"] > 0


def test_tables_log_and_json_are_written(tiny_run):
    report, out = tiny_run
    text = (out / "gpu.md").read_text()
    assert text == gpu_report.markdown(report)
    assert "| 2 | " in text and "| channels-last | " in text and "skipped: needs CUDA" in text
    assert "warm start < 15 s" in text and "| convolution | " in text
    assert gpu_report.sdxl_table(report) in text and "| SDXL batch | raw it/s |" in text
    assert "SD 3.5 Medium (random weights), 64x64" in text and "FLUX.1 dev (random weights), 64x64" in text
    assert "gpu_run.sh: " in (out / "gpu.log").read_text()


def test_runner_overhead_reports_the_per_call_cost_as_a_fraction_of_a_generation_and_the_spread():
    result = runner_overhead.run(runs=2, steps=1, calls=20, repeats=3)
    assert result["ratio"] == pytest.approx(1 + result["fraction"])
    assert result["fraction"] == pytest.approx(result["runner_us_per_call"] / 1e6 / (result["generation_ms"] / 1e3))
    alternating = result["alternating"]
    assert alternating["round_ratio_min"] <= alternating["round_ratio_median"] <= alternating["round_ratio_max"]
    assert alternating["direct_ms"] == result["generation_ms"]


def test_prompt_language_reports_both_ratios_against_the_plain_prompt():
    result = prompt_language.run(runs=2, steps=2)
    medians = result["median_ms"]
    assert result["emphasis_ratio"] == pytest.approx(medians["emphasis"] / medians["plain"])
    assert result["editing_ratio"] == pytest.approx(medians["editing"] / medians["plain"])
    assert result["ratio"] == max(result["emphasis_ratio"], result["editing_ratio"])
