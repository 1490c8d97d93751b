"""Authorities: the CA tree with each CA's validity, key and status, its chain and CRL to download.

Read-only, for accounts that may read the pki area. The downloads answer as attachments from the
console (the same bytes as the public ``/api/v1/cas/{name}/chain`` and ``/crl/{name}.crl``), so
that a browser saves them instead of showing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response

from otward.console.render import SECURITY_HEADERS, render
from otward.console.viewer import Viewer, reading
from otward.core.authz import Area
from otward.core.ca_lifecycle import expiry_marks_crossed
from otward.core.ca_tree import tree_order
from otward.core.identifiers import CA_NAME
from otward.core.keys import classify_public_key
from otward.core.records import AuthorityRecord, CrlRecord
from otward.errors import NotFoundError, OtwardError
from otward.http.auth import get_pki
from otward.services.pki import Pki

__all__ = ["router"]

router = APIRouter()

CaName = Annotated[str, Path(pattern=f"^{CA_NAME.pattern.pattern}$", description="CA name")]
PkiReader = Annotated[Viewer, Depends(reading(Area.PKI))]


@dataclass(frozen=True)
class AuthorityView:
    """One CA as the page shows it."""

    name: str
    parent: str | None
    depth: int
    subject: str
    issuer: str
    serial: str
    not_valid_before: datetime | None
    not_valid_after: datetime | None
    days_left: int | None
    key_type: str
    key_backend: str
    status: str  # active, expiring, expired, revoked, superseded, pending
    status_text: str
    path_length: int | None
    external_parent: bool
    pending: bool = False

    @property
    def badge(self) -> str:
        return {
            "active": "ok",
            "expiring": "warn",
            "superseded": "muted",
            "pending": "warn",
        }.get(self.status, "bad")


def key_backend(key_ref: str) -> str:
    """Where a CA's private key lives, from its reference: a PKCS#11 token (HSM) or a file."""
    if key_ref.startswith("pkcs11:"):
        return "HSM (PKCS#11)"
    if key_ref.startswith("file:"):
        return "file (encrypted)"
    return key_ref.split(":", 1)[0] or "unknown"


def _key_type(certificate: x509.Certificate) -> str:
    try:
        return classify_public_key(certificate.public_key()).value
    except (OtwardError, ValueError):
        return type(certificate.public_key()).__name__.removeprefix("_")


def _status(pki: Pki, record: AuthorityRecord, end: datetime, now: datetime) -> tuple[str, str]:
    """Like ``otward ca list``: revoked (itself or a parent), superseded, expired, expiring from
    90 days before notAfter, else active."""
    revoked = pki.authorities.revocation_of(record.name)
    if revoked is not None:
        text = "revoked" if revoked[0] == record.name else f"revoked (parent {revoked[0]})"
        return "revoked", text
    if record.superseded_by is not None:
        return "superseded", f"superseded by {record.superseded_by} (CRL and OCSP only)"
    if end <= now:
        return "expired", "expired"
    if expiry_marks_crossed(end, now):
        return "expiring", f"expires in {(end - now).days} days: renew or roll over"
    return "active", "active"


def _view(pki: Pki, record: AuthorityRecord, depth: int, now: datetime) -> AuthorityView:
    certificate = x509.load_der_x509_certificate(record.certificate_der)
    end = certificate.not_valid_after_utc
    status, text = _status(pki, record, end, now)
    try:
        path_length = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        path_length = None
    return AuthorityView(
        name=record.name,
        parent=record.parent,
        depth=depth,
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=f"{certificate.serial_number:x}",
        not_valid_before=certificate.not_valid_before_utc,
        not_valid_after=end,
        days_left=max(0, (end - now).days),
        key_type=_key_type(certificate),
        key_backend=key_backend(record.key_ref),
        status=status,
        status_text=text,
        path_length=path_length,
        external_parent=bool(record.external_chain),
    )


def authority_views(pki: Pki, now: datetime) -> list[AuthorityView]:
    """Every CA in tree order (roots first, subordinates under their parent), then those pending."""
    records = {r.name: r for r in pki.authorities.list()}
    views = [
        _view(pki, records[name], depth, now)
        for name, depth in tree_order({n: r.parent for n, r in records.items()})
    ]
    for pending in pki.authorities.pending():
        subject = x509.load_der_x509_csr(pending.csr_der).subject.rfc4514_string()
        views.append(
            AuthorityView(
                name=pending.name,
                parent=None,
                depth=0,
                subject=subject,
                issuer="(signed outside otward)",
                serial="",
                not_valid_before=None,
                not_valid_after=None,
                days_left=None,
                key_type="",
                key_backend=key_backend(pending.key_ref),
                status="pending",
                status_text="pending: waits for its certificate (otward ca import-cert)",
                path_length=pending.path_length,
                external_parent=True,
                pending=True,
            )
        )
    return views


@router.get("/authorities", response_class=HTMLResponse)
def authorities(request: Request, viewer: PkiReader) -> HTMLResponse:
    pki = get_pki(request)
    now = pki.clock()
    return render(request, "authorities.html", viewer, authorities=authority_views(pki, now), now=now)


@router.get("/authorities/{name}", response_class=HTMLResponse)
def authority(name: CaName, request: Request, viewer: PkiReader) -> HTMLResponse:
    pki = get_pki(request)
    now = pki.clock()
    record = pki.authorities.record(name)  # NotFoundError (404) names the CAs there are
    views = authority_views(pki, now)
    view = next(v for v in views if v.name == name)
    crl = pki.stores.crls.get_crl(name)
    certificate = x509.load_der_x509_certificate(record.certificate_der)
    return render(
        request,
        "authorities_detail.html",
        viewer,
        ca=view,
        children=[v for v in views if v.parent == name],
        crl=crl,
        crl_stale=crl is None or crl.next_update <= now,
        certificate_pem=certificate.public_bytes(Encoding.PEM).decode(),
        ocsp_subject=x509.load_der_x509_certificate(record.ocsp_certificate_der).subject.rfc4514_string(),
        now=now,
    )


def _attachment(body: bytes, media_type: str, filename: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={**SECURITY_HEADERS, "content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/authorities/{name}/chain.pem")
def authority_chain(name: CaName, request: Request, _viewer: PkiReader) -> Response:
    """The PEM chain from CA ``name`` up to its root (``otward ca export``)."""
    chain = get_pki(request).authorities.certificate_chain(name)
    pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)
    return _attachment(pem.encode(), "application/pem-certificate-chain", f"{name}-chain.pem")


@router.get("/authorities/{name}/crl")
def authority_crl(name: CaName, request: Request, _viewer: PkiReader) -> Response:
    """CA ``name``'s current CRL, DER, as published at ``/crl/{name}.crl``."""
    pki = get_pki(request)
    pki.authorities.record(name)  # 404 for a CA that is not there
    crl: CrlRecord | None = pki.stores.crls.get_crl(name)
    if crl is None:
        raise NotFoundError(
            f"CA '{name}' has published no CRL yet (otward crl generate --ca {name})", rule="crl"
        )
    return _attachment(crl.der, "application/pkix-crl", f"{name}.crl")
