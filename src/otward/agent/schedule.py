"""When the device agent renews and how long it waits after a failure; pure functions, no clock.

Renewing at about two thirds of the lifetime leaves a third of it for retries
while the server is away. The jitter spreads a fleet enrolled in one afternoon
over a window instead of having every device renew in the same minute; the full
jitter of the backoff does the same after an outage (AWS "Exponential Backoff
and Jitter").
"""

from __future__ import annotations

import random
from datetime import datetime

from otward.errors import InvalidRequestError

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "RENEWAL_FRACTION",
    "RENEWAL_JITTER",
    "backoff",
    "renewal_due",
]

RENEWAL_FRACTION = 2 / 3
RENEWAL_JITTER = 0.05  # of the lifetime, either side of RENEWAL_FRACTION
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0


def renewal_due(not_before: datetime, not_after: datetime, jitter: float) -> datetime:
    """The moment to renew a certificate valid from ``not_before`` to ``not_after``.

    ``jitter`` in [0, 1) moves the moment evenly across ±5% of the lifetime around
    two thirds of it; 0.5 gives exactly two thirds.
    """
    if not 0.0 <= jitter < 1.0:
        raise InvalidRequestError(f"jitter {jitter} is outside [0, 1)", rule="renewal-jitter")
    lifetime = not_after - not_before
    if lifetime.total_seconds() <= 0:
        raise InvalidRequestError("certificate validity ends before it starts", rule="renewal-lifetime")
    fraction = RENEWAL_FRACTION + (2 * jitter - 1) * RENEWAL_JITTER
    return not_before + lifetime * fraction


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait after the ``attempt``-th failure in a row (1 for the first).

    Full jitter: uniform between 0 and ``30 s * 2**(attempt-1)``, the ceiling capped at one hour.
    """
    if attempt < 1:
        raise InvalidRequestError(f"attempt {attempt} must be 1 or more", rule="backoff-attempt")
    exponent = min(attempt - 1, 32)  # 30 s * 2**7 already exceeds the cap; keeps the float small
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0**exponent)
    return rng.uniform(0.0, ceiling)
