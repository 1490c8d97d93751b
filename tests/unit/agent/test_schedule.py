"""Renewal timing and retry backoff, with fixed inputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from otward.agent.schedule import backoff, renewal_due
from otward.errors import InvalidRequestError

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = NOT_BEFORE + timedelta(days=90)


class FixedRandom(random.Random):
    """A generator whose every draw is ``value``: uniform(a, b) then lands at a + (b - a) * value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        pytest.param(0.5, NOT_BEFORE + timedelta(days=60), id="middle-is-two-thirds"),
        pytest.param(0.0, NOT_BEFORE + timedelta(days=60 - 4.5), id="earliest-minus-5pc"),
        pytest.param(0.75, NOT_BEFORE + timedelta(days=60 + 2.25), id="quarter-up"),
    ],
)
def test_renewal_is_due_at_two_thirds_with_five_percent_jitter(jitter, expected):
    assert renewal_due(NOT_BEFORE, NOT_AFTER, jitter) == expected


def test_renewal_stays_inside_the_jitter_window():
    latest = renewal_due(NOT_BEFORE, NOT_AFTER, 0.999999)
    assert NOT_BEFORE + timedelta(days=64.49) < latest < NOT_BEFORE + timedelta(days=64.5)
    assert latest < NOT_AFTER


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 2.0], ids=["negative", "one", "two"])
def test_jitter_outside_the_unit_interval_is_refused(jitter):
    with pytest.raises(InvalidRequestError) as info:
        renewal_due(NOT_BEFORE, NOT_AFTER, jitter)
    assert info.value.rule == "renewal-jitter"


def test_inverted_validity_is_refused():
    with pytest.raises(InvalidRequestError, match="ends before it starts"):
        renewal_due(NOT_AFTER, NOT_BEFORE, 0.5)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 30.0), (2, 60.0), (3, 120.0), (7, 1920.0), (8, 3600.0), (40, 3600.0), (10_000, 3600.0)],
    ids=lambda value: str(value),
)
def test_backoff_doubles_from_30_seconds_up_to_one_hour(attempt, ceiling):
    assert backoff(attempt, FixedRandom(0.5)) == pytest.approx(ceiling / 2)
    assert backoff(attempt, FixedRandom(0.0)) == 0.0  # full jitter reaches down to zero


def test_backoff_draws_below_the_ceiling():
    rng = random.Random(20261122)  # noqa: S311 - reproducible draws, not a secret
    draws = [backoff(5, rng) for _ in range(200)]
    assert all(0.0 <= d <= 480.0 for d in draws)
    assert len(set(draws)) > 100


def test_backoff_counts_attempts_from_one():
    with pytest.raises(InvalidRequestError):
        backoff(0, FixedRandom(0.5))
