"""The gateway's TLS server context: mutual TLS, TLS 1.2 minimum, AEAD suites only.

OpenSSL does the chain and validity-period checks during the handshake (an
expired, not-yet-valid or foreign client certificate ends it); revocation is
checked by the gateway right after the handshake against CRLs it indexes itself
(:mod:`otward.gateway.revocation`), because a CRL loaded into an ``SSLContext``
can never be taken out again.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509

from otward.errors import ConfigError

__all__ = ["TLS12_CIPHERS", "load_trusted_certificates", "server_context"]

#: TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def load_trusted_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in the trust file (root and, usually, issuing CAs); ConfigError if none."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--trust {path}: not a readable PEM certificate file ({exc})") from None
    if not certificates:
        raise ConfigError(f"--trust {path}: contains no certificate")
    return certificates


def _check_private(key: Path) -> None:
    """Refuse a private key file that group or others can read, as ssh does."""
    try:
        mode = key.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"--key {key}: cannot read ({exc.strerror})") from None
    if mode & 0o077:
        raise ConfigError(
            f"--key {key}: readable by group or others (mode {mode & 0o777:04o}); run chmod 600 on it"
        )


def server_context(trust: Path, certificate: Path, key: Path) -> ssl.SSLContext:
    """A server context that requires a client certificate chaining to ``trust``.

    Session tickets are off: a resumed session would skip the certificate checks
    that only a full handshake makes (validity period), so every connection pays
    one full handshake.
    """
    _check_private(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_TICKET
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.num_tickets = 0
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        context.load_verify_locations(cafile=str(trust))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--trust {trust}: cannot load ({exc})") from None
    try:
        context.load_cert_chain(str(certificate), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--cert {certificate} / --key {key}: cannot load the gateway's certificate and key ({exc})"
        ) from None
    return context
