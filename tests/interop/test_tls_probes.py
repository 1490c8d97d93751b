"""The TLS probes of tests/tls_policy.py are real offers: each one a listener must refuse completes
against a permissive ``openssl s_server`` with an ECDSA certificate, so a refusal seen at an otward
listener is the listener's policy, not the client's (issue 13 item 6)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import free_port, make_key, self_signed, write_key
from tests.tls_policy import REFUSED, handshake

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(("name", "options"), REFUSED, ids=[name for name, _ in REFUSED])
def test_a_refused_offer_completes_against_a_server_that_allows_it(name, options, tmp_path: Path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key = make_key()
    certificate = tmp_path / "control.pem"
    certificate.write_bytes(self_signed(key, "localhost").public_bytes(serialization.Encoding.PEM))
    key_file = write_key(tmp_path / "control.key", key)
    port = free_port()
    control = subprocess.Popen(
        [
            *(openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1"),
            *("-cert", str(certificate)),
            *("-key", str(key_file)),
            *options,
        ],
        stdin=subprocess.PIPE,  # s_server stops at EOF on stdin
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert control.stdout is not None
        for line in control.stdout:
            if line.startswith("ACCEPT"):
                break
        else:
            pytest.fail("openssl s_server did not start")
        assert handshake(port, options, cafile=certificate, cert=None, key=None), name
    finally:
        assert control.stdin is not None
        control.stdin.close()
        try:
            control.wait(timeout=10)
        except subprocess.TimeoutExpired:
            control.kill()
            control.wait()
        assert control.stdout is not None
        control.stdout.close()
