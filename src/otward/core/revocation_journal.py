"""The revocation journal: every revocation and every CRL number otward published, as lines of JSON.

The database is what a backup restores, so it cannot be the witness of what happened after the
backup. The journal is kept outside it (a file, by default next to the database, better on another
disk: docs/backup.md) and only grows: before a CRL is stored and served, every revocation it lists and
its CRL number are appended (and fsynced). A restore of an older backup re-applies what the journal
holds, so a certificate revoked after the backup stays revoked, and a CRL number never repeats.

This module is the pure part: the entry types, their one-line encoding and the parser. Appending,
locking and reading the file is ``otward.adapters.revocation_journal``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from cryptography.x509 import ReasonFlags

from otward.core.records import CertificateKind
from otward.core.revocation import parse_reason, reason_name
from otward.errors import OtwardError, ParseError

__all__ = [
    "JOURNAL_VERSION",
    "JournalContents",
    "JournalCrl",
    "JournalRevocation",
    "RevocationJournal",
    "encode_entry",
    "parse_journal",
]

JOURNAL_VERSION: Final = 1


@dataclass(frozen=True)
class JournalRevocation:
    """One revoked certificate, with what it takes to store its row again if a backup lacks it."""

    ca: str
    serial: str  # lower-case hex, as stored
    revoked_at: datetime
    reason: ReasonFlags
    certificate_der: bytes | None = None
    profile: str | None = None
    kind: str | None = None
    device_id: str | None = None


@dataclass(frozen=True)
class JournalCrl:
    """A CRL number a CA published (signed and about to be stored)."""

    ca: str
    crl_number: int
    this_update: datetime


JournalEntry = JournalRevocation | JournalCrl


@dataclass
class JournalContents:
    """What a journal holds: the first revocation of each serial, and the highest CRL number per CA."""

    revocations: dict[str, JournalRevocation] = field(default_factory=dict)
    crl_numbers: dict[str, int] = field(default_factory=dict)

    def add(self, entries: Iterable[JournalEntry]) -> None:
        for entry in entries:
            if isinstance(entry, JournalRevocation):
                self.revocations.setdefault(entry.serial, entry)
            else:
                self.crl_numbers[entry.ca] = max(self.crl_numbers.get(entry.ca, 0), entry.crl_number)

    def merge(self, other: JournalContents) -> None:
        self.add(other.revocations.values())
        for ca, number in other.crl_numbers.items():
            self.crl_numbers[ca] = max(self.crl_numbers.get(ca, 0), number)


class RevocationJournal(Protocol):
    """Where :class:`otward.services.revocation.RevocationService` records what it publishes."""

    def known_serials(self) -> frozenset[str]:
        """Serials already journaled (cheap: the file is read only from where it was last read)."""
        ...

    def append(self, entries: Sequence[JournalEntry]) -> None:
        """Append ``entries`` durably (written and fsynced) or raise."""
        ...


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_entry(entry: JournalEntry) -> bytes:
    """One journal line (ending in a newline)."""
    body: dict[str, Any]
    if isinstance(entry, JournalRevocation):
        body = {
            "v": JOURNAL_VERSION,
            "type": "revoked",
            "ca": entry.ca,
            "serial": entry.serial,
            "revoked_at": _time(entry.revoked_at),
            "reason": reason_name(entry.reason),
        }
        if entry.certificate_der is not None:
            body["certificate"] = base64.b64encode(entry.certificate_der).decode()
            body["profile"] = entry.profile
            body["kind"] = entry.kind
            body["device_id"] = entry.device_id
    else:
        body = {
            "v": JOURNAL_VERSION,
            "type": "crl",
            "ca": entry.ca,
            "crl_number": entry.crl_number,
            "this_update": _time(entry.this_update),
        }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def parse_journal(data: bytes, source: str = "journal") -> tuple[list[JournalEntry], int]:
    """The entries of ``data`` and how many bytes of it were complete lines.

    A last line without its newline is a write a crash cut short: it is left for the next read (and
    ignored for good if nothing completes it). Any other line that is not an entry is a ParseError
    naming ``source`` and the line: a journal that cannot be read whole must not be half-believed."""
    end = data.rfind(b"\n") + 1
    entries: list[JournalEntry] = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            entries.append(_parse_line(line))
        except (ValueError, KeyError, TypeError, binascii.Error, OtwardError) as exc:
            raise ParseError(
                f"{source}, line {number}: not a revocation journal entry ({exc})", rule="journal"
            ) from None
    return entries, end


def _parse_time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise TypeError("a time must be text")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(UTC)


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise TypeError(f"'{key}' must be non-empty text")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"'{key}' must be text")
    return value


def _parse_line(line: bytes) -> JournalEntry:
    body = json.loads(line)
    if not isinstance(body, dict):
        raise TypeError("not an object")
    if body.get("v") != JOURNAL_VERSION:
        raise ValueError(f"version {body.get('v')!r} is not {JOURNAL_VERSION}")
    kind = body.get("type")
    if kind == "crl":
        number = body["crl_number"]
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ValueError("crl_number must be a positive integer")
        return JournalCrl(_text(body, "ca"), number, _parse_time(body["this_update"]))
    if kind != "revoked":
        raise ValueError(f"unknown type {kind!r}")
    serial = _text(body, "serial")
    if serial != format(int(serial, 16), "x"):
        raise ValueError(f"serial {serial!r} is not lower-case hex without leading zeros")
    certificate = body.get("certificate")
    kind = _optional_text(body, "kind")
    if kind is not None:
        CertificateKind(kind)  # ValueError for a kind otward does not store
    return JournalRevocation(
        ca=_text(body, "ca"),
        serial=serial,
        revoked_at=_parse_time(body["revoked_at"]),
        reason=parse_reason(_text(body, "reason")),
        certificate_der=base64.b64decode(certificate, validate=True) if certificate is not None else None,
        profile=_optional_text(body, "profile"),
        kind=kind,
        device_id=_optional_text(body, "device_id"),
    )
