"""Per-source limits on failed authentication, so that tokens cannot be guessed online.

Each worker process keeps its own counts (no shared state to slow the hot path) and allows its
share of the limit, ⌈limit / workers⌉: however a source's connections are spread over the
workers, it never gets more than the limit in all (a source that lands on one worker only is
stopped earlier, which errs on the safe side).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request

from otward.core.ratelimit import FailureLimiter
from otward.errors import AuthenticationError, RateLimitedError
from otward.services.audit import Actor

__all__ = [
    "MAX_CHALLENGES",
    "MAX_FAILURES",
    "WINDOW_SECONDS",
    "guard_failures",
    "install_limits",
    "share",
    "spend",
]

MAX_FAILURES = 10
MAX_CHALLENGES = 120
WINDOW_SECONDS = 60.0

T = TypeVar("T")


def share(limit: int, workers: int) -> int:
    """One worker's share of a limit for the whole service."""
    return max(1, math.ceil(limit / max(1, workers)))


def install_limits(state: object, *, workers: int = 1) -> None:
    state.failures = FailureLimiter(  # type: ignore[attr-defined]
        max_failures=share(MAX_FAILURES, workers), window_seconds=WINDOW_SECONDS, clock=time.monotonic
    )
    state.challenges = FailureLimiter(  # type: ignore[attr-defined]
        max_failures=share(MAX_CHALLENGES, workers), window_seconds=WINDOW_SECONDS, clock=time.monotonic
    )


def _refuse_if_limited(limiter: FailureLimiter, source: str, what: str) -> None:
    wait = limiter.retry_after(source)
    if wait > 0:
        raise RateLimitedError(f"too many {what} from {source}; try again later", retry_after=wait)


def guard_failures(request: Request, actor: Actor, action: Callable[[Actor], T]) -> T:
    """Run ``action`` unless ``actor.source`` failed too often lately; count its authentication failures."""
    limiter: FailureLimiter = request.app.state.failures
    source = actor.source or "unknown"
    _refuse_if_limited(limiter, source, "failed attempts")
    try:
        return action(actor)
    except RateLimitedError:
        raise
    except AuthenticationError:
        limiter.record_failure(source)
        raise


def spend(request: Request, actor: Actor) -> None:
    """Count one unauthenticated request that costs the server a write (a challenge)."""
    limiter: FailureLimiter = request.app.state.challenges
    source = actor.source or "unknown"
    _refuse_if_limited(limiter, source, "challenges")
    limiter.record_failure(source)
