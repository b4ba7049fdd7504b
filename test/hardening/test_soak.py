"""The soak (soak.py) for SERENA_SOAK_SECONDS (CI: 20 s): every request answered, every image with its seeds, the
server alive, RSS growth after warm-up under 50 MB."""

import json
import os

import pytest
from hardening.soak import run_soak

pytestmark = pytest.mark.whole_machine  # a server and eight clients

SOAK_SECONDS = float(os.environ.get("SERENA_SOAK_SECONDS", "20"))
MAX_RSS_GROWTH_MB = 50


def test_eight_clients_mixing_every_kind_of_request_lose_nothing():
    report = run_soak(SOAK_SECONDS)
    summary = json.dumps({key: value for key, value in report.items() if key != "rss_mb"})
    assert report["server_alive"] and not report["problems"], summary
    assert report["answered"] == report["sent"] and report["images_checked"] > 0, summary
    assert {"txt2img", "img2img", "progress"} <= set(report["latency"]), summary
    assert report["rss_growth_after_warm_up_mb"] < MAX_RSS_GROWTH_MB, summary
