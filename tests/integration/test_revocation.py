"""A committed revocation never stays missing from its CA's CRL (security review, issue #11 item 1).

The revocation commits first and the CRL is signed after it. These tests make the state a crash
between the two leaves behind (the revocation stored, the CRL not re-signed) and show that the
service, a later refresh and a repeated revoke all bring the CRL up to date, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509 import ReasonFlags

from otward.config import load_settings
from otward.core.audit import EventType
from otward.errors import ConflictError, SignerError
from otward.services.audit import SYSTEM_ACTOR
from otward.services.pki import Pki
from otward.services.revocation import RevocationService
from tests.conftest import build_csr, make_key, start_server, stop_server

pytestmark = pytest.mark.integration


def _listed(der: bytes, serial: int) -> bool:
    return x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(serial) is not None


def _revoke_without_publishing(pki: Pki, serial: int) -> None:
    """What a process killed right after the revocation's commit leaves: revoked, CRL untouched."""
    event = pki.audit.event(SYSTEM_ACTOR, EventType.CERT_REVOKED, format(serial, "x"))
    pki.stores.certificates.revoke_certificate(serial, datetime.now(UTC), ReasonFlags.key_compromise, [event])


def _issue(pki: Pki, cn: str) -> int:
    return pki.issuance.issue(build_csr(make_key(), cn=cn), profile="tls-client").certificate.serial_number


def test_a_crl_left_behind_a_committed_revocation_is_found_and_re_signed(pki):
    serial = _issue(pki, "op-1")
    assert pki.stores.crls.stale_crls() == []
    _revoke_without_publishing(pki, serial)
    assert pki.stores.crls.stale_crls() == ["issuing"]
    assert not _listed(pki.stores.crls.get_crl("issuing").der, serial)

    assert pki.revocation.refresh_all() == ["issuing"]
    assert _listed(pki.stores.crls.get_crl("issuing").der, serial)
    assert pki.stores.crls.stale_crls() == []
    assert pki.revocation.publish_stale() == []  # nothing more to do: no CRL re-signed for nothing


def test_revoking_again_re_signs_a_crl_that_was_left_behind(pki):
    serial = _issue(pki, "op-2")
    _revoke_without_publishing(pki, serial)
    with pytest.raises(ConflictError) as refused:
        pki.revocation.revoke(serial, ReasonFlags.key_compromise)
    assert refused.value.rule == "already-revoked"
    assert _listed(pki.stores.crls.get_crl("issuing").der, serial)


def test_a_failed_crl_signature_after_the_commit_is_caught_up_by_the_next_check(pki, monkeypatch):
    serial = _issue(pki, "op-3")
    real = RevocationService.publish_crl

    def failing(self, ca, actor=None):  # type: ignore[no-untyped-def]
        raise SignerError("the signing key is not available", rule="signer")

    monkeypatch.setattr(RevocationService, "publish_crl", failing)
    with pytest.raises(SignerError):
        pki.revocation.revoke(serial, ReasonFlags.key_compromise)
    assert pki.stores.certificates.get_certificate(serial).revoked_at is not None  # committed
    monkeypatch.setattr(RevocationService, "publish_crl", real)
    assert pki.revocation.publish_stale() == ["issuing"]
    assert _listed(pki.stores.crls.get_crl("issuing").der, serial)


def test_crls_signed_before_the_coverage_count_existed_are_re_signed_once(pki):
    from sqlalchemy import update

    from otward.adapters.db.schema import crls

    with pki.stores.database.transaction() as conn:
        conn.execute(update(crls).values(revoked_count=None))  # as migration 0007 leaves older CRLs
    assert pki.stores.crls.stale_crls() == ["issuing", "root"]
    pki.revocation.publish_stale()
    assert pki.stores.crls.stale_crls() == []


def test_the_running_service_re_signs_a_crl_left_behind_within_its_check_interval(
    tmp_path: Path, database_url
):
    running = start_server(tmp_path / "served", database_url=database_url)
    try:
        with running.client() as client:
            response = client.post(
                "/api/v1/certificates",
                json={"csr": build_csr(make_key(), cn="stolen-hmi").decode(), "profile": "tls-client"},
            )
            assert response.status_code == 201, response.text
            serial = int(response.json()["serial"], 16)
        # Another process (the state a SIGKILL between commit and CRL leaves) revokes without publishing.
        other = Pki.open(load_settings(running.data_dir, database_url=database_url))
        try:
            _revoke_without_publishing(other, serial)
        finally:
            other.close()
        deadline = time.monotonic() + 60  # the service checks every 5 s; generous for a loaded machine
        with httpx.Client(base_url=running.http_url) as plain:
            while True:
                crl = plain.get("/crl/issuing.crl")
                assert crl.status_code == 200
                if _listed(crl.content, serial):
                    break
                assert time.monotonic() < deadline, "the CRL never caught up with the revocation"
                time.sleep(0.5)
        assert "re-signed" in (running.data_dir / "serve.log").read_text()
    finally:
        stop_server(running)
