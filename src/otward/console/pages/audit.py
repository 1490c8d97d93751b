"""The audit page: the trail's events, filtered and paged in SQL (newest first), one event in full,
and "Verify chain", the check ``otward audit verify`` makes (hash chain and a signed head covering
the end of the trail).

The filter form is a plain GET form (htmx swaps only the results); a value the form cannot take
re-renders it with a 400 naming the field. Verification reads the whole trail, so it is a POST
with the CSRF token (nothing changes, it is only expensive) and runs one at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from otward.console.paging import PAGE_SIZE, parse_page
from otward.console.render import render, wants_block
from otward.console.viewer import Submitted, Viewer, changing, reading
from otward.core.audit import AuditFilter, AuditRecord, EventType, TrailStatus
from otward.core.authz import Action, Area
from otward.errors import ConflictError, InvalidRequestError, NotFoundError
from otward.http.auth import get_pki
from otward.services.audit import ChainReport
from otward.services.queries import OUTCOMES, audit_filter

__all__ = ["AuditQuery", "router"]

router = APIRouter()

_MATCHES = ("contains", "equals")
_verifying = threading.Lock()  # one verification at a time: each reads the whole trail


@dataclass(frozen=True)
class AuditQuery:
    """The filter form's fields as typed (kept as text to fill the form again and build links)."""

    since: str = ""
    until: str = ""
    type: str = ""
    component: str = ""
    subject: str = ""
    match: str = "contains"
    outcome: str = ""
    page: int = 1

    def link(self, page: int) -> str:
        """The query string of ``page`` with the same filters."""
        fields = {
            "since": self.since,
            "until": self.until,
            "type": self.type,
            "component": self.component,
            "subject": self.subject,
            "match": self.match if self.subject else "",
            "outcome": self.outcome,
        }
        kept = {name: value for name, value in fields.items() if value}
        if page > 1:
            kept["page"] = str(page)
        return "?" + urlencode(kept) if kept else "?"


class _FieldError(InvalidRequestError):
    """A filter value the form cannot take; names the field."""


def _text(request: Request, name: str, limit: int) -> str:
    value = request.query_params.get(name, "").strip()
    if len(value) > limit:
        raise _FieldError(f"{name}: at most {limit} characters", rule=name)
    return value


def _read_query(request: Request) -> AuditQuery:
    try:
        page = parse_page(_text(request, "page", 8))
    except InvalidRequestError as exc:
        raise _FieldError(exc.message, rule="page") from None
    match = _text(request, "match", 16) or "contains"
    if match not in _MATCHES:
        raise _FieldError(f"match: contains or equals, not '{match}'", rule="match")
    return AuditQuery(
        since=_text(request, "since", 64),
        until=_text(request, "until", 64),
        type=_text(request, "type", 64),
        component=_text(request, "component", 32),
        subject=_text(request, "subject", 512),
        match=match,
        outcome=_text(request, "outcome", 16),
        page=page,
    )


def _filter(request: Request, query: AuditQuery) -> AuditFilter:
    """The store's filter; a bad value raises an error naming the form's field."""
    now = get_pki(request).clock()
    for name in ("since", "until", "type", "outcome"):
        try:
            audit_filter(now, **{name: getattr(query, name) or None})
        except InvalidRequestError as exc:
            raise _FieldError(f"{name}: {exc.message}", rule=name) from None
    base = audit_filter(
        now,
        since=query.since or None,
        until=query.until or None,
        type=query.type or None,
        outcome=query.outcome or None,
        subject=query.subject if query.subject and query.match == "equals" else None,
    )
    if base.since is not None and base.until is not None and base.until <= base.since:
        raise _FieldError("until: must be after since", rule="until")
    return AuditFilter(
        since=base.since,
        until=base.until,
        type=base.type,
        outcome=base.outcome,
        subject=base.subject,
        component=query.component or None,
        subject_contains=query.subject if query.subject and query.match == "contains" else None,
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, viewer: Annotated[Viewer, Depends(reading(Area.AUDIT))]) -> HTMLResponse:
    error: str | None = None
    records: list[AuditRecord] = []
    total = 0
    try:
        query = _read_query(request)
        selected = _filter(request, query)
    except _FieldError as exc:
        error = exc.message
        params = request.query_params
        query = AuditQuery(
            since=params.get("since", "")[:64],
            until=params.get("until", "")[:64],
            type=params.get("type", "")[:64],
            component=params.get("component", "")[:32],
            subject=params.get("subject", "")[:512],
            outcome=params.get("outcome", "")[:16],
        )
    else:
        found, total = get_pki(request).stores.audit.list_audit(
            selected, limit=PAGE_SIZE, offset=(query.page - 1) * PAGE_SIZE, newest_first=True
        )
        records = list(found)
    first = (query.page - 1) * PAGE_SIZE + 1
    partial = wants_block(request, "results")
    return render(
        request,
        "audit.html",
        viewer,
        # htmx swaps only 2xx answers: the partial carries the error with 200, the page with 400
        status_code=400 if error and not partial else 200,
        block="results" if partial else None,
        query=query,
        error=error,
        records=records,
        total=total,
        first=first,
        last=first + len(records) - 1,
        has_previous=query.page > 1,
        has_next=first - 1 + len(records) < total,
        types=[t.value for t in EventType],
        outcomes=OUTCOMES,
        filtered=any((query.since, query.until, query.type, query.component, query.subject, query.outcome)),
    )


@router.get("/audit/{sequence}", response_class=HTMLResponse)
def audit_event(
    request: Request,
    sequence: Annotated[int, Path(ge=1, le=2**62)],
    viewer: Annotated[Viewer, Depends(reading(Area.AUDIT))],
) -> HTMLResponse:
    store = get_pki(request).stores.audit
    found, _total = store.list_audit(AuditFilter(after_sequence=sequence - 1), limit=1, offset=0)
    if not found or found[0].sequence != sequence:
        raise NotFoundError(f"there is no audit event {sequence}", rule="audit-event")
    record = found[0]
    return render(
        request,
        "audit_event.html",
        viewer,
        record=record,
        last_sequence=store.audit_head()[0],
        event=record.event,
        details=sorted(record.event.details.items()),
    )


def _verify(request: Request) -> ChainReport:
    if not _verifying.acquire(blocking=False):
        raise ConflictError(
            "a verification of the audit trail is already running; try again when it has finished",
            rule="audit-verify",
        )
    try:
        return get_pki(request).audit.verify()
    finally:
        _verifying.release()


@router.post("/audit/verify", response_class=HTMLResponse)
def verify_chain(
    request: Request, submitted: Annotated[Submitted, Depends(changing(Area.AUDIT, Action.READ))]
) -> HTMLResponse:
    """Check the whole trail as ``otward audit verify`` does, and say what was found."""
    report = _verify(request)
    check = report.check
    return render(
        request,
        "audit_verify.html",
        submitted.viewer,
        report=report,
        check=check,
        intact=check.status is TrailStatus.INTACT,
        unsigned_tail=check.status is TrailStatus.UNSIGNED_TAIL,
        broken=check.status is TrailStatus.BROKEN,
        max_unsigned_seconds=round(report.max_unsigned.total_seconds()),
        unsigned_seconds=round(check.unsigned_for.total_seconds()) if check.unsigned_for else 0,
    )
