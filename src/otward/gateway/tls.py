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

from otward.adapters.files import read_limited
from otward.adapters.tls import TLS12_CIPHERS
from otward.adapters.tls import server_context as _server_context
from otward.errors import ConfigError

__all__ = ["TLS12_CIPHERS", "load_trusted_certificates", "server_context"]

_MAX_TRUST_BYTES = 4 << 20  # a trust file holds a few CA certificates


def load_trusted_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in the trust file (root and, usually, issuing CAs); ConfigError if none."""
    data = read_limited(path, _MAX_TRUST_BYTES, "--trust")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise ConfigError(f"--trust {path}: not a readable PEM certificate file ({exc})") from None
    if not certificates:
        raise ConfigError(f"--trust {path}: contains no certificate")
    return certificates


def server_context(trust: Path, certificate: Path, key: Path) -> ssl.SSLContext:
    """The gateway's context: a client certificate chaining to ``trust`` is required."""
    return _server_context(certificate, key, client_ca=trust)
