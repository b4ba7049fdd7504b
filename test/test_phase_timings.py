"""The one phase timer, shared by the engine's steps and the runner's lifecycle."""

import time

import pytest

from modules.runtime.timings import PhaseTimings


def test_a_repeated_phase_sums_its_times_and_each_name_is_kept_apart():
    timings = PhaseTimings()
    for _ in range(2):
        with timings.phase("sample"):
            time.sleep(0.01)
    with timings.phase("decode"):
        pass
    assert set(timings) == {"sample", "decode"}
    assert timings["sample"] >= 0.02 > timings["decode"]


def test_a_phase_that_raises_is_still_timed():
    timings = PhaseTimings()
    with pytest.raises(RuntimeError), timings.phase("load_model"):
        raise RuntimeError("no such checkpoint")
    assert "load_model" in timings
