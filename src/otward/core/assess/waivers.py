"""Accepted risks: a plant may decide to live with a finding, with a reason, and the report still shows it.

A waiver names a check id and a target pattern (shell-style, ``plc-*:502``), a reason, and optionally the
date it lapses, so an accepted risk is reviewed rather than forgotten. Waivers are read from a TOML file::

    [[accept]]
    check = "modbus.plaintext"
    target = "10.20.0.*:502"
    reason = "isolated cell network, gateway planned for Q3"
    until = 2027-06-30
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from fnmatch import fnmatchcase

from otward.core.assess.findings import FindingsDocument

__all__ = ["Waiver", "apply_waivers", "parse_waivers"]


@dataclass(frozen=True)
class Waiver:
    """An accepted risk for one check at the targets matching a pattern."""

    check: str
    target: str
    reason: str
    until: date | None = None

    def covers(self, check: str, target: str, today: date) -> bool:
        """Whether this waiver applies (a lapsed waiver covers nothing)."""
        if self.until is not None and today > self.until:
            return False
        return fnmatchcase(check, self.check) and fnmatchcase(target, self.target)


def apply_waivers(document: FindingsDocument, waivers: Sequence[Waiver], today: date) -> FindingsDocument:
    """The document with every finding a waiver covers marked accepted (with the waiver's reason)."""
    findings = []
    for finding in document.findings:
        waiver = next((w for w in waivers if w.covers(finding.check, finding.target, today)), None)
        findings.append(
            finding.as_accepted(waiver.reason) if waiver and finding.accepted is None else finding
        )
    return replace(document, findings=tuple(findings))


def parse_waivers(text: str, source: str = "waivers") -> list[Waiver]:
    """Read accepted risks from TOML; raises ValueError naming the entry and what is wrong."""
    try:
        body = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not TOML ({exc})") from None
    entries = body.get("accept", [])
    if not isinstance(entries, list):
        raise ValueError(f"{source}: 'accept' must be an array of tables ([[accept]])")
    waivers = []
    for index, entry in enumerate(entries):
        where = f"{source}: accept[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} is not a table")
        unknown = set(entry) - {"check", "target", "reason", "until"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        check, target, reason = entry.get("check"), entry.get("target", "*"), entry.get("reason")
        if not isinstance(check, str) or not check:
            raise ValueError(f"{where}.check must name a check id (e.g. 'tls.client_auth.absent')")
        if not isinstance(target, str) or not target:
            raise ValueError(f"{where}.target must be a target pattern")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{where}.reason is required: an accepted risk says why")
        until = entry.get("until")
        if until is not None and (not isinstance(until, date) or hasattr(until, "hour")):
            raise ValueError(f"{where}.until must be a date (2027-06-30)")
        waivers.append(Waiver(check, target, reason.strip(), until))
    return waivers
