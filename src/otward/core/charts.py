"""Geometry of the console's bar charts: counts in, rectangles and axis ticks out.

Pure so that the drawing can be tested without a browser, and server-rendered as inline SVG so
that the console needs no chart library and no script (its CSP allows neither inline scripts nor
styles). Counts per day come from the database; :func:`bucket_days` folds them into bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

__all__ = ["Bar", "BarChart", "DayBucket", "Tick", "bar_chart", "bucket_days", "nice_ceiling"]


@dataclass(frozen=True)
class DayBucket:
    """The days ``first`` .. ``last`` (inclusive) and how many things fell on them."""

    first: date
    last: date
    count: int

    @property
    def label(self) -> str:
        """``12-07`` for one day, ``12-07 to 12-13`` for several (month-day: the year is on the page)."""
        if self.first == self.last:
            return f"{self.first:%m-%d}"
        return f"{self.first:%m-%d} to {self.last:%m-%d}"


@dataclass(frozen=True)
class Bar:
    """One bar: its label and value, and its rectangle in SVG user units (y grows downwards)."""

    label: str
    value: int
    x: float
    y: float
    width: float
    height: float

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class Tick:
    """A value on the vertical axis and where its line is drawn."""

    value: int
    y: float


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    baseline: float  # y of the zero line
    scale_max: int  # the value at the top of the plot
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    label_every: int  # label every n-th bar on the horizontal axis, so that labels do not overlap

    @property
    def total(self) -> int:
        return sum(b.value for b in self.bars)


def bucket_days(counts: Mapping[date, int], first: date, days: int, size: int = 1) -> list[DayBucket]:
    """``days`` days from ``first`` in buckets of ``size`` days (the last may be shorter); days
    missing from ``counts`` count zero, days outside the range are ignored."""
    if days < 0 or size < 1:
        raise ValueError("days must be >= 0 and size >= 1")
    buckets = []
    for start in range(0, days, size):
        span = min(size, days - start)
        begin = first + timedelta(days=start)
        end = begin + timedelta(days=span - 1)
        total = sum(counts.get(begin + timedelta(days=i), 0) for i in range(span))
        buckets.append(DayBucket(begin, end, total))
    return buckets


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2 or 5 times 10^k (k ≥ 0) at least ``value``: a round top for the scale."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def bar_chart(
    values: Sequence[tuple[str, int]],
    *,
    width: int = 720,
    height: int = 220,
    left: int = 48,
    top: int = 12,
    bottom: int = 40,
    right: int = 8,
    gap: float = 0.2,
    max_labels: int = 14,
) -> BarChart:
    """Bars for ``values`` (label, count ≥ 0) in a ``width`` by ``height`` box: the plot leaves
    ``left`` for the scale and ``bottom`` for the labels; ``gap`` is the share of each slot left
    empty between bars. The scale tops at :func:`nice_ceiling` of the largest count, with ticks
    at 0, half and the top."""
    if any(count < 0 for _, count in values):
        raise ValueError("bar values must not be negative")
    plot_width = width - left - right
    plot_height = height - top - bottom
    if plot_width <= 0 or plot_height <= 0:
        raise ValueError("the chart is too small for its margins")
    scale_max = nice_ceiling(max((count for _, count in values), default=0))
    baseline = float(top + plot_height)
    slot = plot_width / len(values) if values else 0.0
    bars = []
    for i, (label, count) in enumerate(values):
        bar_height = plot_height * count / scale_max
        bars.append(
            Bar(
                label=label,
                value=count,
                x=round(left + i * slot + slot * gap / 2, 2),
                y=round(baseline - bar_height, 2),
                width=round(slot * (1 - gap), 2),
                height=round(bar_height, 2),
            )
        )
    tick_values = sorted({0, scale_max // 2, scale_max}) if scale_max > 1 else [0, 1]
    ticks = tuple(Tick(v, round(baseline - plot_height * v / scale_max, 2)) for v in tick_values)
    label_every = max(1, -(-len(values) // max_labels))
    return BarChart(
        width=width,
        height=height,
        plot_left=float(left),
        plot_right=float(width - right),
        plot_top=float(top),
        baseline=baseline,
        scale_max=scale_max,
        bars=tuple(bars),
        ticks=ticks,
        label_every=label_every,
    )
