"""The firmware check ids: each a valid finding, and docs/assess.md lists each with its requirements."""

from __future__ import annotations

import re
from pathlib import Path

from otward.core.assess.findings import Severity
from otward.core.firmware.checks import CHECKS, finding_for, is_firmware_check

DOCS = Path(__file__).resolve().parents[4] / "docs" / "assess.md"


def test_every_check_makes_a_valid_finding():
    for check, meaning in CHECKS.items():
        finding = finding_for(check, "image.bin", "evidence")
        assert finding.requirements == meaning.requirements
        assert finding.blocking == (meaning.severity is Severity.HIGH)
    assert is_firmware_check("firmware.image.mismatch")
    assert not is_firmware_check("file")
    assert not is_firmware_check(None)


def test_docs_list_every_check_with_its_requirements():
    rows = {}
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `(firmware\.[a-z_.]+)`(?: \(info\))? \| .* \| ([A-Z ,0-9.]+) \|$", line)
        if match:
            rows[match.group(1)] = tuple(r.strip() for r in match.group(2).split(","))
    assert rows == {check: meaning.requirements for check, meaning in CHECKS.items()}
