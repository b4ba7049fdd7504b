"""matplotlib plots of a sweep metric against a swept parameter, with a confidence interval over repeated cells.

matplotlib (the notebook extra) is imported only when a plot is drawn, so importing serena_kit stays cheap and works
without it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from serena_kit.extras import require

CONFIDENCE = 0.95
Z_95 = 1.959963984540054
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def wilson_interval(correct: int, total: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a share (sound at 0 % and 100 %, and never outside [0, 1], unlike the
    normal or Student-t approximation)."""
    if total == 0:
        return (math.nan, math.nan)
    rate = correct / total
    denominator = 1 + Z_95**2 / total
    centre = (rate + Z_95**2 / (2 * total)) / denominator
    half = Z_95 * math.sqrt(rate * (1 - rate) / total + Z_95**2 / (4 * total**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def is_share(values) -> bool:
    """Values that are all 0 or 1 (pass/fail checks): their mean is a share."""
    return all(value in (0, 1) for value in values)


def mean_and_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The mean and the half-width of its Student-t confidence interval (0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, 0.0
    sem = float(values.std(ddof=1) / math.sqrt(len(values)))
    return mean, float(stats.t.ppf((1 + confidence) / 2, len(values) - 1) * sem)


def summarize(
    records: list[dict],
    values: list[float],
    against: str,
    by: str | None = None,
    over: str | tuple[str, ...] | None = None,
) -> list[dict]:
    """One row per (by, against) pair: mean, 95 % interval (`low`, `high`) and count of `values` over the `over`
    column (or columns: over=("prompt", "seed") for several sweeps' records together). Values that are all 0 or 1
    (a share, such as adherence) get the Wilson interval; others the Student-t interval, whose half-width is also
    `interval` (None for shares, whose interval is not symmetric).

    Every swept column other than `against`, `by` and `over` must be constant, or the mean would mix conditions.
    """
    over_columns = (over,) if isinstance(over, str) else tuple(over or ())
    for name in (against, by, *over_columns):
        if name is not None and name not in records[0]:
            raise ValueError(f"{name}: unknown parameter; valid: {', '.join(records[0])}")
    groups: dict[tuple, list[float]] = {}
    for record, value in zip(records, values):
        groups.setdefault((record[by] if by else None, record[against]), []).append(value)
    if over is not None:
        sizes = {len(group) for group in groups.values()}
        distinct_over = len({tuple(record[name] for name in over_columns) for record in records})
        if sizes != {distinct_over}:
            raise ValueError(
                f"over: each ({by or ''}{', ' if by else ''}{against}) point has {sorted(sizes)} cells but {over!r} "
                f"takes {distinct_over} values; another swept parameter varies too: pass it as by="
            )
    rows = []
    shares = is_share(values)
    for (group, x), group_values in groups.items():
        mean, half_width = mean_and_interval(group_values)
        if shares:
            low, high = wilson_interval(int(sum(group_values)), len(group_values))
            half_width = None
        else:
            low, high = mean - half_width, mean + half_width
        rows.append(
            {"by": group, "against": x, "mean": mean, "low": low, "high": high, "interval": half_width}
            | {"count": len(group_values)}
        )
    return rows


def plot_metric(
    records: list[dict],
    values: list[float],
    name: str,
    against: str,
    by: str | None = None,
    over: str | tuple[str, ...] | None = None,
    ax=None,
):
    """One line of `values` over the `against` column per value of the `by` column: with `over`, the mean over that
    column with a 95 % confidence band; returns the matplotlib Axes. String parameters (samplers, prompts) are
    placed in their order of first appearance."""
    plt = require("matplotlib.pyplot", "Plotting a sweep (SweepResult.plot)")

    rows = summarize(records, values, against, by, over)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    lines: dict[object, list[dict]] = {}
    for row in rows:
        lines.setdefault(row["by"], []).append(row)
    xs_all = list(dict.fromkeys(row["against"] for row in rows))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs_all)
    positions = {x: (x if numeric else index) for index, x in enumerate(xs_all)}
    span = (max(positions.values()) - min(positions.values())) or 1
    for index, (group, points) in enumerate(lines.items()):
        # Lines with equal values would hide each other: each is moved a little sideways, with its own marker.
        offset = (index - (len(lines) - 1) / 2) * 0.015 * span
        xs = np.array([positions[point["against"]] for point in points], dtype=float) + offset
        means = np.array([point["mean"] for point in points])
        marker = MARKERS[index % len(MARKERS)]
        (line,) = ax.plot(xs, means, marker=marker, label=f"{by} = {group}" if by else None)
        if over is not None:
            lows = np.array([point["low"] for point in points])
            highs = np.array([point["high"] for point in points])
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2)
    if not numeric:
        ax.set_xticks(list(positions.values()), [str(x) for x in xs_all])
    ax.set_xlabel(against)
    over_text = over if isinstance(over, str) else " x ".join(over or ())
    interval = f"{CONFIDENCE:.0%} Wilson CI" if is_share(values) else f"{CONFIDENCE:.0%} CI"
    ax.set_ylabel(f"{name}\n(mean over {over_text}, {interval})" if over else name)
    if by:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax
