"""Durations written the way operators write them: ``30d``, ``12h``, ``90m``, ``45s``."""

from __future__ import annotations

import re
from datetime import timedelta

from otward.errors import InvalidRequestError

__all__ = ["DURATION_PATTERN", "parse_duration"]

#: What :func:`parse_duration` takes, as a JSON Schema pattern (case-insensitive units spelled out).
DURATION_PATTERN = r"^\s*\d{1,6}\s*[smhdwSMHDW]\s*$"
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """Parse ``<number><unit>`` with unit s, m, h, d or w."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise InvalidRequestError(f"'{text}' is not a duration (write e.g. 30d, 12h, 90m)", rule="duration")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
