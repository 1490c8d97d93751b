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

from otward.adapters.tls import TLS12_CIPHERS
from otward.adapters.tls import server_context as _server_context
from otward.errors import ConfigError

__all__ = ["TLS12_CIPHERS", "load_trusted_certificates", "server_context"]


def load_trusted_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in the trust file (root and, usually, issuing CAs); ConfigError if none."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--trust {path}: not a readable PEM certificate file ({exc})") from None
    if not certificates:
        raise ConfigError(f"--trust {path}: contains no certificate")
    return certificates


def server_context(trust: Path, certificate: Path, key: Path) -> ssl.SSLContext:
    """The gateway's context: a client certificate chaining to ``trust`` is required."""
    return _server_context(certificate, key, client_ca=trust)
