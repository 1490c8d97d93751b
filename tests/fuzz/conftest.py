"""Chooses the Hypothesis profile of the fuzz targets (:mod:`tests.fuzz.profile`, docs/testing.md).

* ``fuzz-slice`` (the default run): 200 examples per target, derandomized (the same inputs on
  every run, so CI is reproducible), no example database;
* ``fuzz`` (``python -m pytest -m fuzz``): at least 10,000 examples per target, random,
  failures kept in the local example database (``.hypothesis/``) and printed as a blob to replay.

The run selects ``fuzz`` when its ``-m`` expression selects the ``fuzz`` marker;
``HYPOTHESIS_PROFILE=fuzz`` (or ``fuzz-slice``) forces a profile and ``OTWARD_FUZZ_EXAMPLES=N``
sets the example count of either.
"""

from __future__ import annotations

import os

import pytest

from tests.fuzz.profile import PROFILES, active


def pytest_configure(config: pytest.Config) -> None:
    forced = os.environ.get("HYPOTHESIS_PROFILE")
    if forced in PROFILES:
        active["profile"] = forced
        return
    expression = (config.option.markexpr or "").replace(" ", "")
    selects = "fuzz" in expression and "notfuzz" not in expression
    active["profile"] = "fuzz" if selects else "fuzz-slice"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hypothesis warns when it prints an example of hundreds of kB (a deeply nested document);
    that is a report about the report, not a finding. A ``fuzz`` run gets an hour per target."""
    here = os.path.dirname(__file__) + os.sep
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.filterwarnings("ignore:Generating overly large repr"))
            if active["profile"] == "fuzz":  # 10,000 examples take longer than the suite's 300 s
                item.add_marker(pytest.mark.timeout(3600))
