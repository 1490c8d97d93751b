"""``openssl s_client`` probes of a listener's TLS policy (issue 13 item 6): TLS 1.1 refused even when
the client offers it at security level 0, TLS 1.2 CBC suites refused, an
ECDHE + AEAD TLS 1.2 suite and TLS 1.3 accepted. The refusal is the server's: the client offers what
it is told to (tests/interop/test_tls_probes.py shows each refused offer completing against a
permissive ``openssl s_server``), so a server that still speaks it would complete. The listeners have
ECDSA certificates: offers of RSA suites (ECDHE-RSA-*, plain RSA key exchange) would fail on the
certificate whatever the policy, so they are not among the probes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["ACCEPTED", "REFUSED", "assert_tls_policy", "handshake"]

# (name, s_client options) of offers a listener must refuse ...
REFUSED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS 1.1", ("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")),
    ("TLS 1.0", ("-tls1", "-cipher", "DEFAULT@SECLEVEL=0")),
    ("CBC SHA-1 (ECDSA)", ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA")),
    ("CBC SHA-256 (ECDSA)", ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256")),
    ("CBC SHA-384 (ECDSA)", ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384")),
)
# ... and offers it must accept (otward's listeners have ECDSA certificates).
ACCEPTED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS 1.2 AES-GCM", ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")),
    ("TLS 1.2 ChaCha20", ("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")),
    ("TLS 1.3", ("-tls1_3",)),
)


def handshake(
    port: int, options: tuple[str, ...], *, cafile: Path, cert: Path | None, key: Path | None
) -> str:
    """The protocol and suite s_client negotiated (``Protocol version: ...`` and ``Ciphersuite: ...``),
    or "" when the handshake failed."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", "-CAfile", str(cafile)]
    if cert is not None and key is not None:
        command += ["-cert", str(cert), "-key", str(key), "-cert_chain", str(cert)]  # with its CA
    result = subprocess.run([*command, *options], input=b"", capture_output=True, timeout=30, check=False)
    text = (result.stdout + result.stderr).decode(errors="replace")
    if result.returncode != 0 or "CONNECTION ESTABLISHED" not in text:
        return ""
    return " ".join(
        line.strip() for line in text.splitlines() if line.startswith(("Protocol version", "Ciphersuite"))
    )


def assert_tls_policy(port: int, *, cafile: Path, cert: Path | None = None, key: Path | None = None) -> None:
    """Every :data:`REFUSED` offer fails and every :data:`ACCEPTED` one succeeds (with ``cert``/``key``
    as the client certificate where the listener wants one)."""
    accepted = {name: handshake(port, o, cafile=cafile, cert=cert, key=key) for name, o in REFUSED}
    assert not any(accepted.values()), {name: got for name, got in accepted.items() if got}
    for name, options in ACCEPTED:
        assert handshake(port, options, cafile=cafile, cert=cert, key=key), f"{name} refused on port {port}"
