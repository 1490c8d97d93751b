"""``/api/v1/audit``: query and verify the audit trail (admin only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from otward.core.audit import AuditRecord
from otward.http.auth import AuditReader, get_pki
from otward.http.params import Count
from otward.services.queries import audit_filter

__all__ = ["AuditEventOut", "AuditPage", "ChainReportOut", "router"]

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEventOut(BaseModel):
    sequence: int
    time: str
    host: str
    component: str
    type: str
    subject: str
    outcome: str
    reason: str | None
    source: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str

    @classmethod
    def from_record(cls, record: AuditRecord) -> AuditEventOut:
        return cls.model_validate(
            {"sequence": record.sequence, **record.event.to_dict(), "hash": record.hash.hex()}
        )


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    limit: int
    offset: int


class ChainReportOut(BaseModel):
    ok: bool  # intact, or an unsigned tail within its allowed age
    status: str  # intact, unsigned-tail or broken
    records: int
    signed_heads: int
    head_sequence: int  # what the ledger row said
    signed_sequence: int  # the newest valid signed head covers records up to here
    signed_at: str | None
    unsigned: int  # records after signed_sequence
    unsigned_since: str | None
    unsigned_seconds: float | None
    max_unsigned_seconds: float
    first_bad_sequence: int | None
    problem: str | None


@router.get("", response_model=AuditPage)
def list_events(
    request: Request,
    _actor: AuditReader,
    since: Annotated[
        str | None, Query(description="RFC 3339 time or a duration back from now, e.g. 24h")
    ] = None,
    until: Annotated[str | None, Query(description="RFC 3339 time or a duration back from now")] = None,
    type: Annotated[str | None, Query(description="event type, e.g. cert.issued")] = None,
    subject: str | None = None,
    outcome: Annotated[
        str | None,
        Query(description="success or failure", json_schema_extra={"enum": ["success", "failure"]}),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Count = 0,
) -> AuditPage:
    """Events in chain order, filtered and paged."""
    pki = get_pki(request)
    query = audit_filter(pki.clock(), since=since, until=until, type=type, subject=subject, outcome=outcome)
    records, total = pki.stores.audit.list_audit(query, limit=limit, offset=offset)
    return AuditPage(
        items=[AuditEventOut.from_record(r) for r in records], total=total, limit=limit, offset=offset
    )


@router.get("/verify", response_model=ChainReportOut)
def verify_chain(
    request: Request,
    _actor: AuditReader,
    max_unsigned_seconds: Annotated[
        float | None, Query(ge=0, le=30 * 86400, description="override audit.max_unsigned_seconds")
    ] = None,
) -> ChainReportOut:
    """Check the trail against its signed heads (their signer must chain to the installation's
    root file); names the first bad record. ``ok`` is false when broken."""
    limit = timedelta(seconds=max_unsigned_seconds) if max_unsigned_seconds is not None else None
    report = get_pki(request).audit.verify(max_unsigned=limit)
    return ChainReportOut.model_validate(report.summary())
