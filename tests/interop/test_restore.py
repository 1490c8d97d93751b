"""A restored installation, served again, judged by OpenSSL: the certificate revoked after the backup
(learnt from the CRLs the old service published, ``--fetch-crls``) is ``revoked`` in OCSP and on the
CRL, whose number exceeds every number published before."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest
from cryptography import x509

from tests.conftest import start_server, stop_server
from tests.interop.helpers import Api, need, openssl_serial, otward_cli, run, write

pytestmark = [pytest.mark.interop, pytest.mark.integration]


def _crl_number(der: bytes) -> int:
    return x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_openssl_sees_the_revocation_after_a_restore(tmp_path):
    openssl = need("openssl")
    served = tmp_path / "served"
    server = start_server(served)
    restored = tmp_path / "restored"
    try:
        api = Api(server)
        try:
            issued = api.issue("tls-client", cn="restored-device")
            otward_cli(served, "backup", "--out", str(tmp_path / "backup.tar.gz"))
            api.revoke(issued.serial, "keyCompromise")
        finally:
            api.close()
        published = _crl_number(httpx.get(f"{server.http_url}/crl/issuing.crl").content)
        # The evidence: the CRLs the old service still publishes at the backup's public_url.
        otward_cli(
            restored,
            "restore",
            str(tmp_path / "backup.tar.gz"),
            "--fetch-crls",
            "--passphrase-file",
            str(served / "ca.pass"),
        )
    finally:
        stop_server(server)

    shutil.copy(served / "admin.token", restored / "admin.token")  # the operator's token still counts
    again = start_server(restored)
    try:
        leaf = write(tmp_path / "leaf.pem", issued.pem)
        issuing = write(tmp_path / "issuing.pem", issued.chain[0])
        out = run(
            [
                openssl,
                "ocsp",
                "-issuer",
                issuing,
                "-cert",
                leaf,
                "-url",
                f"{again.http_url}/ocsp",
                "-CAfile",
                again.root_pem,
            ]
        )
        assert "Response verify OK" in out.stderr, out.stdout + out.stderr
        assert f"{leaf}: revoked" in out.stdout, out.stdout
        assert "Reason: keyCompromise" in out.stdout, out.stdout

        crl_der = write(tmp_path / "issuing.crl", httpx.get(f"{again.http_url}/crl/issuing.crl").content)
        text = run([openssl, "crl", "-inform", "DER", "-in", crl_der, "-noout", "-text"]).stdout
        assert f"Serial Number: {openssl_serial(issued.serial_number)}" in text, text
        number = re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text)
        assert number is not None, text
        assert int(number.group(1)) > published

        crl_pem = tmp_path / "issuing-crl.pem"
        run([openssl, "crl", "-inform", "DER", "-in", crl_der, "-out", crl_pem])
        chain = write(tmp_path / "chain.pem", issued.chain[0] + issued.chain[-1])
        verified = run(
            [openssl, "verify", "-crl_check", "-CAfile", chain, "-CRLfile", crl_pem, leaf], check=False
        )
        assert verified.returncode != 0
        assert "certificate revoked" in verified.stdout + verified.stderr
    finally:
        stop_server(again)
