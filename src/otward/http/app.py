"""The HTTPS API: FastAPI for admin endpoints, the raw status app for CRL and OCSP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Annotated, Any

import swagger_ui
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from otward import __version__
from otward.console.app import create_console
from otward.console.forms import MAX_FORM_BYTES
from otward.core.durations import DURATION_PATTERN
from otward.core.records import parse_serial
from otward.core.revocation import parse_reason
from otward.errors import InvalidRequestError, NotFoundError
from otward.http.access import router as access_router
from otward.http.approvals import router as approvals_router
from otward.http.audit import router as audit_router
from otward.http.auth import MetricsReader, PkiReader, PkiWriter, get_pki
from otward.http.devices import router as devices_router
from otward.http.edge import router as edge_router
from otward.http.est import MAX_BODY as EST_MAX_BODY
from otward.http.est import PREFIX as EST_PREFIX
from otward.http.est import record_refused_body
from otward.http.est import router as est_router
from otward.http.limits import install_limits
from otward.http.metrics import RequestMetrics, render_metrics
from otward.http.openapi import install_openapi
from otward.http.params import CaName, Count
from otward.http.schemas import (
    AuthorityOut,
    CertificateOut,
    CertificatePage,
    IssueRequest,
    IssueResponse,
    RevokeRequest,
)
from otward.http.security_headers import SecurityHeaders
from otward.http.session import SESSION_MAX_BODY
from otward.http.session import router as session_router
from otward.http.signers import router as signers_router
from otward.http.status import MAX_BODY as OCSP_MAX_BODY
from otward.http.status import STATUS_PREFIXES, StatusApp
from otward.http.transparency import router as transparency_router
from otward.services.pki import Pki
from otward.services.queries import certificate_filter
from otward.web.bodylimit import BodyLimit
from otward.web.problems import install_problem_handlers

__all__ = ["BODY_LIMITS", "DEFAULT_BODY_LIMIT", "create_api", "create_app", "create_status_app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

router = APIRouter(prefix="/api/v1")

# Request bodies are refused with 413 over these sizes (path pattern, bytes) before they are read,
# authenticated or not; the JSON API's requests are small, except an access model imported whole
# (a YAML text of up to 4 million characters) and a gatekeeper's trail push (up to 5,000 records).
DEFAULT_BODY_LIMIT = 1 << 20
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    (r"/\.well-known/est/", EST_MAX_BODY),
    (r"/ocsp", OCSP_MAX_BODY),
    (r"/api/v1/access/import$", 8 << 20),
    (r"/api/v1/edge/assets/[^/]+/trail$", 8 << 20),
    (r"/api/v1/session$", SESSION_MAX_BODY),
    (r"/ui/", MAX_FORM_BYTES),
)

# Swagger UI 5 (OpenAPI 3.1), shipped as files by the swagger-ui-py package.
SWAGGER_UI_STATIC = Path(swagger_ui.__file__).parent / "static"


def _serial(text: str) -> int:
    try:
        return parse_serial(text)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), rule="serial") from None


@router.post("/certificates", status_code=201, response_model=IssueResponse, tags=["certificates"])
def issue_certificate(body: IssueRequest, request: Request, actor: PkiWriter) -> IssueResponse:
    """Issue a certificate from a CSR under a profile. The certificate is stored before it is returned."""
    issued = get_pki(request).issuance.issue(
        body.csr,
        profile=body.profile,
        ca=body.ca,
        validity_days=body.days,
        role=body.role,
        owner=body.owner,
        actor=actor,
    )
    return IssueResponse(serial=issued.serial, certificate=issued.pem, chain=issued.chain_pem)


@router.get("/certificates", response_model=CertificatePage, tags=["certificates"])
def list_certificates(
    request: Request,
    _actor: PkiReader,
    status: Annotated[
        str | None,
        Query(
            description="valid, expired or revoked",
            json_schema_extra={"enum": ["valid", "expired", "revoked"]},
        ),
    ] = None,
    expiring_within: Annotated[
        str | None, Query(description="e.g. 30d", json_schema_extra={"pattern": DURATION_PATTERN})
    ] = None,
    ca: str | None = None,
    profile: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Count = 0,
) -> CertificatePage:
    """Certificates newest first, with paging (``limit``, ``offset``) and the total count."""
    pki = get_pki(request)
    now = pki.clock()
    query = certificate_filter(now, status=status, expiring_within=expiring_within, ca=ca, profile=profile)
    records, total = pki.stores.certificates.list_certificates(query, limit=limit, offset=offset)
    return CertificatePage(
        items=[CertificateOut.from_record(r, now) for r in records], total=total, limit=limit, offset=offset
    )


@router.get("/certificates/{serial}", response_model=CertificateOut, tags=["certificates"])
def show_certificate(serial: str, request: Request, _actor: PkiReader) -> CertificateOut:
    pki = get_pki(request)
    record = pki.stores.certificates.get_certificate(_serial(serial))
    if record is None:
        raise NotFoundError(f"certificate {serial} not found", rule="serial")
    return CertificateOut.from_record(record, pki.clock())


@router.post("/certificates/{serial}/revoke", response_model=CertificateOut, tags=["certificates"])
def revoke_certificate(
    serial: str, request: Request, actor: PkiWriter, body: RevokeRequest | None = None
) -> CertificateOut:
    """Revoke for good; the CA's CRL is republished and OCSP answers 'revoked' at once."""
    pki = get_pki(request)
    reason = parse_reason(body.reason if body else None)
    record = pki.revocation.revoke(_serial(serial), reason, actor)
    return CertificateOut.from_record(record, pki.clock())


@router.get("/cas", response_model=list[AuthorityOut], tags=["authorities"])
def list_authorities(request: Request, _actor: PkiReader) -> list[AuthorityOut]:
    return [AuthorityOut.from_record(r) for r in get_pki(request).authorities.list()]


@router.get("/cas/{name}", response_model=AuthorityOut, tags=["authorities"])
def show_authority(name: CaName, request: Request, _actor: PkiReader) -> AuthorityOut:
    return AuthorityOut.from_record(get_pki(request).authorities.record(name))


@router.get("/cas/{name}/chain", response_class=PlainTextResponse, tags=["authorities"])
def authority_chain(name: CaName, request: Request) -> str:
    """PEM chain from this CA up to the root (public: relying parties need it)."""
    chain = get_pki(request).authorities.certificate_chain(name)
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)


def create_api(pki: Pki, *, workers: int = 1) -> FastAPI:
    """The FastAPI application alone (admin API, health, OpenAPI at /docs); ``workers`` is how many
    processes serve it (each enforces its share of the per-source limits)."""
    app = FastAPI(
        title="otward",
        version=__version__,
        description=(
            "Private PKI for industrial sites: issuance, revocation, CRL and OCSP, device enrollment"
            " over EST (RFC 7030), a device registry with attestation, a tamper-evident audit trail"
            " and an issuance transparency log."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.pki = pki
    install_limits(app.state, workers=workers)
    install_problem_handlers(app)
    install_openapi(app)
    app.include_router(router)
    app.include_router(devices_router)
    app.include_router(access_router)
    app.include_router(edge_router)
    app.include_router(est_router)
    app.include_router(audit_router)
    app.include_router(transparency_router)
    app.include_router(signers_router)
    app.include_router(approvals_router)
    app.include_router(session_router)
    _serve_docs_offline(app)
    if pki.settings.console.enabled:
        app.mount("/ui", create_console(pki, limits=app.state), name="console")

    app.add_middleware(RequestMetrics)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics(request: Request, _actor: MetricsReader) -> Response:
        """Prometheus text format: certificates per CA and profile, expiring certificates,
        audit events and authentication failures, request latencies, OCSP answers."""
        body, content_type = render_metrics(get_pki(request))
        return Response(body, media_type=content_type)

    @app.get("/healthz", tags=["operations"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app


def _serve_docs_offline(app: FastAPI) -> None:
    """Swagger UI at /docs from files installed with otward: plants are often offline, so no CDN."""
    app.mount("/docs/static", StaticFiles(directory=SWAGGER_UI_STATIC), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="otward API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def create_app(pki: Pki, *, workers: int = 1) -> ASGIApp:
    """The HTTPS application: status paths go to the lean status app, the rest to FastAPI; every
    request body is bounded (:data:`BODY_LIMITS`) before either reads it, and every answer carries
    HSTS and ``nosniff`` (:mod:`otward.http.security_headers`)."""
    api = create_api(pki, workers=workers)
    status = StatusApp(pki)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(STATUS_PREFIXES):
            await status(scope, receive, send)
        else:
            await api(scope, receive, send)

    async def refused(scope: Scope, limit: int) -> None:
        if scope["path"].startswith(EST_PREFIX):
            await record_refused_body(pki, scope, limit)

    return SecurityHeaders(BodyLimit(app, limits=BODY_LIMITS, default=DEFAULT_BODY_LIMIT, on_refused=refused))


def create_status_app(pki: Pki) -> ASGIApp:
    """The plain-HTTP application: CRL, OCSP and CA certificates, with the same body bounds."""
    return BodyLimit(StatusApp(pki), limits=BODY_LIMITS, default=DEFAULT_BODY_LIMIT)
