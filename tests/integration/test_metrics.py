"""``/metrics`` and ``cert.expiring`` warnings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.audit import EventType
from otward.http.app import create_app
from otward.services.pki import Pki
from tests.conftest import build_csr, make_key
from tests.integration.test_services import Clock

pytestmark = pytest.mark.integration


def test_metrics_need_the_admin_token_and_count_from_the_database(pki, installation):
    token = (installation / "admin.token").read_text().strip()
    pki.issuance.issue(build_csr(make_key(), cn="op"), profile="tls-client", validity_days=20)
    revoked = pki.issuance.issue(build_csr(make_key(), cn="op2"), profile="tls-client")
    pki.revocation.revoke(
        revoked.certificate.serial_number, __import__("cryptography").x509.ReasonFlags.superseded
    )
    with TestClient(create_app(pki), base_url="https://testserver") as client:
        assert client.get("/metrics").status_code == 401
        text = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert 'otward_certificates_issued_total{ca="issuing",profile="tls-client"} 2.0' in text
    assert 'otward_certificates_revoked_total{ca="issuing",profile="tls-client"} 1.0' in text
    assert 'otward_certificates_expiring{ca="issuing",within="30d"} 1.0' in text
    assert "otward_auth_failures_total 1.0" in text  # the unauthenticated scrape above
    assert 'otward_http_request_duration_seconds_count{method="GET",route="/metrics",status="401"}' in text


def test_expiry_warnings_are_written_once_per_mark(installation, database_url):
    clock = Clock()
    pki = Pki.open(load_settings(installation, database_url=database_url), clock=clock)
    try:
        serial = pki.issuance.issue(
            build_csr(make_key(), cn="short"), profile="tls-client", validity_days=40
        ).serial
        assert pki.expiry.record_crossings() == 0
        clock.now += timedelta(days=11)
        assert pki.expiry.record_crossings() == 1
        assert pki.expiry.record_crossings() == 0
        clock.now += timedelta(days=24)
        assert pki.expiry.record_crossings() == 1
        marks = [
            r.event.details["mark"]
            for r in pki.stores.audit.iter_audit()
            if r.event.type is EventType.CERT_EXPIRING and r.event.subject == serial
        ]
        assert marks == ["30d", "7d"]
    finally:
        pki.close()


def test_the_failure_count_includes_what_aggregated_events_stand_for(pki, installation):
    """Repeated failures of a source are one audit event with a count; the metric counts failures."""
    token = (installation / "admin.token").read_text().strip()
    with TestClient(create_app(pki), base_url="https://testserver") as client:
        for _ in range(6):  # one event now, five counted into the aggregate
            assert client.get("/api/v1/cas", headers={"Authorization": "Bearer otw_wrong"}).status_code == 401
        pki.record_aggregates()
        text = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    failures = [r for r in pki.stores.audit.iter_audit() if r.event.type is EventType.AUTH_FAILED]
    assert len(failures) == 2
    assert "otward_auth_failures_total 6.0" in text
