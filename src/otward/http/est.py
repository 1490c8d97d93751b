"""EST (RFC 7030, as updated by RFC 8951) under ``/.well-known/est/`` and ``/.well-known/est/<ca>/``.

Bodies are base64 of DER (with or without line breaks, no Content-Transfer-Encoding
needed). Initial enrollment is authenticated by an enrollment token, as HTTP Basic
password (any user name) or Bearer, or, for a unit an owner claimed, by its factory identity
(IEEE 802.1AR IDevID) as TLS client certificate (:mod:`otward.services.zerotouch`);
re-enrollment by the client certificate the TLS layer verified, read from the ASGI TLS
extension (``scope["extensions"]["tls"]``), never from a header. Refusals are a line of
text (problem+json on request, see :mod:`otward.web.problems`): 401 for credentials, 403
when the token or certificate does not cover the request, 429 after too many failures.

A request without any credentials is the challenge round of HTTP authentication (Cisco
libest always sends one first): it is answered 401 with the challenge before its body is
looked at, and neither counted as a failed authentication nor audited.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import MutableMapping
from typing import Annotated, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs7
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pyasn1.codec.der import encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc7030
from starlette.concurrency import run_in_threadpool

from otward.adapters.files import format_size
from otward.errors import (
    AuthenticationError,
    InvalidRequestError,
    ParseError,
    PolicyViolationError,
)
from otward.http.auth import get_pki, request_actor
from otward.http.limits import guard_failures
from otward.http.params import CaName
from otward.services.audit import Actor
from otward.services.issuance import IssuedCertificate
from otward.services.pki import Pki
from otward.web.problems import EST_PREFIX, error_response

__all__ = ["MAX_BODY", "PREFIX", "record_refused_body", "router"]

PREFIX = EST_PREFIX
router = APIRouter(prefix=PREFIX.rstrip("/"), tags=["est"])

PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
MAX_BODY = 64 * 1024
_EC_PUBLIC_KEY = univ.ObjectIdentifier("1.2.840.10045.2.1")
_P256 = univ.ObjectIdentifier("1.2.840.10045.3.1.7")


def _base64_lines(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"\r\n".join(text[i : i + 64] for i in range(0, len(text), 64)) + b"\r\n"


def _pkcs7(certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> bytes:
    return _base64_lines(pkcs7.serialize_certificates(list(certificates), Encoding.DER))


async def _request_der(request: Request, content_type: str | None, expected: str) -> bytes:
    """The body as DER: base64 with or without line breaks (RFC 8951), or raw DER from lax clients."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != expected:
        raise InvalidRequestError(
            f"Content-Type must be {expected}, not '{media or 'none'}'", rule="est-media"
        )
    body = await request.body()  # bounded by MAX_BODY before it is read (http.bodylimit)
    if len(body) > MAX_BODY:
        raise InvalidRequestError("the request body is larger than 64 KiB", rule="est-size")
    if body[:1] == b"\x30":
        return body
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("the body is not base64 of a DER PKCS#10 request", rule="est-base64") from None


_CREDENTIALS_NEEDED = "an enrollment token is required: HTTP Basic with the token as password, or Bearer"


def _token(authorization: str | None) -> str:
    """The enrollment token from ``Basic`` (the password; any user name) or ``Bearer``."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            decoded = ""
        _, separator, password = decoded.partition(":")
        if separator and password:
            return password
    raise AuthenticationError(_CREDENTIALS_NEEDED, rule="enroll-token")


def _challenge(request: Request, authorization: str | None) -> Response | None:
    """401 with the challenge for a request that carries no credentials at all, before its body is
    read: the first round of HTTP authentication, not a failed attempt, so it is neither counted
    against the source (:func:`otward.http.limits.guard_failures`) nor audited. It costs the server
    no more than a ``GET cacerts``, and the connection is closed so the rest of the body is never
    read. Credentials that are present but malformed or wrong still count. None with credentials."""
    if (authorization or "").strip():
        return None
    response = error_response(request.scope, 401, "unauthenticated", _CREDENTIALS_NEEDED, rule="enroll-token")
    response.headers["Connection"] = "close"
    return response


def _offered_token(authorization: str | None) -> str | None:
    try:
        return _token(authorization)
    except AuthenticationError:
        return None


async def _enrollment_csr(
    request: Request, content_type: str | None, authorization: str | None, actor: Actor
) -> bytes:
    """The CSR of a token-authenticated request; a refused body is audited (``enroll.refused``,
    with its rule) when the request's token authenticates."""
    try:
        return await _request_der(request, content_type, "application/pkcs10")
    except InvalidRequestError as exc:
        est = get_pki(request).est
        await run_in_threadpool(est.refuse_input, _offered_token(authorization), exc, actor=actor)
        raise


async def record_refused_body(pki: Pki, scope: MutableMapping[str, Any], limit: int) -> None:
    """An EST body refused for its size before the route ran (:mod:`otward.web.bodylimit`) is
    recorded as ``enroll.refused`` when the request carried a valid token, as any refused input is."""
    headers = dict(scope.get("headers", ()))
    try:
        token = _token(headers.get(b"authorization", b"").decode("latin-1"))
    except AuthenticationError:
        return  # no credentials: nothing to record beyond the 413
    client = scope.get("client")
    actor = Actor(component="api", identity="est", source=client[0] if client else None)
    error = InvalidRequestError(
        f"the request body is larger than {format_size(limit)}, the limit of this endpoint", rule="body-size"
    )
    await run_in_threadpool(pki.est.refuse_input, token, error, actor=actor)


def _client_certificate(request: Request) -> bytes:
    """DER of the client certificate the TLS handshake verified, from the ASGI TLS extension."""
    tls: dict[str, Any] = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        raise AuthenticationError(
            "re-enrollment needs the device's current certificate as TLS client certificate",
            rule="est-client-certificate",
        )
    return x509.load_pem_x509_certificate(chain[0].encode()).public_bytes(Encoding.DER)


def _forbidden(request: Request, error: PolicyViolationError) -> Response:
    """EST's mapping: like the API's, except that a request the credentials do not cover is 403."""
    return error_response(request.scope, 403, "forbidden", error.message, rule=error.rule)


def _issued(issued: IssuedCertificate) -> Response:
    return Response(_pkcs7([issued.certificate]), media_type=PKCS7_CERTS_ONLY)


async def _cacerts(request: Request, label: str | None) -> Response:
    chain = await run_in_threadpool(get_pki(request).est.ca_certificates, label)
    return Response(_pkcs7(chain), media_type="application/pkcs7-mime")


def _tls(request: Request) -> dict[str, Any]:
    return request.scope.get("extensions", {}).get("tls") or {}


def _factory_certificate(request: Request) -> bytes | None:
    """DER of a client certificate that may be a factory identity (IDevID): one that none of otward's
    CAs issued. None without one, or for an otward certificate (which never enrolls: it renews)."""
    chain = _tls(request).get("client_cert_chain") or []
    if not chain:
        return None
    der = x509.load_pem_x509_certificate(chain[0].encode()).public_bytes(Encoding.DER)
    return None if get_pki(request).zerotouch.is_otward_issued(der) else der


async def _factory_enroll(
    request: Request, label: str | None, content_type: str | None, der: bytes
) -> Response:
    """``simpleenroll`` authenticated by the factory identity in the TLS handshake (RFC 7030 section
    3.3.2, IEEE 802.1AR): a claimed unit gets its LDevID from its owner's CA."""
    actor = request_actor(request, f"idevid:{x509.load_der_x509_certificate(der).serial_number:x}")
    csr = await _request_der(request, content_type, "application/pkcs10")
    tls = _tls(request)

    def enroll(actor: Actor) -> IssuedCertificate:
        return get_pki(request).zerotouch.enroll(
            csr,
            der,
            tls_version=tls.get("tls_version"),
            tls_unique=tls.get("otward.tls_unique"),
            label=label,
            actor=actor,
        )

    try:
        issued = await run_in_threadpool(guard_failures, request, actor, enroll)
    except PolicyViolationError as exc:
        return _forbidden(request, exc)
    return _issued(issued)


async def _simple_enroll(
    request: Request, label: str | None, content_type: str | None, authorization: str | None
) -> Response:
    if not (authorization or "").strip():
        factory = await run_in_threadpool(_factory_certificate, request)
        if factory is not None:
            return await _factory_enroll(request, label, content_type, factory)
    challenge = _challenge(request, authorization)
    if challenge is not None:
        return challenge
    actor = request_actor(request, "est")
    csr = await _enrollment_csr(request, content_type, authorization, actor)

    def enroll(actor: Actor) -> IssuedCertificate:
        return get_pki(request).est.enroll(csr, _token(authorization), label=label, actor=actor)

    try:
        issued = await run_in_threadpool(guard_failures, request, actor, enroll)
    except PolicyViolationError as exc:
        return _forbidden(request, exc)
    return _issued(issued)


async def _simple_reenroll(request: Request, label: str | None, content_type: str | None) -> Response:
    actor = request_actor(request, "est")
    csr = await _request_der(request, content_type, "application/pkcs10")
    certificate = _client_certificate(request)
    actor = request_actor(request, f"cert:{x509.load_der_x509_certificate(certificate).serial_number:x}")

    def reenroll(actor: Actor) -> IssuedCertificate:
        return get_pki(request).est.reenroll(csr, certificate, label=label, actor=actor)

    try:
        issued = await run_in_threadpool(guard_failures, request, actor, reenroll)
    except PolicyViolationError as exc:
        return _forbidden(request, exc)
    return _issued(issued)


async def _server_keygen(
    request: Request, label: str | None, content_type: str | None, authorization: str | None
) -> Response:
    challenge = _challenge(request, authorization)
    if challenge is not None:
        return challenge
    actor = request_actor(request, "est")
    csr = await _enrollment_csr(request, content_type, authorization, actor)

    def keygen(actor: Actor) -> Any:
        return get_pki(request).est.server_keygen(csr, _token(authorization), label=label, actor=actor)

    try:
        generated = await run_in_threadpool(guard_failures, request, actor, keygen)
    except PolicyViolationError as exc:
        return _forbidden(request, exc)
    key = generated.private_key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    boundary = "otward-" + secrets.token_hex(12)
    parts = [
        ("application/pkcs8", _base64_lines(key)),
        (PKCS7_CERTS_ONLY, _pkcs7([generated.issued.certificate])),
    ]
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {kind}\r\nContent-Transfer-Encoding: base64\r\n\r\n".encode()
        + content
        for kind, content in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return Response(
        body,
        media_type=f"multipart/mixed; boundary={boundary}",
        headers={"Cache-Control": "no-store"},
    )


def _csrattrs() -> Response:
    """ecdsa-with-SHA256 and an EC public key on P-256 (RFC 7030 section 4.5.2)."""
    attributes = rfc7030.CsrAttrs()
    algorithm = rfc7030.AttrOrOID()
    algorithm["oid"] = univ.ObjectIdentifier(x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string)
    attributes.append(algorithm)
    curve = rfc7030.AttrOrOID()
    curve["attribute"]["attrType"] = _EC_PUBLIC_KEY
    curve["attribute"]["attrValues"].append(encoder.encode(_P256))
    attributes.append(curve)
    return Response(_base64_lines(encoder.encode(attributes)), media_type="application/csrattrs")


Media = Annotated[str | None, Header(alias="content-type")]
Auth = Annotated[str | None, Header(alias="authorization")]
Label = CaName  # the CA to enroll with


@router.get("/cacerts", response_class=Response)
async def cacerts(request: Request) -> Response:
    """The issuing CA and its root, base64 PKCS#7 certs-only."""
    return await _cacerts(request, None)


@router.get("/{label}/cacerts", response_class=Response)
async def cacerts_of(request: Request, label: Label) -> Response:
    return await _cacerts(request, label)


@router.post("/simpleenroll", response_class=Response)
async def simple_enroll(request: Request, content_type: Media = None, authorization: Auth = None) -> Response:
    """Enroll a new device: base64 PKCS#10 in, base64 PKCS#7 out; the token authenticates."""
    return await _simple_enroll(request, None, content_type, authorization)


@router.post("/{label}/simpleenroll", response_class=Response)
async def simple_enroll_with(
    request: Request, label: Label, content_type: Media = None, authorization: Auth = None
) -> Response:
    return await _simple_enroll(request, label, content_type, authorization)


@router.post("/simplereenroll", response_class=Response)
async def simple_reenroll(request: Request, content_type: Media = None) -> Response:
    """Renew: the device's current certificate, presented in the TLS handshake, authenticates."""
    return await _simple_reenroll(request, None, content_type)


@router.post("/{label}/simplereenroll", response_class=Response)
async def simple_reenroll_with(request: Request, label: Label, content_type: Media = None) -> Response:
    return await _simple_reenroll(request, label, content_type)


@router.post("/serverkeygen", response_class=Response)
async def server_keygen(request: Request, content_type: Media = None, authorization: Auth = None) -> Response:
    """Enroll a device that cannot make keys (owners that allow it): key and certificate, multipart."""
    return await _server_keygen(request, None, content_type, authorization)


@router.post("/{label}/serverkeygen", response_class=Response)
async def server_keygen_with(
    request: Request, label: Label, content_type: Media = None, authorization: Auth = None
) -> Response:
    return await _server_keygen(request, label, content_type, authorization)


@router.get("/csrattrs", response_class=Response)
async def csrattrs() -> Response:
    return _csrattrs()


@router.get("/{label}/csrattrs", response_class=Response)
async def csrattrs_of(label: Label) -> Response:
    return _csrattrs()
