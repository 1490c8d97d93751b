"""The TLS probe: real handshakes with one endpoint, recorded as a :class:`TlsObservation`.

Python's ``ssl`` uses the system OpenSSL (3.0 here), which offers TLS 1.0/1.1 and SHA-1 signatures only
at ``@SECLEVEL=0``; the probe sets that level so it can *offer* what it must detect. It never verifies
anything itself (``CERT_NONE``): the chain is checked by :mod:`otward.core.assess.certificates`.

How each fact is found:

* **versions**: one handshake per version with minimum = maximum = that version; the version is accepted
  when the server's ServerHello was accepted (the handshake completed, or failed only later, e.g. for a
  missing client certificate — OpenSSL records the suite only after a ServerHello it accepted).
* **suites** (TLS 1.2 and older): offer every suite the local OpenSSL has, note the one the server picks,
  remove it and repeat until the server refuses: one handshake per accepted suite plus one.
* **client certificates**: OpenSSL's message callback (``SSLContext._msg_callback``, the hook CPython's
  own tests use) shows whether a CertificateRequest arrived. A handshake without a certificate that the
  server then refuses (a failed TLS 1.2 handshake, or a TLS 1.3 alert on the first read) means
  *required*; a session that stays open means *optional*. When a certificate was requested, a second
  handshake presents a self-signed certificate made for the scan: a session that stays open means the
  server does not verify client certificates.
* **chain**: the certificates the server sent (``get_unverified_chain``), bounded in count and size
  before they are parsed.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.core.assess.tls import (
    CipherSuite,
    ClientAuth,
    ProtocolVersion,
    SelfSignedClient,
    TlsObservation,
)
from otward.errors import BackendError

__all__ = [
    "MAX_CHAIN_BYTES",
    "MAX_CHAIN_CERTIFICATES",
    "ClientIdentity",
    "TargetUnreachableError",
    "local_untestable",
    "probe_tls",
    "self_signed_client_identity",
    "tls_handshake",
]

MAX_CHAIN_CERTIFICATES: Final = 10
MAX_CHAIN_BYTES: Final = 64 * 1024
CONNECT_TIMEOUT: Final = 5.0  # one connection attempt, within the per-target budget
READ_WAIT: Final = 1.0  # how long a session must stay open after the handshake to count as accepted
_ALL = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
_ENCODING_DER: Final = getattr(__import__("_ssl"), "ENCODING_DER", 1)  # _ssl.Certificate.public_bytes
_CERTIFICATE_REQUEST = 13  # TLS HandshakeType certificate_request (RFC 5246 §7.4, RFC 8446 §4)
_HANDSHAKE = 22  # TLS ContentType handshake
_VERSIONS: Final = {
    ProtocolVersion.SSL3: ssl.TLSVersion.SSLv3,
    ProtocolVersion.TLS1_0: ssl.TLSVersion.TLSv1,
    ProtocolVersion.TLS1_1: ssl.TLSVersion.TLSv1_1,
    ProtocolVersion.TLS1_2: ssl.TLSVersion.TLSv1_2,
    ProtocolVersion.TLS1_3: ssl.TLSVersion.TLSv1_3,
}
# Setting a deprecated version warns; warnings filters are process-wide, so the few lines that do it
# run one thread at a time.
_LEGACY_LOCK = threading.Lock()


class TargetUnreachableError(BackendError):
    """No TCP connection to the target (refused, timed out, no route, name not resolved)."""


class _OutOfTimeError(Exception):
    pass


@dataclass(frozen=True)
class ClientIdentity:
    """The self-signed client certificate and key files the probe offers (made for the scan, never
    issued by anyone)."""

    certificate: Path
    key: Path


@contextlib.contextmanager
def self_signed_client_identity() -> Iterator[ClientIdentity]:
    """A fresh self-signed EC P-256 client certificate in a private temporary directory, removed after."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otward assess self-signed probe")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory(prefix="otward-assess-") as directory:
        cert_path, key_path = Path(directory) / "client.pem", Path(directory) / "client.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        yield ClientIdentity(cert_path, key_path)


@dataclass
class _Outcome:
    server_hello: bool = False
    completed: bool = False
    version: str | None = None
    cipher: str | None = None
    chain: list[bytes] = field(default_factory=list)
    certificate_request: bool = False
    watched: bool = False  # the message callback was available, so certificate_request is known
    after: str = "n/a"  # open | closed | alert: ... (only when asked to read)
    error: str | None = None


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.handshakes = 0

    def timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _OutOfTimeError
        return min(left, CONNECT_TIMEOUT)


def _local_suites() -> list[Any]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers(_ALL)
    return [
        c
        for c in context.get_ciphers()
        if c["protocol"] != "TLSv1.3"
        and not any(part in str(c.get("kea")) + str(c.get("auth")) for part in ("psk", "srp"))
    ]


@functools.cache
def local_untestable() -> tuple[tuple[str, ...], dict[ProtocolVersion, bool]]:
    """What the local OpenSSL cannot offer: suite families (by name) and protocol versions."""
    names = [str(c["name"]).upper() for c in _local_suites()]
    missing = []
    for label, marker in (("RC4 suites", "RC4"), ("DES/3DES suites", "DES"), ("export suites", "EXP")):
        if not any(marker in n.split("-") or marker in n for n in names):
            missing.append(label)
    if not any("NULL" in n for n in names):
        missing.append("NULL suites")
    offerable = {}
    for version in ProtocolVersion:
        try:
            _context(version, version, _ALL, None)
            offerable[version] = not (version is ProtocolVersion.SSL3 and not ssl.HAS_SSLv3)
        except (ValueError, ssl.SSLError):
            offerable[version] = False
    return tuple(missing), offerable


def _context(
    low: ProtocolVersion, high: ProtocolVersion, ciphers: str, identity: ClientIdentity | None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # observed, not trusted: the chain is checked with cryptography
    with _LEGACY_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        context.minimum_version = _VERSIONS[low]
        context.maximum_version = _VERSIONS[high]
    context.set_ciphers(ciphers)
    context.options |= ssl.OP_NO_TICKET
    if identity is not None:
        context.load_cert_chain(str(identity.certificate), str(identity.key))
    return context


def _handshake(
    host: str,
    port: int,
    server_name: str | None,
    budget: _Budget,
    *,
    low: ProtocolVersion,
    high: ProtocolVersion,
    ciphers: str = _ALL,
    identity: ClientIdentity | None = None,
    read: bool = False,
) -> _Outcome:
    outcome = _Outcome()
    try:
        context = _context(low, high, ciphers, identity)
    except ssl.SSLError as exc:
        outcome.error = f"local TLS library refused the offer: {exc.reason or exc}"
        return outcome

    def on_message(
        conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: Any
    ) -> None:
        if direction == "read" and int(content_type) == _HANDSHAKE and int(msg_type) == _CERTIFICATE_REQUEST:
            outcome.certificate_request = True

    if hasattr(context, "_msg_callback"):
        context._msg_callback = on_message
        outcome.watched = True
    timeout = budget.timeout()
    budget.handshakes += 1
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise TargetUnreachableError(
            f"TCP connection to {host}:{port} failed: {exc.strerror or exc}"
        ) from None
    with raw:
        raw.settimeout(timeout)
        sock = context.wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
        with sock:
            try:
                sock.do_handshake()
                outcome.completed = True
            except (ssl.SSLError, OSError) as exc:
                outcome.error = _reason(exc)
            outcome.cipher = _cipher_name(sock)
            outcome.server_hello = outcome.completed or outcome.cipher is not None
            outcome.version = sock.version() if outcome.completed else None
            if outcome.server_hello:
                outcome.chain = _chain(sock)
            if read and outcome.completed:
                outcome.after = _after(sock)
    return outcome


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(getattr(exc, "strerror", None) or exc)


def _cipher_name(sock: ssl.SSLSocket) -> str | None:
    try:
        cipher = sock.cipher()
    except (ValueError, OSError):
        return None
    return cipher[0] if cipher else None


def _chain(sock: ssl.SSLSocket) -> list[bytes]:
    """The DER certificates the server sent, bounded (count and total size) before anyone parses them."""
    getter = getattr(sock, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        sslobj = getattr(sock, "_sslobj", None)
        getter = getattr(sslobj, "get_unverified_chain", None)
    if getter is None:
        der = sock.getpeercert(binary_form=True)
        return [der] if der else []
    certificates = getter() or []
    chain: list[bytes] = []
    total = 0
    for certificate in certificates[:MAX_CHAIN_CERTIFICATES]:
        der = certificate if isinstance(certificate, bytes) else certificate.public_bytes(_ENCODING_DER)
        total += len(der)
        if total > MAX_CHAIN_BYTES:
            break
        chain.append(der)
    return chain


def _after(sock: ssl.SSLSocket) -> str:
    """Whether the server keeps the session open after the handshake (TLS 1.3 servers refuse a client
    certificate only after the client finished, with an alert the first read sees)."""
    try:
        sock.settimeout(READ_WAIT)
        data = sock.recv(1)
    except TimeoutError:
        return "open"
    except ssl.SSLError as exc:
        return f"alert: {_reason(exc)}"
    except OSError as exc:
        return f"closed: {_reason(exc)}"
    return "open" if data else "closed"


def probe_tls(
    host: str,
    port: int,
    *,
    target: str,
    server_name: str | None,
    budget_seconds: float,
    identity: ClientIdentity | None,
    note: str | None = None,
) -> TlsObservation:
    """Probe one endpoint within ``budget_seconds``; raises :class:`TargetUnreachableError` when the first
    TCP connection fails. A probe cut short by the budget returns what it saw, marked incomplete."""
    budget = _Budget(budget_seconds)
    untestable, offerable = local_untestable()
    protocols: dict[ProtocolVersion, bool | None] = {v: None for v in ProtocolVersion if not offerable[v]}
    lowest = next(v for v in ProtocolVersion if offerable[v])
    suites: list[CipherSuite] = []
    client_auth, self_signed = ClientAuth.UNKNOWN, SelfSignedClient.UNTESTED
    chain: list[bytes] = []
    negotiated, failure, incomplete = "", None, None
    try:
        first = _handshake(
            host, port, server_name, budget, low=lowest, high=ProtocolVersion.TLS1_3, read=True
        )
        chain = first.chain
        if first.server_hello:
            negotiated = " ".join(p for p in (first.version, first.cipher) if p)
        else:
            failure = first.error
        client_auth = _client_auth(first)
        speaks_tls = first.server_hello or "alert" in (first.error or "")
        for version in ProtocolVersion:
            if offerable[version] and not speaks_tls:
                protocols[version] = False  # no ServerHello and no alert: not a TLS server at all
            elif offerable[version]:
                outcome = _handshake(host, port, server_name, budget, low=version, high=version)
                protocols[version] = outcome.server_hello
                chain = chain or outcome.chain
        for version in (v for v in ProtocolVersion if protocols.get(v) and v is not ProtocolVersion.TLS1_3):
            suites.extend(_enumerate_suites(host, port, server_name, budget, version))
        if (first.certificate_request or client_auth is ClientAuth.REQUIRED) and identity is not None:
            presented = _handshake(
                host,
                port,
                server_name,
                budget,
                low=lowest,
                high=ProtocolVersion.TLS1_3,
                identity=identity,
                read=True,
            )
            accepted = presented.completed and presented.after == "open"
            self_signed = SelfSignedClient.ACCEPTED if accepted else SelfSignedClient.REFUSED
    except _OutOfTimeError:
        incomplete = (
            f"the per-target timeout of {budget.seconds:g} s ran out after {budget.handshakes} handshake(s); "
            "the findings cover only what was probed before."
        )
    except TargetUnreachableError:
        if budget.handshakes <= 1:
            raise
        incomplete = f"the target stopped accepting connections after {budget.handshakes} handshake(s)."
    return TlsObservation(
        target=target,
        protocols=protocols,
        suites=tuple(suites),
        chain=_parse_chain(chain),
        client_auth=client_auth,
        self_signed_client=self_signed,
        negotiated=negotiated,
        untestable=untestable,
        incomplete=incomplete,
        note=note,
        failure=failure,
    )


def _client_auth(first: _Outcome) -> ClientAuth:
    if not first.server_hello:
        return ClientAuth.UNKNOWN
    if not first.watched:  # no message callback in this Python: only a refusal says anything
        refused = not first.completed or first.after.startswith("alert")
        return ClientAuth.REQUIRED if refused else ClientAuth.UNKNOWN
    if not first.certificate_request:
        return ClientAuth.NOT_REQUESTED
    if first.completed and first.after == "open":
        return ClientAuth.OPTIONAL
    return ClientAuth.REQUIRED


def _enumerate_suites(
    host: str, port: int, server_name: str | None, budget: _Budget, version: ProtocolVersion
) -> list[CipherSuite]:
    legacy = version is not ProtocolVersion.TLS1_2
    remaining = {
        str(c["name"]): c for c in _local_suites() if not legacy or c["protocol"] in {"SSLv3", "TLSv1.0"}
    }
    accepted: list[CipherSuite] = []
    while remaining:
        outcome = _handshake(
            host,
            port,
            server_name,
            budget,
            low=version,
            high=version,
            ciphers=":".join(remaining) + ":@SECLEVEL=0",
        )
        if not outcome.server_hello or outcome.cipher not in remaining:
            break
        info = remaining.pop(outcome.cipher)
        accepted.append(
            CipherSuite(
                name=outcome.cipher,
                version=version,
                aead=bool(info.get("aead")),
                kea=str(info.get("kea")),
                auth=str(info.get("auth")),
                digest=info.get("digest"),
                symmetric=info.get("symmetric"),
            )
        )
    return accepted


def _parse_chain(chain: list[bytes]) -> tuple[x509.Certificate, ...]:
    parsed = []
    for der in chain:
        try:
            parsed.append(x509.load_der_x509_certificate(der))
        except ValueError:
            break  # a certificate cryptography cannot read ends the chain it can check
    return tuple(parsed)


def tls_handshake(host: str, port: int, *, timeout: float) -> tuple[str, bool] | None:
    """One handshake offering everything: (what was negotiated, whether a client certificate was
    required) when the port speaks TLS, else None. For ports that may or may not be TLS (Modbus)."""
    lowest = next(v for v, ok in local_untestable()[1].items() if ok)
    outcome = _handshake(
        host, port, None, _Budget(timeout), low=lowest, high=ProtocolVersion.TLS1_3, read=True
    )
    if not outcome.server_hello:
        return None
    required = outcome.certificate_request and not (outcome.completed and outcome.after == "open")
    described = " ".join(p for p in (outcome.version, outcome.cipher) if p) or "TLS"
    if required:
        described += ", client certificate required"
    elif outcome.certificate_request:
        described += ", client certificate requested but optional"
    return described, required
