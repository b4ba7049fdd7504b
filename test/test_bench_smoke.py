"""The GPU benchmark script runs end to end on CPU with a tiny config (CI never has a GPU)."""

import json

from bench import gpu


def test_gpu_benchmark_tiny_smoke(tmp_path):
    report = gpu.main(["--tiny", "--steps", "3", "--out", str(tmp_path / "gpu.json")])
    assert json.loads((tmp_path / "gpu.json").read_text()) == json.loads(json.dumps(report))
    assert [row["batch"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["raw_it_s"] > 0 and row["default_it_s"] > 0 and row["fast_it_s"] > 0
        assert row["fast_max_diff"] <= 2  # fused QKV only on CPU: a rounding-level change
