"""Writing, reading, verifying and exporting the audit trail.

Services describe what happened with :meth:`AuditLog.event`; the store writes the
event in the same transaction as the action. Failures that can come by the thousand
(``auth.failed``) are aggregated: the first of a source is written at once, later ones
are counted and written as one event with the count when :meth:`AuditLog.flush_failures`
runs (each minute, and when the process stops). This module also signs the chain
head with the audit signer (a key certified by the issuing CA, with the audit
EKU), checks the trail against its signed heads and a trust anchor kept outside
the database (``otward audit verify``), and renders events as JSON Lines or
RFC 5424 syslog.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.audit import (
    AGGREGATED_SUBJECT,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    EventType,
    HeadSchedule,
    HeadSigner,
    KnownHead,
    Outcome,
    SignedHead,
    TrailCheck,
    TrailStatus,
    check_extension,
    format_time,
    head_bytes,
    is_head_due,
    verify_head_signer,
    verify_trail,
)
from otward.core.keys import sign_data, verify_data
from otward.core.ports import AuditStore
from otward.core.syslog import is_line_unsafe
from otward.errors import ConfigError, IntegrityError, OtwardError

__all__ = [
    "CLI_ACTOR",
    "DEFAULT_MAX_UNSIGNED",
    "SYSTEM_ACTOR",
    "Actor",
    "AuditLog",
    "ChainReport",
    "HeadWitness",
    "to_jsonl",
]

DEFAULT_MAX_UNSIGNED = timedelta(minutes=5)
_PAGE = 5000


@dataclass(frozen=True)
class Actor:
    """Who asked and from where: what each event records about the requester."""

    component: str  # ca, api, cli, ocsp, crl, est, gateway, agent, edge
    identity: str  # admin:<account>, local:<user>, token:<id> (edge), system
    source: str | None = None  # client address
    request_id: str | None = None
    credential: str | None = None  # what the account proved itself with: token:<id>, password


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
    check: TrailCheck
    head_sequence: int  # what the ledger row said when the check began
    max_unsigned: timedelta = DEFAULT_MAX_UNSIGNED

    def summary(self) -> dict[str, object]:
        """The fields ``audit verify --json`` and ``GET /api/v1/audit/verify`` show."""
        check = self.check
        return {
            "ok": check.ok,
            "status": check.status.value,
            "records": check.records,
            "signed_heads": check.heads,
            "head_sequence": self.head_sequence,
            "signed_sequence": check.signed_sequence,
            "signed_at": format_time(check.signed_at) if check.signed_at else None,
            "unsigned": check.unsigned,
            "unsigned_since": format_time(check.unsigned_since) if check.unsigned_since else None,
            "unsigned_seconds": (
                round(check.unsigned_for.total_seconds(), 3) if check.unsigned_for is not None else None
            ),
            "max_unsigned_seconds": self.max_unsigned.total_seconds(),
            "first_bad_sequence": check.first_bad_sequence,
            "problem": check.problem,
        }


class HeadWitness(Protocol):
    """The last head this installation signed, kept outside the database (``DATA/audit-head.json``),
    so that a trail cut back behind it is noticed by the signer and by ``audit verify``.

    (A port; it lives here until ``core.ports`` is free to change.)"""

    @property
    def source(self) -> str:
        """How problems name it."""
        ...

    def load(self) -> tuple[int, bytes] | None: ...

    def save(self, sequence: int, head_hash: bytes, *, rollback: bool = False) -> None:
        """Remember ``(sequence, head_hash)`` if it is newer than what is kept (or ``rollback``)."""
        ...


def _no_trust_anchor() -> Sequence[x509.Certificate]:
    raise ConfigError("no trust anchor for the audit signer: give the root certificate (--trust ROOT.pem)")


@dataclass
class _SignerCache:
    """Per verification: each signer certificate read once, each path checked once per validity window."""

    certificates: dict[int, x509.Certificate | None] = field(default_factory=dict)
    verified: dict[int, list[HeadSigner]] = field(default_factory=dict)


class AuditLog:
    def __init__(
        self,
        store: AuditStore,
        *,
        host: str,
        clock: Callable[[], datetime],
        signer: Callable[[], tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate]],
        signer_certificate: Callable[[int], x509.Certificate | None],
        ca_certificates: Callable[[], Sequence[x509.Certificate]] = tuple,
        trust_anchors: Callable[[], Sequence[x509.Certificate]] = _no_trust_anchor,
        witness: HeadWitness | None = None,
        schedule: HeadSchedule = HeadSchedule(),  # noqa: B008 - frozen
        max_unsigned: timedelta = DEFAULT_MAX_UNSIGNED,
    ) -> None:
        """``signer_certificate`` reads a certificate by serial from the database and
        ``ca_certificates`` every CA certificate there (both untrusted: a head's signer must chain
        through them to one of ``trust_anchors``, read from outside the database)."""
        self._store = store
        self._host = host
        self._clock = clock
        self._signer = signer
        self._signer_certificate = signer_certificate
        self._ca_certificates = ca_certificates
        self._trust_anchors = trust_anchors
        self._witness = witness
        self._schedule = schedule
        self._max_unsigned = max_unsigned
        self._lock = threading.Lock()
        self._signed: tuple[int, bytes] | None = None  # the last head this process signed
        self._tallies: dict[tuple[EventType, str, str | None], _Tally] = {}
        self._tally_lock = threading.Lock()

    @property
    def schedule(self) -> HeadSchedule:
        return self._schedule

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
        if actor.credential is not None:
            merged.setdefault("credential", actor.credential)
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
                AGGREGATED_SUBJECT,
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

    def sign_head(self, *, force: bool = False, accept_rollback: Actor | None = None) -> SignedHead | None:
        """Sign the current head if no stored head covers it yet (or ``force``): what a command that
        added events does before it exits.

        The head is signed only if the trail still extends the last head this installation signed
        (IntegrityError otherwise), unless ``accept_rollback`` names who acknowledges a trail that
        was legitimately set back (a restored backup): then an ``integrity.failed`` event records
        it and the new head is signed."""

        def moved(latest: SignedHead | None, sequence: int, _now: datetime) -> bool:
            return sequence > 0 and (force or latest is None or latest.sequence != sequence)

        return self._sign(moved, accept_rollback)

    def sign_head_if_due(self) -> SignedHead | None:
        """Sign the head when the schedule says so (the running service calls this every second)."""

        def due(latest: SignedHead | None, sequence: int, now: datetime) -> bool:
            return is_head_due(latest, sequence, now, self._schedule)

        return self._sign(due, None)

    def _sign(
        self,
        due: Callable[[SignedHead | None, int, datetime], bool],
        accept_rollback: Actor | None,
    ) -> SignedHead | None:
        with self._lock:
            sequence, _ = self._store.audit_head()
            latest = self._store.latest_audit_head()
            if not due(latest, sequence, self._clock()):
                return None
            # First the key: creating or renewing the signer appends an event the head must cover.
            key, certificate = self._signer()
            sequence, head_hash = self._store.audit_head()
            problem = self._extension_problem(sequence, head_hash)
            if problem is not None:
                if accept_rollback is None:
                    raise IntegrityError(
                        f"audit head not signed: {problem} (if a backup was restored, check and run "
                        "'otward audit sign --accept-rollback')",
                        rule="audit-rewritten",
                    )
                self.record(
                    self.event(
                        accept_rollback,
                        EventType.INTEGRITY_FAILED,
                        "audit-trail",
                        outcome=Outcome.FAILURE,
                        reason=problem,
                        details={"acknowledged": "rollback"},
                    )
                )
                sequence, head_hash = self._store.audit_head()
            signed_at = self._clock()
            head = SignedHead(
                sequence=sequence,
                hash=head_hash,
                signed_at=signed_at,
                signature=sign_data(key, head_bytes(sequence, head_hash, signed_at)),
                signer_serial=certificate.serial_number,
            )
            if not self._store.add_audit_head(head, after=latest):
                return None  # another process (a second service worker) signed a head meanwhile
            self._signed = (sequence, head_hash)
            if self._witness is not None:
                self._witness.save(sequence, head_hash, rollback=problem is not None)
            return head

    def _extension_problem(self, sequence: int, head_hash: bytes) -> str | None:
        """What stands against signing ``(sequence, head_hash)``: the trail must lead there from the
        last head this process or this installation signed (else from the newest stored head, on a
        host that never signed; else from the start)."""
        bases = [b for b in (self._signed, self._witness.load() if self._witness else None) if b]
        if bases:
            base: tuple[int, bytes] | None = max(bases, key=lambda b: b[0])
        else:
            latest = self._store.latest_audit_head()
            base = (latest.sequence, latest.hash) if latest is not None else None
        if base is not None and base[0] > sequence:
            return f"the trail ends at record {sequence}, but record {base[0]} was signed before"
        first = base[0] if base is not None else 1
        return check_extension(self._records(first, sequence), base, (sequence, head_hash))

    def _records(self, first: int, last: int) -> Iterator[AuditRecord]:
        """Records ``first`` .. ``last`` in order, a page at a time."""
        after = first - 1
        while after < last:
            page, _ = self._store.list_audit(
                AuditFilter(after_sequence=after), limit=min(_PAGE, last - after), offset=0
            )
            if not page:
                return
            yield from page
            after = page[-1].sequence

    # --- verification ---------------------------------------------------------------------------

    def verify(
        self,
        *,
        trust: Sequence[x509.Certificate] | None = None,
        max_unsigned: timedelta | None = None,
    ) -> ChainReport:
        """Check the whole trail against its signed heads, the ledger row and this installation's
        witness; the first problem is reported. ``trust`` replaces the installation's root
        certificate file as the anchor the head signers must chain to."""
        anchors = list(trust) if trust is not None else list(self._trust_anchors())
        limit = max_unsigned if max_unsigned is not None else self._max_unsigned
        # Read before the records: whatever they name was committed before the walk begins, and the
        # tail's age does not grow with the time a long walk takes.
        now = self._clock()
        ledger = self._store.audit_head()
        try:
            heads = self._store.audit_heads()
        except IntegrityError as exc:
            problem = TrailCheck(TrailStatus.BROKEN, 0, 0, ledger[0], problem=exc.message)
            return ChainReport(check=problem, head_sequence=ledger[0], max_unsigned=limit)
        witnessed = self._witness.load() if self._witness is not None else None
        known = [KnownHead(*witnessed, self._witness.source)] if witnessed and self._witness else []
        candidates = list(self._ca_certificates())
        cache = _SignerCache()

        def head_problem(head: SignedHead) -> str | None:
            signer = self._head_signer(head, candidates, anchors, cache)
            if isinstance(signer, str):
                return signer
            try:
                valid = verify_data(
                    signer.key, head.signature, head_bytes(head.sequence, head.hash, head.signed_at)
                )
            except OtwardError as exc:
                return exc.message
            return None if valid else "the signature does not verify"

        try:
            check = verify_trail(
                self._store.iter_audit(),
                heads,
                ledger=ledger,
                head_problem=head_problem,
                now=now,
                max_unsigned=limit,
                known=known,
            )
        except IntegrityError as exc:  # an unreadable record
            check = TrailCheck(
                TrailStatus.BROKEN,
                0,
                len(heads),
                ledger[0],
                first_bad_sequence=exc.sequence,
                problem=exc.message,
            )
        return ChainReport(check=check, head_sequence=ledger[0], max_unsigned=limit)

    def _head_signer(
        self,
        head: SignedHead,
        candidates: Sequence[x509.Certificate],
        anchors: Sequence[x509.Certificate],
        cache: _SignerCache,
    ) -> HeadSigner | str:
        serial = head.signer_serial
        if serial not in cache.certificates:
            try:
                cache.certificates[serial] = self._signer_certificate(serial)
            except ValueError:  # the row's DER does not parse
                cache.certificates[serial] = None
        certificate = cache.certificates[serial]
        if certificate is None:
            return f"its signer certificate {serial:x} is not in the database, or unreadable"
        verified = cache.verified.setdefault(serial, [])
        for signer in verified:
            if signer.valid_at(head.signed_at):
                return signer
        try:
            signer = verify_head_signer(certificate, candidates, anchors, head.signed_at)
        except IntegrityError as exc:
            return exc.message
        verified.append(signer)
        return signer


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
