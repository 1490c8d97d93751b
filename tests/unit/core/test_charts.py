from __future__ import annotations

from datetime import date

import pytest

from otward.core.charts import DayBucket, bar_chart, bucket_days, nice_ceiling


@pytest.mark.parametrize(
    ("value", "ceiling"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (5, 5), (6, 10), (11, 20), (21, 50), (51, 100), (10_001, 20_000)],
)
def test_nice_ceiling(value: int, ceiling: int) -> None:
    assert nice_ceiling(value) == ceiling


def test_bucket_days_sums_each_week_and_ignores_days_outside() -> None:
    first = date(2026, 12, 7)
    counts = {date(2026, 12, 7): 2, date(2026, 12, 13): 1, date(2026, 12, 14): 4, date(2026, 12, 6): 99}
    counts[date(2027, 3, 6)] = 5  # day 89, the last of 90
    counts[date(2027, 3, 7)] = 7  # day 90: outside
    buckets = bucket_days(counts, first, 90, 7)
    assert len(buckets) == 13
    assert [b.count for b in buckets[:2]] == [3, 4]
    assert buckets[12] == DayBucket(date(2027, 3, 1), date(2027, 3, 6), 5)  # a shorter last week
    assert sum(b.count for b in buckets) == 12


def test_bucket_labels() -> None:
    assert DayBucket(date(2026, 12, 7), date(2026, 12, 7), 0).label == "12-07"
    assert DayBucket(date(2026, 12, 7), date(2026, 12, 13), 0).label == "12-07 to 12-13"


def test_bucket_days_refuses_a_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        bucket_days({}, date(2026, 1, 1), 10, 0)


def test_bar_heights_are_proportional_to_a_round_scale() -> None:
    chart = bar_chart(
        [("a", 0), ("b", 5), ("c", 10)], width=340, height=200, left=40, top=10, bottom=30, right=0
    )
    assert chart.scale_max == 10
    plot_height = 200 - 10 - 30
    assert [b.height for b in chart.bars] == [0, plot_height / 2, plot_height]
    assert all(b.y + b.height == chart.baseline for b in chart.bars)
    # three equal slots of 100 units from x=40, each bar 80 % of its slot, centred
    assert [b.x for b in chart.bars] == [50, 150, 250]
    assert {b.width for b in chart.bars} == {80}
    assert [(t.value, t.y) for t in chart.ticks] == [(0, 170), (5, 90), (10, 10)]
    assert chart.total == 15
    assert chart.plot_right == 340


def test_an_empty_chart_has_a_scale_and_no_bars() -> None:
    chart = bar_chart([])
    assert chart.bars == ()
    assert chart.scale_max == 1
    assert [t.value for t in chart.ticks] == [0, 1]


def test_labels_are_thinned_to_fit() -> None:
    assert bar_chart([(str(i), i) for i in range(90)], max_labels=14).label_every == 7
    assert bar_chart([(str(i), i) for i in range(13)]).label_every == 1


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [([("a", -1)], {}, "negative"), ([("a", 1)], {"width": 40, "left": 40, "right": 8}, "too small")],
    ids=["negative", "too-small"],
)
def test_bar_chart_refuses(values: list[tuple[str, int]], kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bar_chart(values, **kwargs)
