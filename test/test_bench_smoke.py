"""Benchmark scripts run end to end with tiny settings: the GPU one on CPU (CI never has a GPU), the runner overhead.
They check what a benchmark reports, never how fast anything is."""

import json

import pytest

from bench import gpu, runner_overhead


def test_gpu_benchmark_tiny_smoke(tmp_path):
    report = gpu.main(["--tiny", "--steps", "3", "--out", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == json.loads(json.dumps(report))
    assert [row["batch"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["raw_it_s"] > 0 and row["default_it_s"] > 0 and row["fast_it_s"] > 0
        assert row["fast_max_diff"] <= 2  # fused QKV only on CPU: a rounding-level change


def test_runner_overhead_reports_the_per_call_cost_as_a_fraction_of_a_generation_and_the_spread():
    result = runner_overhead.run(runs=2, steps=1, calls=20, repeats=3)
    assert result["ratio"] == pytest.approx(1 + result["fraction"])
    assert result["fraction"] == pytest.approx(result["runner_us_per_call"] / 1e6 / (result["generation_ms"] / 1e3))
    alternating = result["alternating"]
    assert alternating["round_ratio_min"] <= alternating["round_ratio_median"] <= alternating["round_ratio_max"]
    assert alternating["direct_ms"] == result["generation_ms"]
