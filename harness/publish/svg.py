"""Small SVG charts computed in Python and drawn by the templates (no JavaScript library, no network).

The functions return plain numbers and strings; the templates escape every label, so nothing from a
record can inject markup.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

WIDTH, HEIGHT, MARGIN = 420, 260, 48


@dataclasses.dataclass
class Plot:
    """Pixel coordinates of points/polyline plus axis ticks, ready for a template."""

    points: list[tuple[float, float, str]]
    xticks: list[tuple[float, str]]
    yticks: list[tuple[float, str]]
    xlabel: str
    ylabel: str
    width: int = WIDTH
    height: int = HEIGHT
    margin: int = MARGIN

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.points)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    start = math.ceil(low / step) * step
    return [start + i * step for i in range(int((high - start) / step) + 1)]


def _label(value: float) -> str:
    if abs(value) >= 1e5:
        return f"{value:.2g}"
    return f"{value:g}" if float(value).is_integer() else f"{value:.3g}"


def scatter(points: Sequence[tuple[float, float, str]], xlabel: str, ylabel: str, log_x: bool = False) -> Plot:
    """Map data points into the plot area (``log_x`` for parameter counts spanning decades)."""
    xs = [math.log10(x) if log_x and x > 0 else x for x, _, _ in points]
    ys = [y for _, y, _ in points]
    x0, x1 = _padded(xs)
    y0, y1 = _padded(ys)
    sx = lambda v: MARGIN + (v - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)  # noqa: E731
    sy = lambda v: HEIGHT - MARGIN - (v - y0) / (y1 - y0) * (HEIGHT - 2 * MARGIN)  # noqa: E731
    mapped = [(sx(x), sy(y), name) for x, y, (_, _, name) in zip(xs, ys, points)]
    xticks = [(sx(t), _label(10 ** t if log_x else t)) for t in _ticks(x0, x1)]
    yticks = [(sy(t), _label(t)) for t in _ticks(y0, y1)]
    return Plot(mapped, xticks, yticks, xlabel + (" (log scale)" if log_x else ""), ylabel)


def line(values: Sequence[float], xlabel: str, ylabel: str) -> Plot:
    """A curve over positions 1..n (e.g. a CMC curve over ranks)."""
    return scatter([(float(i), float(v), "") for i, v in enumerate(values, 1)], xlabel, ylabel)


def histogram(values: Sequence[float], bins: int = 20) -> tuple[list[tuple[float, float, float, float, str]], Plot]:
    """Bars (x, y, width, height, range text) of a per-sample distribution, with axes."""
    data = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(data), max(data)) if data else (0.0, 1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    counts = [0] * bins
    for v in data:
        counts[min(bins - 1, int((v - low) / width))] += 1
    top = max(counts) or 1
    plot = scatter([(low, 0.0, ""), (high, float(top), "")], "value", "samples")
    inner_w = (WIDTH - 2 * MARGIN) / bins
    x0, x1 = _padded([low, high])
    bars = []
    for i, count in enumerate(counts):
        left = MARGIN + (low + i * width - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)
        bar_h = count / top * (plot.points[1][1] - plot.points[0][1]) * -1
        bars.append((left, plot.points[0][1] - bar_h, max(inner_w * (high - low) / (x1 - x0) - 1, 1), bar_h,
                     f"{low + i * width:.4g} – {low + (i + 1) * width:.4g}: {count}"))
    return bars, plot


def _padded(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or (abs(high) * 0.05 or 1.0)
    return low - pad, high + pad
