"""Side-by-side timing: calls run alternately, so drift on a shared machine hits every one of them alike."""

from __future__ import annotations

import time
from collections.abc import Callable


def alternate(calls: list[Callable[[], object]], runs: int) -> list[list[float]]:
    """Seconds of each call over `runs` rounds (call 1, call 2, ..., call 1, ...): one list per call."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for call, seconds in zip(calls, times):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
    return times
