"""Failed attempts per source address, so that secrets cannot be guessed online.

A fixed number of failures per sliding window; once over it, the source is
refused (HTTP 429) until the oldest failure in the window ages out. Successes
cost nothing. The state is per process and bounded: the least recently seen
sources are forgotten first when too many are tracked.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    def __init__(
        self,
        *,
        max_failures: int,
        window_seconds: float,
        clock: Callable[[], float],
        max_sources: int = 100_000,
    ) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, source: str) -> float:
        """Seconds ``source`` must wait before trying again; 0 when it may try now."""
        with self._lock:
            failures = self._recent(source)
            if failures is None or len(failures) < self._max:
                return 0.0
            return max(0.0, failures[0] + self._window - self._clock())

    def record_failure(self, source: str) -> None:
        with self._lock:
            failures = self._recent(source)
            if failures is None:
                failures = self._failures[source] = deque(maxlen=self._max)
                while len(self._failures) > self._max_sources:
                    self._failures.popitem(last=False)
            failures.append(self._clock())
            self._failures.move_to_end(source)

    def _recent(self, source: str) -> deque[float] | None:
        failures = self._failures.get(source)
        if failures is None:
            return None
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[source]
            return None
        return failures
