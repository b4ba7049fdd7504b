"""Attention-map capture cost on the default model: a 20-step generation without capture and with it (every
cross-attention layer, every step, the defaults), interleaved in one run; the ratio of their medians. And what the
capture costs when it is off: the engine's `attention_maps.recording(None, ...)` around the sampling, timed per call
against the same generation (it is a no-op context, so its share should be far below 1 %)."""

from __future__ import annotations

import statistics
import time

STEPS = 20


def run(repeats: int = 9) -> dict:
    import serena_kit as sk
    from modules import attention_maps

    sk.load_model()
    job = {"prompt": "a red circle on a blue background", "seed": 1, "steps": STEPS, "do_not_save_samples": True}
    times = {"off": [], "capture": []}
    for _ in range(repeats + 1):  # the first round warms up and is dropped
        for name in times:
            start = time.perf_counter()
            sk.txt2img(**job, attention=name == "capture")
            times[name].append(time.perf_counter() - start)
    off, capture = (statistics.median(times[name][1:]) for name in ("off", "capture"))
    calls = 20000
    start = time.perf_counter()
    for _ in range(calls):
        with attention_maps.recording(None, None, range(1), [""], "", (32, 32), (8, 8), None, STEPS):
            pass
    off_path_s = (time.perf_counter() - start) / calls
    ratio = capture / off
    return {
        "name": "attention_cost",
        "ratio": ratio,
        "ms_off": off * 1000,
        "ms_capture": capture * 1000,
        "off_path_us": off_path_s * 1e6,
        "off_path_fraction": off_path_s / off,
        "target": "capture <= 1.3x a 20-step generation; off: no measurable cost",
        "met": ratio <= 1.3 and off_path_s / off < 0.001,
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<20} {value:.6f}" if isinstance(value, float) else f"{key:<20} {value}")
