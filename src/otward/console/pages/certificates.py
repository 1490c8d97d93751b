"""Certificates: search and page through them, read one with its extensions decoded, download
its PEM, and revoke it after a confirmation page.

Filters are plain GET parameters filtered and paged in SQL (the htmx form only swaps the results);
a revocation goes through the same service as the API's (``cert.revoked``, CRL re-signed at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from otward.console.paging import PAGE_SIZE, pager, parse_page
from otward.console.render import PREFIX, SECURITY_HEADERS, render, wants_block
from otward.console.viewer import Submitted, Viewer, changing, reading
from otward.core.authz import Action, Area
from otward.core.certificate_details import (
    describe_extensions,
    describe_public_key,
    sha256_fingerprint,
)
from otward.core.records import CertificateRecord, DeviceRecord, parse_serial
from otward.core.revocation import REASON_NAMES, parse_reason, reason_name
from otward.errors import ConflictError, InvalidRequestError, NotFoundError
from otward.http.auth import get_pki
from otward.services.pki import Pki
from otward.services.queries import STATUSES, certificate_filter

__all__ = ["router"]

router = APIRouter()

_FILTERS = ("subject", "serial", "profile", "status", "owner", "ca", "expiring_within")
_SOON_DAYS = 30  # a valid certificate expiring sooner than this is flagged "expires soon"
_REVOKE_REASONS = {
    "unspecified": "Unspecified",
    "keyCompromise": "Key compromise (the private key is or may be known to someone else)",
    "affiliationChanged": "Affiliation changed (the subject's name or organisation changed)",
    "superseded": "Superseded (replaced by a new certificate)",
    "cessationOfOperation": "Cessation of operation (the device or service is retired)",
    "privilegeWithdrawn": "Privilege withdrawn (it may no longer do what the certificate allows)",
    "cACompromise": "CA compromise (the issuing CA's key is compromised)",
    "aACompromise": "AA compromise (attribute authority compromised)",
}
assert set(_REVOKE_REASONS) == set(REASON_NAMES)  # noqa: S101 - the list follows core.revocation


@dataclass(frozen=True)
class _Row:
    """One certificate as the list shows it."""

    record: CertificateRecord
    status: str
    days_left: int


def _status(record: CertificateRecord, now: datetime) -> str:
    status = record.status_at(now)
    if status == "valid" and (record.not_valid_after - now).days < _SOON_DAYS:
        return "expires soon"
    return status


def _row(record: CertificateRecord, now: datetime) -> _Row:
    return _Row(record, _status(record, now), (record.not_valid_after - now).days)


def _chosen(request: Request) -> dict[str, str]:
    """The filters as submitted, blank ones dropped (a GET form sends every field)."""
    chosen = {}
    for name in _FILTERS:
        value = request.query_params.get(name, "").strip()
        if value:
            chosen[name] = value
    return chosen


@router.get("/certificates", response_class=HTMLResponse)
def list_certificates(
    request: Request, viewer: Annotated[Viewer, Depends(reading(Area.PKI))]
) -> HTMLResponse:
    pki = get_pki(request)
    now = pki.clock()
    filters = _chosen(request)
    rows: list[_Row] = []
    total = 0
    page = 1
    error = None
    try:
        page = parse_page(request.query_params.get("page"))
        query = certificate_filter(
            now,
            status=filters.get("status"),
            expiring_within=filters.get("expiring_within"),
            ca=filters.get("ca"),
            profile=filters.get("profile"),
            subject=filters.get("subject"),
            serial=filters.get("serial"),
            owner=filters.get("owner"),
        )
    except InvalidRequestError as exc:
        error = _field_message(exc)
    else:
        records, total = pki.stores.certificates.list_certificates(
            query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        rows = [_row(r, now) for r in records]
    pages = pager(f"{PREFIX}/certificates", filters, page, len(rows), total)
    partial = wants_block(request, "results")
    return render(
        request,
        "certificates.html",
        viewer,
        # htmx swaps nothing on a 4xx answer: its partial carries the refusal with a 200
        status_code=400 if error and not partial else 200,
        block="results" if partial else None,
        filters=filters,
        statuses=STATUSES,
        authorities=sorted(a.name for a in pki.authorities.list()),
        owners=sorted(o.name for o in pki.stores.owners.list_owners()),
        profiles=sorted({*pki.issuance.profiles, "root-ca", "sub-ca", "ocsp-responder"}),
        rows=rows,
        total=total,
        first=pages.first,
        last=pages.last,
        previous=pages.previous,
        next=pages.next,
        error=error,
        filtered=bool(filters),
    )


def _field_message(exc: InvalidRequestError) -> str:
    """The refusal's message, prefixed with the field it concerns when it does not name it."""
    labels = {"status": "status", "duration": "expiring within", "time": "expiring within"}
    field = labels.get(exc.rule or "")
    if field and not exc.message.startswith(field):
        return f"{field}: {exc.message}"
    return exc.message


def _serial_number(serial: str) -> int:
    try:
        return parse_serial(serial)
    except ValueError:
        raise InvalidRequestError(
            f"serial: '{serial[:64]}' is not a hexadecimal serial number", rule="serial"
        ) from None


def _certificate(pki: Pki, serial: str) -> CertificateRecord:
    record = pki.stores.certificates.get_certificate(_serial_number(serial))
    if record is None:
        raise NotFoundError(f"there is no certificate with serial {serial[:64]}", rule="serial")
    return record


def _device(pki: Pki, record: CertificateRecord) -> DeviceRecord | None:
    return pki.stores.devices.get_device(record.device_id) if record.device_id else None


@router.get("/certificates/{serial}", response_class=HTMLResponse)
def show_certificate(
    serial: str, request: Request, viewer: Annotated[Viewer, Depends(reading(Area.PKI))]
) -> HTMLResponse:
    pki = get_pki(request)
    now = pki.clock()
    record = _certificate(pki, serial)
    certificate = x509.load_der_x509_certificate(record.der)
    revoked_notice = request.query_params.get("notice") == "revoked" and record.revoked_at is not None
    return render(
        request,
        "certificate_details.html",
        viewer,
        row=_row(record, now),
        record=record,
        certificate=certificate,
        issuer=certificate.issuer.rfc4514_string(),
        key=describe_public_key(certificate),
        fingerprint=sha256_fingerprint(certificate),
        signature=_signature_name(certificate),
        extensions=describe_extensions(certificate),
        reason=reason_name(record.revocation_reason) if record.revocation_reason else None,
        device=_device(pki, record),
        # a root is never revoked (the service refuses): it is removed from the trust stores
        may_revoke=viewer.may(Area.PKI, Action.WRITE)
        and record.revoked_at is None
        and record.profile != "root-ca",
        revoked_notice=revoked_notice,
    )


def _signature_name(certificate: x509.Certificate) -> str:
    oid = certificate.signature_algorithm_oid
    name = getattr(oid, "_name", None)
    return f"{name} ({oid.dotted_string})" if name and name != "Unknown OID" else oid.dotted_string


@router.get("/certificates/{serial}/pem")
def download_pem(
    serial: str, request: Request, _viewer: Annotated[Viewer, Depends(reading(Area.PKI))]
) -> Response:
    record = _certificate(get_pki(request), serial)
    pem = x509.load_der_x509_certificate(record.der).public_bytes(Encoding.PEM)
    return Response(
        pem,
        media_type="application/x-pem-file",
        headers={
            **SECURITY_HEADERS,
            "content-disposition": f'attachment; filename="certificate-{record.serial}.pem"',
        },
    )


def _confirmation(
    request: Request,
    viewer: Viewer,
    record: CertificateRecord,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    pki = get_pki(request)
    return render(
        request,
        "certificate_revoke.html",
        viewer,
        status_code=status_code,
        record=record,
        device=_device(pki, record),
        reasons=_REVOKE_REASONS,
        chosen=request.query_params.get("reason", "unspecified"),
        reason=reason_name(record.revocation_reason) if record.revocation_reason else None,
        error=error,
    )


@router.get("/certificates/{serial}/revoke", response_class=HTMLResponse)
def confirm_revocation(
    serial: str, request: Request, viewer: Annotated[Viewer, Depends(reading(Area.PKI, Action.WRITE))]
) -> HTMLResponse:
    """What revoking will do, with the reason to choose: nothing changes until it is confirmed."""
    return _confirmation(request, viewer, _certificate(get_pki(request), serial))


@router.post("/certificates/{serial}/revoke")
def revoke_certificate(
    serial: str, request: Request, submitted: Annotated[Submitted, Depends(changing(Area.PKI))]
) -> Response:
    """Revoke as the API does (``pki.revocation.revoke``: audited, CRL re-signed at once), then
    show the certificate (Post/Redirect/Get)."""
    pki = get_pki(request)
    number = _serial_number(serial)
    reason = parse_reason(submitted.form.get("reason") or None)
    try:
        record = pki.revocation.revoke(number, reason, submitted.viewer.actor)
    except ConflictError as exc:
        current = pki.stores.certificates.get_certificate(number)
        if current is None or current.revoked_at is None:
            raise
        return _confirmation(request, submitted.viewer, current, status_code=409, error=exc.message)
    target = f"{PREFIX}/certificates/{record.serial}?notice=revoked"
    return RedirectResponse(target, status_code=303, headers=dict(SECURITY_HEADERS))
