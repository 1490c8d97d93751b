"""Findings: what an assessment found, as data with a versioned JSON form.

One document shape for every check (TLS, OPC UA, Modbus, firmware, otward's own installation) so the
HTML/Markdown report, a CI gate and the console read the same thing. ``parse_findings`` validates a
document strictly: a report built from a file an attacker or a typo shaped must fail loudly, not render
half of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from otward.core.assess.requirements import validate_requirements

__all__ = [
    "SCHEMA_VERSION",
    "Finding",
    "FindingsDocument",
    "Severity",
    "dump_findings",
    "exit_status",
    "merge_documents",
    "parse_findings",
]

SCHEMA_VERSION: Final = 1
_MAX_TEXT = 8192  # evidence beyond this is cut, so one chatty server cannot bloat a report


class Severity(StrEnum):
    """How urgently a finding needs action; ``high`` fails a CI gate."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for high .. 3 for info, for sorting the most urgent first."""
        return _RANK[self]


_RANK: Final = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2, Severity.INFO: 3}


@dataclass(frozen=True)
class Finding:
    """One thing found at one target.

    ``check`` is a stable dotted identifier (``tls.protocol.legacy``) that an accepted risk refers to;
    ``requirements`` are IEC 62443-4-2 component requirement numbers (``CR 4.3``); ``accepted`` holds the
    reason when the plant accepted the risk (the finding is still reported, marked, and no longer fails
    the gate).
    """

    check: str
    severity: Severity
    target: str
    title: str
    evidence: str
    recommendation: str
    requirements: tuple[str, ...]
    accepted: str | None = None

    def __post_init__(self) -> None:
        if not self.check or any(c.isspace() for c in self.check):
            raise ValueError(f"finding check id {self.check!r} must be a non-empty word")
        if not self.requirements:
            raise ValueError(f"finding {self.check!r} names no IEC 62443-4-2 requirement")
        validate_requirements(self.requirements)
        if len(self.evidence) > _MAX_TEXT:
            object.__setattr__(self, "evidence", self.evidence[: _MAX_TEXT - 1] + "…")

    @property
    def blocking(self) -> bool:
        """A high finding that was not accepted: it fails the gate."""
        return self.severity is Severity.HIGH and self.accepted is None

    def as_accepted(self, reason: str) -> Finding:
        """The same finding marked as an accepted risk."""
        return replace(self, accepted=reason)


@dataclass(frozen=True)
class FindingsDocument:
    """The findings of one or more assessment runs, with when and by what they were made."""

    kind: str
    generated_at: datetime
    tool: str
    targets: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    def sorted(self) -> tuple[Finding, ...]:
        """Most urgent first, then by target and check, so reports and diffs are stable."""
        return tuple(sorted(self.findings, key=lambda f: (f.severity.rank, f.target, f.check)))


def exit_status(documents: Iterable[FindingsDocument]) -> int:
    """1 when any high finding was not accepted, else 0: the CI gate of ``otward assess``."""
    return 1 if any(f.blocking for d in documents for f in d.findings) else 0


def merge_documents(
    documents: Sequence[FindingsDocument], generated_at: datetime, tool: str
) -> FindingsDocument:
    """Several runs as one document (kind ``combined`` unless they agree)."""
    kinds = {d.kind for d in documents}
    kind = kinds.pop() if len(kinds) == 1 else "combined"
    targets = tuple(dict.fromkeys(t for d in documents for t in d.targets))
    findings = tuple(f for d in documents for f in d.findings)
    return FindingsDocument(kind, generated_at, tool, targets, findings)


def dump_findings(document: FindingsDocument) -> str:
    """The JSON form (schema version :data:`SCHEMA_VERSION`, documented in docs/assess.md)."""
    body = {
        "schema": "otward-findings",
        "version": SCHEMA_VERSION,
        "kind": document.kind,
        "generated_at": _rfc3339(document.generated_at),
        "tool": document.tool,
        "targets": list(document.targets),
        "summary": {s.value: sum(1 for f in document.findings if f.severity is s) for s in Severity},
        "findings": [
            {
                "check": f.check,
                "severity": f.severity.value,
                "target": f.target,
                "title": f.title,
                "evidence": f.evidence,
                "recommendation": f.recommendation,
                "requirements": list(f.requirements),
                "accepted": f.accepted,
            }
            for f in document.sorted()
        ],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def parse_findings(text: str | bytes, source: str = "findings") -> FindingsDocument:
    """Read a findings document; raises ValueError naming ``source`` and what is wrong."""
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("schema") != "otward-findings":
        raise ValueError(f"{source}: not an otward findings document (schema 'otward-findings' expected)")
    version = body.get("version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{source}: findings schema version {version!r} is not supported (expected {SCHEMA_VERSION})"
        )
    try:
        generated_at = _parse_time(_text(body, "generated_at"))
        targets = tuple(_text_item(t, "targets") for t in _list(body, "targets"))
        findings = tuple(_parse_finding(item, index) for index, item in enumerate(_list(body, "findings")))
        return FindingsDocument(_text(body, "kind"), generated_at, _text(body, "tool"), targets, findings)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None


def _parse_finding(item: Any, index: int) -> Finding:
    if not isinstance(item, dict):
        raise TypeError(f"findings[{index}] is not an object")
    try:
        severity = Severity(str(item.get("severity")))
    except ValueError:
        raise ValueError(
            f"findings[{index}].severity {item.get('severity')!r} is not one of high, medium, low, info"
        ) from None
    accepted = item.get("accepted")
    if accepted is not None and not isinstance(accepted, str):
        raise TypeError(f"findings[{index}].accepted must be a string or null")
    try:
        return Finding(
            check=_text(item, "check"),
            severity=severity,
            target=_text(item, "target"),
            title=_text(item, "title"),
            evidence=_text(item, "evidence"),
            recommendation=_text(item, "recommendation"),
            requirements=tuple(_text_item(r, "requirements") for r in _list(item, "requirements")),
            accepted=accepted,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"findings[{index}]: {exc}") from None


def _text(body: dict[str, Any], key: str) -> str:
    if key not in body:
        raise KeyError(f"'{key}' is missing")
    return _text_item(body[key], key)


def _text_item(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"'{key}' must be text, not {type(value).__name__}")
    return value


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise TypeError(f"'{key}' must be a list")
    return value


def _rfc3339(value: datetime) -> str:
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'generated_at' {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"'generated_at' {text!r} has no time zone")
    return moment.astimezone(UTC)
