"""The console's self-check through the open Pki finds what ``otward assess self`` finds."""

from __future__ import annotations

import pytest

from otward.services.pki import Pki
from otward.services.selfcheck import assess_open_pki, run_selfcheck

pytestmark = pytest.mark.integration


def _key(finding: object) -> tuple[str, str, str]:
    return (finding.check, finding.target, finding.severity.value)  # type: ignore[attr-defined]


def test_same_findings_as_the_cli(pki: Pki) -> None:
    report = run_selfcheck(pki.settings, clock=pki.clock, operational=False)  # opens its own Pki
    found = assess_open_pki(pki)
    skew = {"selfcheck.clock.skew"}  # PostgreSQL only, from the operational clock check
    assert sorted(map(_key, found)) == sorted(k for k in map(_key, report.findings) if k[0] not in skew)
    assert {f.check for f in found} >= {"selfcheck.tls.settings"}
