"""Markdown tables, ready for docs/benchmarks.md, from the JSON that `bench/gpu.py` writes (also a partial one, from
a run stopped by its time budget).

    python bench/gpu_report.py bench/results/gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gpu_model import (  # noqa: E402
    FP16_DENSE_PEAK_TFLOPS,
    PIXEL_MAX_DIFF,
    PIXEL_MEAN_DIFF,
    TARGET_BATCH1_SPEEDUP,
    TARGET_PEAK_FRACTION,
    TARGET_WARM_START_S,
    UNET_TFLOP_PER_IMAGE_STEP,
)

DASH = "–"


def number(entry: dict | None, key: str, spec: str = ".1f", suffix: str = "") -> str:
    value = (entry or {}).get(key)
    return DASH if value is None else format(value, spec) + suffix


def ratio(entry: dict | None, reference: dict | None, key: str, bold: bool = True) -> str:
    if not entry or not reference or key not in entry or key not in reference:
        return DASH
    text = f"{entry[key] / reference[key]:.2f}"
    return f"**{text}**" if bold else text


def yes_no(met: bool) -> str:
    return "yes" if met else "**no**"


def pixel_check(entry: dict | None) -> str:
    if not entry or entry.get("max_diff") is None:
        return DASH
    return f"{entry['max_diff']} (mean {entry['mean_diff']:.3f})" + ("" if entry["pixels_ok"] else " **fails**")


def table(header: list[str], rows: list[list[str]]) -> str:
    """Text columns (the first, and a last one named "what") left-aligned, figures right-aligned."""
    alignments = [
        ":---" if i == 0 or (name == "what" and i == len(header) - 1) else "---:" for i, name in enumerate(header)
    ]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(alignments) + " |"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main_table(report: dict) -> str:
    rows = []
    for row in report["rows"]:
        raw, default, fast = row.get("raw"), row.get("default"), row.get("fast")
        rows.append(
            [
                str(row["batch"]),
                number(raw, "it_s") + (f" ({raw['image_steps_s']:.0f} img-steps/s)" if raw else ""),
                number(default, "it_s"),
                ratio(default, raw, "it_s", bold=False),
                number(fast, "it_s"),
                ratio(fast, raw, "it_s"),
                number(fast, "image_steps_s", ".0f"),
                number(fast, "peak_fraction", ".2f"),
                number(fast, "warm_up_s", ".1f", " s"),
                pixel_check(fast),
                f"{number(default, 'e2e_images_s', '.2f')} / {number(fast, 'e2e_images_s', '.2f')}",
            ]
        )
    return table(
        [
            "batch",
            "raw diffusers it/s",
            "Serena default it/s",
            "Serena/raw",
            "fast path it/s",
            "fast/raw",
            "fast image-steps/s",
            f"fraction of {FP16_DENSE_PEAK_TFLOPS:.0f} TFLOP/s",
            "compile warm-up",
            "max pixel diff fast vs default",
            "end-to-end images/s default / fast",
        ],
        rows,
    )


def pixels_ok(entry: dict | None) -> str:
    if not entry or entry.get("max_diff") is None:
        return DASH
    return f"{yes_no(entry['pixels_ok'])} (max {entry['max_diff']}, mean {entry['mean_diff']:.3f})"


def sdxl_table(report: dict) -> str:
    sdxl = report["sdxl"]
    lead = (
        f"SDXL base (random weights), {sdxl['size']}x{sdxl['size']}, {report['steps']} steps DPM++ 2M with CFG 7.5; "
        f'raw diffusers is StableDiffusionXLPipeline with output_type="latent"; fast path: {report["fast_path"]}.'
    )
    if "skipped" in sdxl:
        return f"{lead} Skipped: {sdxl['skipped']}."
    rows = []
    for row in sdxl["rows"]:
        raw, default, fast = row.get("raw"), row.get("default"), row.get("fast")
        rows.append(
            [
                str(row["batch"]),
                number(raw, "it_s", ".2f"),
                number(default, "it_s", ".2f"),
                number(fast, "it_s", ".2f"),
                ratio(fast, raw, "it_s"),
                ratio(default, raw, "it_s", bold=False),
                pixels_ok(fast),
            ]
        )
    skipped = [
        f"\n\nSDXL fast path at batch {row['batch']} skipped: {row['fast']['skipped']}."
        for row in sdxl["rows"]
        if "skipped" in row.get("fast", {})
    ]
    header = [
        "SDXL batch",
        "raw it/s",
        "default it/s",
        "fast it/s",
        "fast/raw",
        "default/raw",
        "pixels ok fast vs default",
    ]
    return lead + "\n\n" + table(header, rows) + "".join(skipped)


def flow_tables(report: dict) -> list[str]:
    tables = []
    for entry in report["flow"].values():
        lead = (
            f"{entry['title']} (random weights), {entry['size']}x{entry['size']}, {entry['dtype']}, "
            f"{report['steps']} steps Euler (the flow scheduler); raw diffusers is its pipeline with "
            'output_type="latent".'
        )
        if "skipped" in entry:
            tables.append(f"{lead} Skipped: {entry['skipped']}.")
            continue
        rows = [
            [
                str(row["batch"]),
                number(row.get("raw"), "it_s", ".2f"),
                number(row.get("default"), "it_s", ".2f"),
                ratio(row.get("default"), row.get("raw"), "it_s", bold=False),
                number(row.get("default"), "e2e_images_s", ".2f"),
                number(row.get("default"), "peak_gib", ".1f"),
            ]
            for row in entry["rows"]
        ]
        header = ["batch", "raw it/s", "default it/s", "default/raw", "images/s end to end", "peak GiB"]
        tables.append(lead + "\n\n" + table(header, rows))
    return tables


def variant_row(name: str, entry: dict, reference: dict | None, what: str) -> list[str]:
    return [
        name,
        number(entry, "image_steps_s", ".0f"),
        ratio(entry, reference, "image_steps_s"),
        number(entry, "peak_fraction", ".2f"),
        number(entry, "warm_up_s", ".1f", " s"),
        number(entry, "decode_ms_per_image"),
        number(entry, "e2e_images_s", ".2f"),
        pixel_check(entry),
        what,
    ]


def variants_table(report: dict) -> str:
    reference = next((row.get("fast") for row in report["rows"] if row["batch"] == report["variant_batch"]), None)
    rows = [variant_row("fast path (reference)", reference or {}, reference, report["fast_path"])]
    for variant in report["variants"]:
        if variant["status"] == "measured":
            rows.append(variant_row(variant["name"], variant, reference, variant["help"]))
        else:
            rows.append(variant_row(variant["name"], {}, None, f"{variant['status']}: {variant['reason']}"))
    return table(
        [
            f"variant (batch {report['variant_batch']})",
            "image-steps/s",
            "vs fast path",
            "fraction of peak",
            "compile warm-up",
            "VAE decode ms/image",
            "end-to-end images/s",
            "max pixel diff vs default",
            "what",
        ],
        rows,
    )


def warm_start_table(warm: dict) -> str:
    if "first_image_s" not in warm:
        return f"Warm start: {warm.get('error') or warm.get('skipped')}"
    return table(
        ["second process: imports", "model loaded", "first image", "its first call", "steady call", "cold first call"],
        [
            [
                number(warm, "imports_s", ".1f", " s"),
                number(warm, "model_loaded_s", ".1f", " s"),
                f"**{warm['first_image_s']:.1f} s**",
                number(warm, "first_call_s", ".1f", " s"),
                number(warm, "steady_call_s", ".2f", " s"),
                number(warm, "cold_first_call_s", ".1f", " s"),
            ]
        ],
    )


def profile_table(report: dict) -> str:
    profile = report["profile"]
    names = [name for name, summary in profile.items() if "categories" in summary]
    skipped = [f"{name}: {summary['skipped']}" for name, summary in profile.items() if "skipped" in summary]
    categories = sorted({category for name in names for category in profile[name]["categories"]})
    rows = [
        [category] + [f"{profile[name]['categories'].get(category, 0) * 100:.1f} %" for name in names]
        for category in categories
    ]
    rows.append(
        ["(of Triton: GroupNorm+SiLU fused)"]
        + [f"{profile[name]['group_norm_silu_fused_share'] * 100:.1f} %" for name in names]
    )
    rows.append(
        ["profiled time / wall time"]
        + [f"{profile[name]['total_ms']:.0f} / {profile[name]['wall_ms']:.0f} ms" for name in names]
    )
    steps = next((profile[name]["steps"] for name in names), None)
    header = f"share of time (batch {report['variant_batch']}, {steps} steps + decode)"
    return table([header] + names, rows) + "".join(f"\n\nProfile {line}" for line in skipped)


def targets_table(report: dict) -> str:
    rows = []
    target_rate = TARGET_PEAK_FRACTION * FP16_DENSE_PEAK_TFLOPS / UNET_TFLOP_PER_IMAGE_STEP
    big = next((row for row in report["rows"] if row["batch"] == report["variant_batch"]), {})
    candidates = [("fast path", big["fast"])] if big.get("fast") else []
    candidates += [(entry["name"], entry) for entry in report["variants"] if entry["status"] == "measured"]
    passing = [(name, entry) for name, entry in candidates if entry.get("pixels_ok")]
    if passing:
        name, best = max(passing, key=lambda item: item[1]["image_steps_s"])
        rows.append(
            [
                f"batch {report['variant_batch']} >= {target_rate:.0f} image-steps/s with the image check passed",
                f"{best['image_steps_s']:.0f} ({name})",
                yes_no(best["image_steps_s"] >= target_rate),
            ]
        )
    one = next((row for row in report["rows"] if row["batch"] == 1 and row.get("fast") and row.get("raw")), None)
    if one:
        speedup = one["fast"]["it_s"] / one["raw"]["it_s"]
        rows.append(
            [
                f"batch 1 >= {TARGET_BATCH1_SPEEDUP:g}x raw eager",
                f"{speedup:.2f}x",
                yes_no(speedup >= TARGET_BATCH1_SPEEDUP),
            ]
        )
    warm = report.get("warm_start", {})
    if "first_image_s" in warm:
        rows.append(
            [
                f"warm start < {TARGET_WARM_START_S:g} s (second process, launch to first image)",
                f"{warm['first_image_s']:.1f} s",
                yes_no(warm["first_image_s"] < TARGET_WARM_START_S),
            ]
        )
    if not rows:
        return "Targets: nothing measured yet."
    return table(["target", "measured", "met"], rows)


def markdown(report: dict) -> str:
    parts = [
        f"{report['device']}, torch {report['torch']}, diffusers {report['diffusers']}, {report['dtype']}, "
        f"{report['size']}x{report['size']}, {report['steps']} steps DPM++ 2M with CFG 7.5; median of "
        f"{report['repeats']} timed calls; image check: max pixel difference <= {PIXEL_MAX_DIFF} and mean <= "
        f"{PIXEL_MEAN_DIFF} against the default path at the same seeds.",
        main_table(report),
    ]
    if report.get("vae_decode_ms_per_image"):
        decode = ", ".join(f"batch {b}: {ms:.1f} ms" for b, ms in report["vae_decode_ms_per_image"].items())
        parts.append(f"Eager VAE decode per image: {decode}.")
    if report["variants"]:
        parts.append(variants_table(report))
    if "warm_start" in report:
        parts.append(warm_start_table(report["warm_start"]))
    if report.get("profile"):
        parts.append(profile_table(report))
    parts.append(targets_table(report))
    if "sdxl" in report:
        parts.append(sdxl_table(report))
    if report.get("flow"):
        parts.extend(flow_tables(report))
    if report.get("matmul_fp16_tflops"):
        parts.append(f"8192^3 fp16 matmul: {report['matmul_fp16_tflops']:.0f} TFLOP/s.")
    parts.append("Seconds per part: " + ", ".join(f"{k} {v:.0f}" for k, v in report["sections_s"].items()) + ".")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    print(markdown(json.loads(args.report.read_text())), end="")


if __name__ == "__main__":
    main()
