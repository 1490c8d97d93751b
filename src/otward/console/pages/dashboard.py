"""The dashboard: what needs attention across the installation, at a glance.

Every signed-in account sees it; each card only when the account's roles may read its area
(certificates, CRLs and findings: pki; enrollment activity: enrollment, for every owner; recent
events and the chain's signed head: audit). Every figure comes from one grouped query, so the
page stays quick with many certificates; only the self-check walks the whole audit trail: it runs
in the background and its result is kept for :data:`FINDINGS_TTL` seconds in this process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from otward.console.render import render
from otward.console.viewer import Viewer, signed_in
from otward.core.assess.findings import Finding, Severity
from otward.core.audit import AuditFilter, AuditRecord, EventType
from otward.core.authz import Area
from otward.core.charts import BarChart, DayBucket, bar_chart, bucket_days
from otward.http.auth import get_pki
from otward.services.pki import Pki
from otward.services.selfcheck import assess_open_pki

__all__ = ["EXPIRY_DAYS", "EXPIRY_WARNING_DAYS", "FINDINGS_TTL", "FINDINGS_WAIT", "router"]

router = APIRouter()
log = logging.getLogger("otward.console")

EXPIRY_WARNING_DAYS = 30  # "expiring" in the counts per CA
EXPIRY_DAYS = 90  # the expiry chart's horizon, in weekly bars
ENROLLMENT_DAYS = 14
RECENT_EVENTS = 10
FINDINGS_TTL = 60.0  # seconds a self-check result is shown before it is run again
FINDINGS_WAIT = 2.0  # seconds a view waits for a self-check that is running
_ENROLL_TYPES = (EventType.ENROLL_SUCCEEDED.value, EventType.ENROLL_REFUSED.value)


@dataclass(frozen=True)
class CaCounts:
    ca: str
    valid: int
    expiring: int
    expired: int
    revoked: int

    @property
    def total(self) -> int:
        return self.valid + self.expiring + self.expired + self.revoked


@dataclass(frozen=True)
class CrlState:
    ca: str
    crl_number: int | None
    this_update: datetime | None
    next_update: datetime | None
    stale: bool  # past nextUpdate, or none published
    behind: bool  # does not list every revocation stored for the CA


@dataclass(frozen=True)
class ChainState:
    last_sequence: int
    signed_sequence: int | None
    signed_at: datetime | None
    unsigned: int
    unsigned_since: datetime | None
    overdue: bool  # unsigned records older than audit.max_unsigned_seconds
    max_unsigned: timedelta


@dataclass(frozen=True)
class EnrollmentDay:
    day: date
    succeeded: int
    refused: int


@dataclass(frozen=True)
class Findings:
    findings: tuple[Finding, ...]
    generated_at: datetime  # the installation's clock when the checks ran
    counts: dict[str, int]
    failed: str | None = None  # why the self-check could not run


class _FindingsCache:
    """The last self-check of this process, reused for :data:`FINDINGS_TTL` seconds.

    The self-check verifies the whole audit trail (seconds on a long one), so it runs in a thread
    of its own: the view that starts it waits at most :data:`FINDINGS_WAIT` seconds; every view
    shows the latest result there is (its time on the page), or says that it is running. Ages are
    monotonic time: the installation's clock may be set by a test, the cache's age must not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Findings | None = None
        self._taken = 0.0
        self._running: threading.Thread | None = None

    def get(self, pki: Pki, wait: float) -> Findings | None:
        started = None
        with self._lock:
            fresh = self._value is not None and time.monotonic() - self._taken < FINDINGS_TTL
            if not fresh and self._running is None:
                started = self._running = threading.Thread(
                    target=self._run, args=(pki,), name="console-selfcheck", daemon=True
                )
                started.start()
        if started is not None:  # only the view that started it waits; the others show what is there
            started.join(wait)
        with self._lock:
            return self._value

    def _run(self, pki: Pki) -> None:
        try:
            found = sorted(assess_open_pki(pki), key=lambda f: (f.severity.rank, f.target, f.check))
            counts = {s.value: sum(1 for f in found if f.severity is s) for s in Severity}
            value = Findings(tuple(found), pki.clock(), counts)
        except Exception as exc:
            log.error("the dashboard's self-check failed: %s", exc, exc_info=exc)
            value = Findings((), pki.clock(), {s.value: 0 for s in Severity}, failed=type(exc).__name__)
        with self._lock:
            self._value = value
            self._taken = time.monotonic()
            self._running = None


def _findings_cache(request: Request) -> _FindingsCache:
    state = request.app.state
    cache = getattr(state, "dashboard_findings", None)
    if not isinstance(cache, _FindingsCache):
        cache = state.dashboard_findings = _FindingsCache()
    return cache


def _start_of_day(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, tzinfo=UTC)


def certificate_counts(pki: Pki, now: datetime) -> list[CaCounts]:
    rows = pki.stores.statistics.certificate_status_counts(now, now + timedelta(days=EXPIRY_WARNING_DAYS))
    return [CaCounts(*row) for row in rows]


def expiry_buckets(pki: Pki, now: datetime) -> list[DayBucket]:
    """13 weekly buckets from today (UTC) over the next :data:`EXPIRY_DAYS` days."""
    today = _start_of_day(now)
    per_day = pki.stores.statistics.expiring_per_day(now, today + timedelta(days=EXPIRY_DAYS))
    return bucket_days(per_day, today.date(), EXPIRY_DAYS, 7)


def enrollment_days(pki: Pki, now: datetime) -> list[EnrollmentDay]:
    first = _start_of_day(now) - timedelta(days=ENROLLMENT_DAYS - 1)
    counts = pki.stores.statistics.events_per_day(_ENROLL_TYPES, first)
    days = [first.date() + timedelta(days=i) for i in range(ENROLLMENT_DAYS)]
    succeeded, refused = _ENROLL_TYPES
    return [EnrollmentDay(d, counts.get((d, succeeded), 0), counts.get((d, refused), 0)) for d in days]


def crl_states(pki: Pki, now: datetime) -> list[CrlState]:
    behind = set(pki.stores.crls.stale_crls())
    states = []
    for authority in pki.authorities.list():
        crl = pki.stores.crls.get_crl(authority.name)
        if crl is None:
            states.append(CrlState(authority.name, None, None, None, stale=True, behind=True))
            continue
        states.append(
            CrlState(
                authority.name,
                crl.crl_number,
                crl.this_update,
                crl.next_update,
                stale=crl.next_update <= now,
                behind=authority.name in behind,
            )
        )
    return states


def chain_state(pki: Pki, now: datetime) -> ChainState:
    """What the stored signed heads say about the trail's end, without checking any hash or
    signature (``audit verify`` does that)."""
    store = pki.stores.audit
    last, _hash = store.audit_head()
    head = store.latest_audit_head()
    signed = head.sequence if head is not None else 0
    unsigned = max(0, last - signed)
    since = None
    if unsigned:
        first, _ = store.list_audit(AuditFilter(after_sequence=signed), limit=1, offset=0)
        since = first[0].event.time if first else None
    limit = timedelta(seconds=pki.settings.audit.max_unsigned_seconds)
    return ChainState(
        last_sequence=last,
        signed_sequence=head.sequence if head is not None else None,
        signed_at=head.signed_at if head is not None else None,
        unsigned=unsigned,
        unsigned_since=since,
        overdue=since is not None and now - since > limit,
        max_unsigned=limit,
    )


def recent_events(pki: Pki) -> list[AuditRecord]:
    """The last :data:`RECENT_EVENTS` records, newest first."""
    last, _hash = pki.stores.audit.audit_head()
    records, _ = pki.stores.audit.list_audit(
        AuditFilter(after_sequence=max(0, last - RECENT_EVENTS)), limit=RECENT_EVENTS, offset=0
    )
    return list(reversed(records))


def _chart(buckets: list[DayBucket]) -> BarChart:
    return bar_chart([(b.label, b.count) for b in buckets])


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, viewer: Annotated[Viewer, Depends(signed_in)]) -> HTMLResponse:
    pki = get_pki(request)
    now = pki.clock()
    context: dict[str, Any] = {"now": now}
    shows_pki = viewer.may(Area.PKI)
    if shows_pki:
        buckets = expiry_buckets(pki, now)
        counts = certificate_counts(pki, now)
        context |= {
            "counts": counts,
            "totals": CaCounts(
                "all",
                sum(c.valid for c in counts),
                sum(c.expiring for c in counts),
                sum(c.expired for c in counts),
                sum(c.revoked for c in counts),
            ),
            "expiry": buckets,
            "expiry_chart": _chart(buckets),
            "crls": crl_states(pki, now),
            "findings": _findings_cache(request).get(pki, FINDINGS_WAIT),
        }
    # enrollments of every owner: an owner-limited officer is not shown others' activity
    shows_enrollment = viewer.owners(Area.ENROLLMENT) is None
    if shows_enrollment:
        days = enrollment_days(pki, now)
        context |= {
            "enrollment": days,
            "enrollment_chart": bar_chart([(f"{d.day:%m-%d}", d.succeeded + d.refused) for d in days]),
        }
    shows_audit = viewer.may(Area.AUDIT)
    if shows_audit:
        context |= {"chain": chain_state(pki, now), "events": recent_events(pki)}
    return render(
        request,
        "dashboard.html",
        viewer,
        shows_pki=shows_pki,
        shows_enrollment=shows_enrollment,
        owner_limited_enrollment=not shows_enrollment and viewer.may_some(Area.ENROLLMENT),
        shows_audit=shows_audit,
        expiry_days=EXPIRY_DAYS,
        warning_days=EXPIRY_WARNING_DAYS,
        enrollment_days=ENROLLMENT_DAYS,
        findings_ttl=int(FINDINGS_TTL),
        **context,
    )
