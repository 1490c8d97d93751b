"""The TLS policy of every listener otward opens: TLS 1.2 minimum, forward secrecy and AEAD suites
only, no compression, renegotiation or session tickets. :func:`restrict_server_context` applies it
(the HTTPS API and EST, whose context uvicorn builds); :func:`server_context` builds a whole context
for the Modbus gateway and the gatekeeper's local API, with a private key file only its owner can read.
The Mosquitto listener otward writes names the same suites (:mod:`otward.core.mosquitto`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from otward.errors import ConfigError

__all__ = ["TLS12_CIPHERS", "TlsFlags", "restrict_server_context", "server_context"]

#: TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites are all AEAD already.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class TlsFlags:
    """The command-line options an error message names (they differ between commands)."""

    client_ca: str = "--trust"
    certificate: str = "--cert"
    key: str = "--key"


def _check_private(key: Path, flag: str) -> None:
    """Refuse a private key file that group or others can read, as ssh does."""
    try:
        mode = key.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{flag} {key}: cannot read ({exc.strerror})") from None
    if mode & 0o077:
        raise ConfigError(
            f"{flag} {key}: readable by group or others (mode {mode & 0o777:04o}); run chmod 600 on it"
        )


def restrict_server_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """Apply otward's TLS policy to a server ``context`` in place (and return it).

    Session tickets are off: a resumed session would skip the certificate checks that only a full
    handshake makes (validity period), so every connection pays one full handshake.
    """
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
    return context


def server_context(
    certificate: Path, key: Path, *, client_ca: Path | None, flags: TlsFlags | None = None
) -> ssl.SSLContext:
    """A server context under :func:`restrict_server_context`; with ``client_ca`` a client
    certificate chaining to it is required."""
    names = flags or TlsFlags()
    _check_private(key, names.key)
    context = restrict_server_context(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.verify_flags |= ssl.VERIFY_X509_STRICT
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{names.client_ca} {client_ca}: cannot load ({exc})") from None
    try:
        context.load_cert_chain(str(certificate), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{names.certificate} {certificate} / {names.key} {key}: cannot load the certificate and key"
            f" ({exc})"
        ) from None
    return context
