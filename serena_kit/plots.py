"""Metrics of generated images and matplotlib plots of a metric against a swept parameter.

matplotlib (the notebook extra) is imported only when a plot is drawn, so importing serena_kit stays cheap and works
without it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from serena_kit.extras import require


def brightness(image: Image.Image) -> float:
    """Mean luminance, 0..255."""
    return float(np.asarray(image.convert("L"), dtype=np.float64).mean())


def contrast(image: Image.Image) -> float:
    """Standard deviation of luminance, 0..~128."""
    return float(np.asarray(image.convert("L"), dtype=np.float64).std())


def saturation(image: Image.Image) -> float:
    """Mean HSV saturation, 0..255."""
    return float(np.asarray(image.convert("HSV"), dtype=np.float64)[..., 1].mean())


IMAGE_METRICS: dict[str, Callable[[Image.Image], float]] = {
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
}


def metric_name(metric: str | Callable) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")


def metric_values(metric: str | Callable, records: list[dict], images: list[Image.Image]) -> list[float]:
    """`metric` per cell: a record column ("seconds", "sample_seconds", ...), an IMAGE_METRICS name, or a function
    of the image."""
    if callable(metric):
        return [float(metric(image)) for image in images]
    if metric in IMAGE_METRICS:
        return [IMAGE_METRICS[metric](image) for image in images]
    if records and metric in records[0]:
        return [float(record[metric]) for record in records]
    available = ", ".join([*IMAGE_METRICS, *(records[0] if records else [])])
    raise ValueError(f"metric: unknown metric {metric!r}; valid: {available}, or a function of the image")


def plot_metric(records: list[dict], values: list[float], name: str, against: str, by: str | None = None, ax=None):
    """One line of `values` over the `against` column per value of the `by` column; returns the matplotlib Axes.
    String parameters (samplers, prompts) are placed in their order of first appearance."""
    plt = require("matplotlib.pyplot", "Plotting a sweep (SweepResult.plot)")

    if against not in records[0]:
        raise ValueError(f"against: unknown parameter {against!r}; valid: {', '.join(records[0])}")
    if by is not None and by not in records[0]:
        raise ValueError(f"by: unknown parameter {by!r}; valid: {', '.join(records[0])}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    groups: dict[object, list[tuple[object, float]]] = {}
    for record, value in zip(records, values):
        groups.setdefault(record[by] if by else None, []).append((record[against], value))
    for group, points in groups.items():
        xs, ys = zip(*points)
        ax.plot(
            [str(x) if isinstance(x, str) else x for x in xs], ys, marker="o", label=f"{by} = {group}" if by else None
        )
    ax.set_xlabel(against)
    ax.set_ylabel(name)
    if by:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax
