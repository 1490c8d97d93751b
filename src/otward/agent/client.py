"""The agent's EST and device-API client: it trusts the server through a pin and what the pin vouched for.

Bootstrap (:func:`bootstrap`) is the one unverified connection: it fetches
``/cacerts`` and captures the server's certificate from that same TLS
connection, then accepts the CA certificates only if the server certificate
chains to them for the URL's host *and* the operator's pin matches a key on that
chain. Every later connection (:class:`EstClient`) verifies the server against
those CA certificates alone: no system trust store, no certifi, no environment
(``trust_env=False``, so neither ``HTTPS_PROXY`` nor ``SSL_CERT_FILE`` change who is trusted).

A plant's HTTP proxy is used only when given explicitly (``proxy``): the connection is tunnelled
with CONNECT and TLS runs end to end through it, so the pin and the CA check are the same as
without one (a proxy that terminates TLS fails them).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID

from otward.core import b64url
from otward.core.attestation import ChallengePurpose
from otward.core.chain import UNREADABLE_CERTIFICATE, find_path, has_extended_key_usage, names_host
from otward.core.keys import spki_pin
from otward.errors import AuthenticationError, BackendError, InvalidRequestError, OtwardError, ParseError

__all__ = [
    "DEFAULT_TIMEOUT",
    "AttestResult",
    "Challenge",
    "EstClient",
    "EstError",
    "PinMismatchError",
    "bootstrap",
    "client_context",
    "validate_pin",
    "verify_server_chain",
]

DEFAULT_TIMEOUT = 30.0  # seconds, for connect, read, write and pool each
_MAX_BODY = 1024 * 1024
_PKCS7 = "application/pkcs7-mime"
_PROBLEM = "application/problem+json"
# EST refusals are a line of text unless problem+json is asked for; the agent wants the rule.
_EST_ACCEPT = f"{_PKCS7}, {_PROBLEM}"


class EstError(OtwardError):
    """The server refused a request; the fields come from its problem+json answer."""

    def __init__(
        self, status: int, detail: str, *, rule: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(f"server refused ({status}): {detail}", rule=rule)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after  # seconds, from Retry-After (429, 503)


class PinMismatchError(AuthenticationError):
    """No key on the server's verified chain has the pin the operator gave; nothing is trusted or stored."""


@dataclass(frozen=True)
class Challenge:
    challenge_id: str
    nonce: bytes
    purpose: ChallengePurpose
    expires_at: datetime


@dataclass(frozen=True)
class AttestResult:
    device_id: str
    result: str
    serial: str  # hex serial number of the certificate the server checked against
    renewal_token: str | None = field(default=None, repr=False)  # secret, single use: kept out of repr


def validate_pin(pin: str) -> None:
    """Raise unless ``pin`` is ``sha256/<base64 of 32 bytes>`` (what ``otward ca pin`` prints)."""
    algorithm, _, digest = pin.partition("/")
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if algorithm != "sha256" or len(raw) != 32:
        raise InvalidRequestError(
            "the pin must be sha256/<base64 of a SHA-256 digest>, as 'otward ca pin root' prints it",
            rule="pin-format",
        )


def verify_server_chain(
    leaf: x509.Certificate,
    ca_certificates: list[x509.Certificate],
    host: str,
    pin: str,
    now: datetime,
) -> list[x509.Certificate]:
    """The verified chain ``[leaf, ..., root]`` if ``leaf`` is valid for ``host`` under the self-signed
    certificates among ``ca_certificates`` (the others serve as intermediates) and ``pin`` matches a
    key on that chain; raise AuthenticationError (PinMismatchError for the pin) otherwise."""
    validate_pin(pin)
    try:
        return _verified_server_chain(leaf, ca_certificates, host, pin, now)
    except UNREADABLE_CERTIFICATE as exc:  # the server is not trusted yet: its certificates are input
        raise AuthenticationError(
            f"the server's certificates cannot be read (a malformed name, extension or key): {exc}",
            rule="server-chain",
        ) from None


def _verified_server_chain(
    leaf: x509.Certificate, ca_certificates: list[x509.Certificate], host: str, pin: str, now: datetime
) -> list[x509.Certificate]:
    roots = [c for c in ca_certificates if _is_self_signed(c)]
    intermediates = [c for c in ca_certificates if not _is_self_signed(c)]
    if not roots:
        raise AuthenticationError("the server's CA certificates contain no root", rule="server-chain")
    chain = find_path(leaf, intermediates, roots, now)
    why = (
        "it does not chain to the CA certificates it sent"
        if chain is None
        else f"it does not name host {host}"
        if not names_host(leaf, host)
        else "it is not a TLS server certificate (extendedKeyUsage)"
        if not has_extended_key_usage(leaf, ExtendedKeyUsageOID.SERVER_AUTH)
        else None
    )
    if chain is None or why is not None:
        raise AuthenticationError(
            f"the server's certificate is not valid for host {host}: {why}", rule="server-chain"
        )
    offered = [spki_pin(c.public_key()) for c in chain]
    if pin not in offered:
        names = ", ".join(f"{p} ({c.subject.rfc4514_string()})" for p, c in zip(offered, chain, strict=True))
        raise PinMismatchError(
            f"pin mismatch: expected {pin}, but the server's chain has {names}; nothing was stored",
            rule="server-pin",
        )
    return list(chain)


def client_context(
    ca_pem: bytes, *, certificate_path: Path | None = None, key_path: Path | None = None
) -> ssl.SSLContext:
    """TLS 1.2+ with host name checking that trusts ``ca_pem`` only; with a client certificate if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as exc:
        raise ParseError("the stored CA certificates are unreadable") from exc
    if certificate_path is not None:
        try:
            context.load_cert_chain(certificate_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            raise BackendError(
                f"cannot use {certificate_path} as TLS client certificate: {exc}", rule="client-certificate"
            ) from exc
    return context


def proxy_url(proxy: str | None) -> str | None:
    """``http(s)://[user:password@]host:port`` of an HTTP proxy, checked; None for no proxy."""
    if proxy is None:
        return None
    try:
        url = httpx.URL(proxy)
    except httpx.InvalidURL as exc:
        raise InvalidRequestError(f"proxy URL is invalid: {exc}", rule="proxy-url") from None
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        raise InvalidRequestError(
            f"proxy '{redacted_proxy(proxy)}' must be http://host:port (or https://)", rule="proxy-url"
        )
    return proxy


def redacted_proxy(proxy: str | None) -> str | None:
    """The proxy URL without its password, for status output and logs."""
    if proxy is None:
        return None
    try:
        url = httpx.URL(proxy)
        if not url.password:
            return proxy
        return str(url.copy_with(username=url.username, password="***"))  # noqa: S106 - a mask
    except httpx.InvalidURL:
        return "(invalid proxy URL)"


def bootstrap(
    server_url: str,
    pin: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    now: datetime | None = None,
    proxy: str | None = None,
) -> list[x509.Certificate]:
    """Fetch the server's CA certificates and return those the pin vouches for (the verified chain
    above the server certificate: issuing CA, root). Raises before anything is trusted otherwise."""
    validate_pin(pin)
    base = _base_url(server_url)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified below, against the pin, before anything is used
    with (
        _translate(base),
        httpx.Client(verify=context, timeout=timeout, trust_env=False, proxy=proxy_url(proxy)) as http,
        http.stream("GET", f"{base}/.well-known/est/cacerts", headers={"Accept": _PKCS7}) as response,
    ):
        leaf_der = _peer_certificate(response)
        body = _read_limited(response)
    if response.status_code != 200:
        raise _error(response, body)
    ca_certificates = _parse_pkcs7(response, body)
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        raise ParseError("the server's TLS certificate is unreadable") from None
    host = httpx.URL(base).host
    chain = verify_server_chain(leaf, ca_certificates, host, pin, now or datetime.now(UTC))
    return chain[1:]


class EstClient:
    """EST and device-API calls to one server, verified against the CA certificates from bootstrap."""

    def __init__(
        self,
        server_url: str,
        ca_pem: bytes,
        *,
        ca_label: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        proxy: str | None = None,
    ) -> None:
        """``transport`` replaces the network (tests); TLS settings then do not apply. ``proxy``: an
        HTTP proxy the connections are tunnelled through (CONNECT; TLS end to end)."""
        self.base_url = _base_url(server_url)
        self._proxy = proxy_url(proxy)
        self._ca_pem = ca_pem
        self._timeout = timeout
        self._transport = transport
        self._est = self._est_url(ca_label)
        self._http = self._client(client_context(ca_pem))

    def _est_url(self, label: str | None) -> str:
        return f"{self.base_url}/.well-known/est" + (f"/{quote(label, safe='')}" if label else "")

    def _client(self, context: ssl.SSLContext) -> httpx.Client:
        return httpx.Client(
            verify=context,
            timeout=self._timeout,
            trust_env=False,
            transport=self._transport,
            proxy=self._proxy if self._transport is None else None,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EstClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def cacerts(self, *, label: str | None = None) -> list[x509.Certificate]:
        """The CA certificates (issuing CA and root) of the EST label this client was made for, or of
        ``label``; from this server, over the connection verified against the pinned CAs."""
        est = self._est if label is None else self._est_url(label)
        response, body = self._send(self._http, "GET", f"{est}/cacerts", headers={"Accept": _EST_ACCEPT})
        return _parse_pkcs7(response, body)

    def simple_enroll(self, csr: x509.CertificateSigningRequest, token: str) -> x509.Certificate:
        """Initial enrollment, or renewal with a renewal token; the token is sent as Bearer only."""
        response, body = self._send(
            self._http,
            "POST",
            f"{self._est}/simpleenroll",
            content=_csr_body(csr),
            headers={
                "Content-Type": "application/pkcs10",
                "Authorization": f"Bearer {token}",
                "Accept": _EST_ACCEPT,
            },
        )
        return _issued(csr, _parse_pkcs7(response, body))

    def simple_reenroll(
        self, csr: x509.CertificateSigningRequest, certificate_path: Path, key_path: Path
    ) -> x509.Certificate:
        """Renewal authenticated by the current certificate and key (a key file) in the TLS handshake."""
        context = client_context(self._ca_pem, certificate_path=certificate_path, key_path=key_path)
        with self._client(context) as http:
            response, body = self._send(
                http,
                "POST",
                f"{self._est}/simplereenroll",
                content=_csr_body(csr),
                headers={"Content-Type": "application/pkcs10", "Accept": _EST_ACCEPT},
            )
        return _issued(csr, _parse_pkcs7(response, body))

    def factory_enroll(
        self,
        context: ssl.SSLContext,
        request_for: Callable[[bytes], x509.CertificateSigningRequest],
    ) -> x509.Certificate:
        """First enrollment authenticated by the factory identity (IDevID) that ``context`` presents,
        over TLS 1.2 and one connection: a ``GET cacerts`` opens it, ``request_for(tls_unique)``
        makes the CSR bound to it (RFC 7030 section 3.5), and the ``simpleenroll`` goes over the same
        connection. Should the server have closed it meanwhile, the request arrives on another one and
        is refused (idevid-channel-binding): nothing is issued to an unbound request."""
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.3 has no tls-unique
        # one connection, kept alive for the second request
        single = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        transport = self._transport or httpx.HTTPTransport(verify=context, limits=single, proxy=self._proxy)
        with httpx.Client(timeout=self._timeout, trust_env=False, transport=transport) as http:
            with _translate(self.base_url), http.stream("GET", f"{self._est}/cacerts") as opened:
                _read_limited(opened)
                stream = opened.extensions.get("network_stream")
                ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
                unique = ssl_object.get_channel_binding("tls-unique") if ssl_object is not None else None
            if not isinstance(unique, bytes):
                raise AuthenticationError("the connection has no tls-unique to bind the request to")
            csr = request_for(unique)
            response, body = self._send(
                http,
                "POST",
                f"{self._est}/simpleenroll",
                content=_csr_body(csr),
                headers={"Content-Type": "application/pkcs10", "Accept": _EST_ACCEPT},
            )
        return _issued(csr, _parse_pkcs7(response, body))

    def challenge(self, device_id: str, purpose: ChallengePurpose) -> Challenge:
        """A fresh single-use nonce for ``device_id`` to sign."""
        data = self._json("challenge", device_id, {"purpose": purpose.value})
        try:
            return Challenge(
                challenge_id=str(data["challenge_id"]),
                nonce=b64url.decode(str(data["nonce"]), "nonce"),
                purpose=ChallengePurpose(data["purpose"]),
                expires_at=datetime.fromisoformat(str(data["expires_at"])),
            )
        except (KeyError, ValueError, InvalidRequestError) as exc:
            raise ParseError(f"the server's challenge is malformed: {exc}") from None

    def attest(self, device_id: str, challenge_id: str, signature: bytes) -> AttestResult:
        """Answer a challenge with the signature over its message."""
        payload = {
            "challenge_id": challenge_id,
            "signature": b64url.encode(signature),
        }
        data = self._json("attest", device_id, payload)
        try:
            token = data.get("renewal_token")
            return AttestResult(
                device_id=str(data["device_id"]),
                result=str(data["result"]),
                serial=str(data["serial"]),
                renewal_token=None if token is None else str(token),
            )
        except KeyError as exc:
            raise ParseError(f"the server's attestation answer lacks {exc}") from None

    def _json(self, action: str, device_id: str, payload: dict[str, str]) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/devices/{quote(device_id, safe='')}/{action}"
        _, body = self._send(self._http, "POST", url, json=payload, headers={"Accept": "application/json"})
        data = _json_or_none(body)
        if not isinstance(data, dict):
            raise ParseError(f"the server's answer to {action} is not a JSON object")
        return data

    def _send(self, http: httpx.Client, method: str, url: str, **kwargs: Any) -> tuple[httpx.Response, bytes]:
        with _translate(self.base_url), http.stream(method, url, **kwargs) as response:
            body = _read_limited(response)
        if not 200 <= response.status_code < 300:
            raise _error(response, body)
        return response, body


@contextlib.contextmanager
def _translate(base_url: str) -> Iterator[None]:
    """Turn httpx failures into otward errors; a server certificate the CA certificates do not
    vouch for is an AuthenticationError, not a network hiccup."""
    try:
        yield
    except httpx.HTTPError as exc:
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise AuthenticationError(
                    f"{base_url} is not trusted by the stored CA certificates: {cause.verify_message}",
                    rule="server-untrusted",
                ) from exc
            cause = cause.__cause__ or cause.__context__
        raise BackendError(f"{base_url}: {exc or type(exc).__name__}", rule="server-unreachable") from exc


def _base_url(server_url: str) -> str:
    try:
        url = httpx.URL(server_url)
    except httpx.InvalidURL as exc:
        raise InvalidRequestError(f"server URL '{server_url}' is invalid: {exc}", rule="server-url") from None
    if url.scheme != "https" or not url.host:
        raise InvalidRequestError(f"server URL '{server_url}' must be https://host[:port]", rule="server-url")
    return str(url.copy_with(path="/", query=None, fragment=None)).rstrip("/")


def _is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _peer_certificate(response: httpx.Response) -> bytes:
    """DER of the certificate the server presented on the connection that carried ``response``."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der: object = ssl_object.getpeercert(True) if ssl_object is not None else None
    if not isinstance(der, bytes):
        raise AuthenticationError(
            "the server presented no certificate on the bootstrap connection", rule="server-chain"
        )
    return der


def _read_limited(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > _MAX_BODY:
            raise ParseError("the server's answer is larger than 1 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower()


def _error(response: httpx.Response, body: bytes) -> EstError:
    detail = response.reason_phrase or "error"
    rule: str | None = None
    if _media_type(response) == _PROBLEM:
        problem = _json_or_none(body)
        if isinstance(problem, dict):
            detail = str(problem.get("detail") or problem.get("title") or detail)
            found = problem.get("rule")
            rule = found if isinstance(found, str) else None
    return EstError(
        response.status_code,
        detail[:500],
        rule=rule,
        retry_after=_retry_after(response.headers.get("retry-after")),
    )


def _json_or_none(body: bytes) -> object:
    """The JSON value of ``body``, or None when it is not JSON: malformed, not UTF-8, or nested
    deeper than the decoder's recursion limit (RecursionError, which is not a ValueError)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _parse_pkcs7(response: httpx.Response, body: bytes) -> list[x509.Certificate]:
    if _media_type(response) != _PKCS7:
        raise ParseError(f"expected {_PKCS7} from the server, got '{_media_type(response) or 'none'}'")
    try:
        certificates = pkcs7.load_der_pkcs7_certificates(
            base64.b64decode(b"".join(body.split()), validate=True)
        )
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:  # other content types: the last
        raise ParseError(f"the server's PKCS#7 answer is unreadable: {exc}") from None
    if not certificates:
        raise ParseError("the server's PKCS#7 answer holds no certificate")
    return certificates


def _issued(csr: x509.CertificateSigningRequest, certificates: list[x509.Certificate]) -> x509.Certificate:
    """The certificate in the answer that carries the requested key."""
    wanted = csr.public_key()
    for certificate in certificates:
        try:
            key = certificate.public_key()
        except (ValueError, UnsupportedAlgorithm):
            continue  # a key cryptography cannot read is not the requested one
        if key == wanted:
            return certificate
    raise ParseError("the server returned no certificate for the requested key", rule="issued-key")


def _csr_body(csr: x509.CertificateSigningRequest) -> bytes:
    return base64.b64encode(csr.public_bytes(Encoding.DER))
