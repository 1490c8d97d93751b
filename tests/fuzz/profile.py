"""The Hypothesis profiles of the fuzz targets and the decorator that applies the chosen one.

Hypothesis binds a test's settings when ``@given`` decorates it, at import, so the profile is
chosen before the modules under ``tests/fuzz`` are imported (``conftest.pytest_configure``) and
every target is decorated with :func:`fuzz_settings` instead of its own ``@settings``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings

SLICE_EXAMPLES = 200
FUZZ_EXAMPLES = 10_000
PROFILES = ("fuzz-slice", "fuzz")

_RELAXED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
    HealthCheck.large_base_example,
]


def _examples(default: int) -> int:
    return int(os.environ.get("OTWARD_FUZZ_EXAMPLES", default))


settings.register_profile(
    "fuzz-slice",
    max_examples=_examples(SLICE_EXAMPLES),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_RELAXED,
)
settings.register_profile(
    "fuzz",
    max_examples=_examples(FUZZ_EXAMPLES),
    deadline=None,
    suppress_health_check=_RELAXED,
    print_blob=True,
)

_forced = os.environ.get("HYPOTHESIS_PROFILE", "")
active = {"profile": _forced if _forced in PROFILES else "fuzz-slice"}  # set by tests/fuzz/conftest.py

T = TypeVar("T", bound=Callable[..., Any])


def fuzz_settings(*, scale: float = 1.0) -> Callable[[T], T]:
    """The chosen profile's settings; ``scale`` < 1 for a target whose examples are expensive (a
    TLS connection each), never below 10,000 examples in a ``fuzz`` run."""
    profile = settings.get_profile(active["profile"])
    count = max(1, int(profile.max_examples * scale))
    if active["profile"] == "fuzz":
        count = max(count, FUZZ_EXAMPLES if "OTWARD_FUZZ_EXAMPLES" not in os.environ else 1)
    return settings(profile, max_examples=count)  # type: ignore[return-value]


#: cryptography warns (it does not raise) on some hostile inputs it still parses: a non-positive
#: serial number, a name attribute beyond RFC 5280's upper bound, a PKCS#7 that is BER rather than
#: DER. The suite turns warnings into errors; outside it a warning is not a failure, so the fuzz
#: targets that parse such inputs ignore these (and only these) warnings.
CRYPTOGRAPHY_WARNINGS = [
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning"),
    pytest.mark.filterwarnings("ignore:PKCS#7 certificates could not be parsed as DER:UserWarning"),
]
