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
    """One row per (by, against) pair: mean, confidence half-width and count of `values` over the `over` column
    (or columns: over=("prompt", "seed") for several sweeps' records together).

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
    for (group, x), group_values in groups.items():
        mean, half_width = mean_and_interval(group_values)
        rows.append({"by": group, "against": x, "mean": mean, "interval": half_width, "count": len(group_values)})
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
        _, ax = plt.subplots(figsize=(6, 3.5))
    lines: dict[object, list[dict]] = {}
    for row in rows:
        lines.setdefault(row["by"], []).append(row)
    for group, points in lines.items():
        xs = [str(point["against"]) if isinstance(point["against"], str) else point["against"] for point in points]
        means = np.array([point["mean"] for point in points])
        (line,) = ax.plot(xs, means, marker="o", label=f"{by} = {group}" if by else None)
        if over is not None:
            spread = np.array([point["interval"] for point in points])
            ax.fill_between(xs, means - spread, means + spread, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(against)
    over_text = over if isinstance(over, str) else " x ".join(over or ())
    ax.set_ylabel(f"{name} (mean over {over_text}, {CONFIDENCE:.0%} CI)" if over else name)
    if by:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax
