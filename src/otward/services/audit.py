"""Writing, reading, verifying and exporting the audit trail.

Services describe what happened with :meth:`AuditLog.event`; the store writes the
event in the same transaction as the action. Failures that can come by the thousand
(``auth.failed``) are aggregated: the first of a source is written at once, later ones
are counted and written as one event with the count when :meth:`AuditLog.flush_failures`
runs (each minute, and when the process stops). This module also signs the chain
head with the audit signer (a key certified by the issuing CA), checks the chain
(``otward audit verify``) and renders events as JSON Lines or RFC 5424 syslog.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.audit import (
    AuditEvent,
    AuditRecord,
    ChainCheck,
    EventType,
    Outcome,
    SignedHead,
    check_chain,
    format_time,
    head_bytes,
)
from otward.core.keys import sign_data, verify_data
from otward.core.ports import AuditStore
from otward.core.syslog import format_message, is_line_unsafe
from otward.errors import IntegrityError

__all__ = ["CLI_ACTOR", "SYSTEM_ACTOR", "Actor", "AuditLog", "ChainReport", "to_jsonl", "to_syslog"]


@dataclass(frozen=True)
class Actor:
    """Who asked and from where: what each event records about the requester."""

    component: str  # ca, api, cli, ocsp, crl, est, gateway, agent, edge
    identity: str  # token:<id>, cli:<user>, system
    source: str | None = None  # client address
    request_id: str | None = None


SYSTEM_ACTOR = Actor(component="ca", identity="system")
CLI_ACTOR = Actor(component="cli", identity="cli")


# Sources whose failures are counted between two flushes; past that, failures are written one by one
# (the per-source limits of the API keep each source to a few anyway).
_MAX_TALLIED = 10_000


@dataclass
class _Tally:
    """Failures of one (type, component, source) counted since the first of them was written."""

    count: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class ChainReport:
    check: ChainCheck
    head_sequence: int


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        *,
        host: str,
        clock: Callable[[], datetime],
        signer: Callable[[], tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]],
        signer_certificate: Callable[[int], x509.Certificate | None],
    ) -> None:
        self._store = store
        self._host = host
        self._clock = clock
        self._signer = signer
        self._signer_certificate = signer_certificate
        self._lock = threading.Lock()
        self._signed_through = -1  # sequence of the last head this process signed
        self._tallies: dict[tuple[EventType, str, str | None], _Tally] = {}
        self._tally_lock = threading.Lock()

    def event(
        self,
        actor: Actor,
        type: EventType,
        subject: str,
        *,
        outcome: Outcome = Outcome.SUCCESS,
        reason: str | None = None,
        details: Mapping[str, str] | None = None,
    ) -> AuditEvent:
        merged = {"actor": actor.identity, **(details or {})}
        return AuditEvent(
            time=self._clock(),
            host=self._host,
            component=actor.component,
            type=type,
            subject=subject,
            outcome=outcome,
            reason=reason,
            source=actor.source,
            request_id=actor.request_id,
            details=merged,
        )

    def record(self, *events: AuditEvent) -> list[AuditRecord]:
        """Write events that go with no other change (refusals, authentication failures)."""
        return self._store.append_events(events)

    def record_failure(self, event: AuditEvent) -> None:
        """Record a failure that may repeat by the thousand (``auth.failed``): the first of its type,
        component and source since the last :meth:`flush_failures` is written now; later ones are
        only counted, for the flush to write as one event."""
        key = (event.type, event.component, event.source)
        with self._tally_lock:
            tally = self._tallies.get(key)
            if tally is not None:
                tally.count += 1
                tally.last = event.time
                return
            if len(self._tallies) < _MAX_TALLIED:
                self._tallies[key] = _Tally(0, event.time, event.time)
        self.record(event)

    def flush_failures(self) -> int:
        """Write one event per source whose failures were counted since the last flush, with the
        count (``details.failures``) and the first and last time; returns how many failures they
        stand for. A source's next failure is written on its own again."""
        with self._tally_lock:
            tallies, self._tallies = self._tallies, {}
        events = [
            self.event(
                Actor(component=component, identity="anonymous", source=source),
                type,
                "(repeated failures)",
                outcome=Outcome.FAILURE,
                reason=f"{tally.count} more failures from {source or 'an unknown source'}",
                details={
                    "failures": str(tally.count),
                    "first": format_time(tally.first),
                    "last": format_time(tally.last),
                },
            )
            for (type, component, source), tally in sorted(
                tallies.items(), key=lambda item: (item[0][0].value, item[0][1], item[0][2] or "")
            )
            if tally.count
        ]
        if events:
            self.record(*events)
        return sum(int(e.details["failures"]) for e in events)

    # --- signed heads ---------------------------------------------------------------------------

    def sign_head(self, *, force: bool = False) -> SignedHead | None:
        """Sign the current chain head if it moved since the last signature (or ``force``)."""
        with self._lock:
            sequence, head_hash = self._store.audit_head()
            if sequence == 0 or (not force and sequence == self._signed_through):
                return None
            latest = self._store.latest_audit_head()
            if not force and latest is not None and latest.sequence == sequence:
                self._signed_through = sequence
                return None
            key, certificate = self._signer()
            signed_at = self._clock()
            head = SignedHead(
                sequence=sequence,
                hash=head_hash,
                signed_at=signed_at,
                signature=sign_data(key, head_bytes(sequence, head_hash, signed_at)),
                signer_serial=certificate.serial_number,
            )
            self._store.add_audit_head(head)
            self._signed_through = sequence
            return head

    # --- verification ---------------------------------------------------------------------------

    def verify(self) -> ChainReport:
        """Walk the whole chain and every signed head; the first problem is reported."""

        def signature_ok(head: SignedHead) -> bool:
            certificate = self._signer_certificate(head.signer_serial)
            if certificate is None:
                return False
            return verify_data(
                certificate.public_key(), head.signature, head_bytes(head.sequence, head.hash, head.signed_at)
            )

        records = self._store.iter_audit()
        try:
            check = check_chain(records, self._store.audit_heads(), head_signature_valid=signature_ok)
        except IntegrityError as exc:
            check = ChainCheck(False, 0, 0, exc.sequence, exc.message)
        sequence, _ = self._store.audit_head()
        return ChainReport(check=check, head_sequence=sequence)


def to_jsonl(records: Iterator[AuditRecord]) -> Iterator[str]:
    """One JSON object per line: the event plus its sequence and chain hash.

    JSON escapes the C0 controls; the line separators it leaves alone (NEL, U+2028, U+2029) and
    the other control and format characters are escaped too, so that a reader splitting on any
    line break still sees one event per line.
    """
    for record in records:
        line = {"sequence": record.sequence, **record.event.to_dict(), "hash": record.hash.hex()}
        yield _one_line(json.dumps(line, sort_keys=True, ensure_ascii=False)) + "\n"


def _one_line(text: str) -> str:
    """JSON text with the characters of :func:`is_line_unsafe` as ``\\uXXXX`` escapes (a surrogate
    pair above the BMP); outside strings JSON has none of them, so the value decodes the same."""
    if text.isascii() and "\x7f" not in text:
        return text
    out = []
    for char in text:
        code = ord(char)
        if not is_line_unsafe(char):
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return "".join(out)


_SEVERITY = {Outcome.SUCCESS: 6, Outcome.FAILURE: 4}  # informational / warning
_FACILITY = 10  # security/authorization (authpriv)
_SD_ID = "otward@32473"  # RFC 5424 requires a private enterprise number; 32473 is the documentation PEN


def to_syslog(record: AuditRecord) -> str:
    """RFC 5424 message with the event in structured data (no trailing newline, never a line break)."""
    event = record.event
    params = {
        "seq": str(record.sequence),
        "type": event.type.value,
        "subject": event.subject,
        "outcome": event.outcome.value,
        "hash": record.hash.hex(),
    }
    if event.reason:
        params["reason"] = event.reason
    if event.source:
        params["src"] = event.source
    for key, value in event.details.items():
        params.setdefault(key, str(value))  # details never override the event's own fields
    return format_message(
        priority=_FACILITY * 8 + _SEVERITY[event.outcome],
        timestamp=format_time(event.time),
        hostname=event.host,
        app_name=f"otward-{event.component}",
        procid=event.request_id,
        msgid=event.type.value.replace(".", "-"),
        sd_id=_SD_ID,
        params=params,
        msg=f"{event.type.value} {event.outcome.value}: {event.subject}",
    )
