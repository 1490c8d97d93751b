"""The plain-HTTP port of a real ``otward serve``: /healthz for load balancers, and OCSP answers to GET
that HTTP caches may keep (RFC 5019 section 6)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import pytest
from cryptography import x509
from cryptography.x509 import ocsp

from otward import __version__
from otward.http.status import MAX_OCSP_AGE
from tests.conftest import build_csr, make_key, ocsp_request_der

pytestmark = pytest.mark.integration


def _issue(server) -> tuple[x509.Certificate, x509.Certificate]:
    with server.client() as client:
        body = client.post(
            "/api/v1/certificates",
            json={"csr": build_csr(make_key(), cn="op-1").decode(), "profile": "tls-client"},
        ).json()
    return x509.load_pem_x509_certificate(body["certificate"].encode()), x509.load_pem_x509_certificate(
        body["chain"][0].encode()
    )


def test_healthz_on_the_plain_http_port(server):
    with httpx.Client(base_url=server.http_url) as plain:
        answer = plain.get("/healthz")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {"status": "ok", "version": __version__}
        assert plain.post("/healthz").status_code == 405


def test_ocsp_answers_to_get_carry_rfc5019_caching_headers_and_post_answers_none(server):
    leaf, issuing = _issue(server)
    request = ocsp_request_der(issuing, leaf.serial_number)
    path = "/ocsp/" + base64.b64encode(request).decode()
    with httpx.Client(base_url=server.http_url) as plain:
        got = plain.get(path)
        posted = plain.post("/ocsp", content=request, headers={"content-type": "application/ocsp-request"})
        with_nonce = plain.get("/ocsp/" + base64.b64encode(ocsp_request_der(issuing, 1, b"n" * 16)).decode())
    assert got.status_code == 200
    response = ocsp.load_der_ocsp_response(got.content)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    headers = got.headers
    directives = [d.strip() for d in headers["cache-control"].split(",")]
    assert directives[1:] == ["public", "no-transform", "must-revalidate"]
    max_age = int(directives[0].removeprefix("max-age="))
    # fresh until nextUpdate, never beyond it nor beyond the bound
    until_next = (response.next_update_utc - datetime.now(UTC)).total_seconds()
    assert 0 < max_age <= min(until_next + 1, MAX_OCSP_AGE)
    assert parsedate_to_datetime(headers["last-modified"]) == response.this_update_utc.replace(microsecond=0)
    assert parsedate_to_datetime(headers["expires"]) == response.next_update_utc.replace(microsecond=0)
    assert headers["etag"] == f'"{hashlib.sha256(got.content).hexdigest()}"'
    assert posted.status_code == 200
    for name in ("etag", "expires", "last-modified"):
        assert name not in posted.headers
    assert "max-age" not in posted.headers.get("cache-control", "")
    assert with_nonce.headers["cache-control"] == "no-store"  # an answer bound to one request


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_sees_the_caching_headers_with_their_conventional_names(server):
    leaf, issuing = _issue(server)
    encoded = base64.b64encode(ocsp_request_der(issuing, leaf.serial_number)).decode()
    head = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", f"{server.http_url}/ocsp/{encoded}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    names = {line.split(":", 1)[0] for line in head.splitlines()[1:] if ":" in line}
    assert {"Cache-Control", "Expires", "Last-Modified", "ETag", "Content-Type"} <= names, head
