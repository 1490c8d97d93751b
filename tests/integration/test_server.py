"""``otward serve`` as a real process: TLS, both ports, several workers, PostgreSQL."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from otward.http.limits import MAX_FAILURES
from otward.services.bootstrap import initialize
from tests.conftest import (
    _postgres_database,
    build_csr,
    free_port,
    make_key,
    ocsp_request_der,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration


def test_server_answers_health_and_rejects_missing_token(server):
    with server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        response = client.get("/api/v1/certificates", headers={"Authorization": ""})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.postgres
def test_two_workers_on_postgresql_issue_revoke_and_answer_ocsp(tmp_path):
    import httpx

    for url in _postgres_database():
        running = start_server(tmp_path / "pg", workers=2, database_url=url)
        try:
            with running.client() as client:
                serials = []
                for i in range(6):  # spread over both workers
                    response = client.post(
                        "/api/v1/certificates",
                        json={"csr": build_csr(make_key(), cn=f"op-{i}").decode(), "profile": "tls-client"},
                    )
                    assert response.status_code == 201, response.text
                    serials.append(int(response.json()["serial"], 16))
                issuing = x509.load_pem_x509_certificate(
                    client.get("/api/v1/cas/issuing").json()["certificate"].encode()
                )
                client.post(
                    f"/api/v1/certificates/{format(serials[0], 'x')}/revoke", json={"reason": "superseded"}
                )
            with httpx.Client(base_url=running.http_url) as plain:
                for _ in range(4):
                    answer = ocsp.load_der_ocsp_response(
                        plain.post(
                            "/ocsp",
                            content=ocsp_request_der(issuing, serials[0]),
                            headers={"content-type": "application/ocsp-request"},
                        ).content
                    )
                    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
                crl = x509.load_der_x509_crl(plain.get("/crl/issuing.crl").content)
                assert crl.get_revoked_certificate_by_serial_number(serials[0]) is not None
        finally:
            stop_server(running)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path):
    import os
    import re
    import signal
    import time

    running = start_server(tmp_path / "orphans", workers=2)
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            log = (running.data_dir / "serve.log").read_text()
            workers = {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)}
            time.sleep(0.1)
        assert len(workers) == 2
        os.kill(running.process.pid, signal.SIGKILL)  # the supervisor only
        running.process.wait()
        deadline = time.monotonic() + 20
        while workers and time.monotonic() < deadline:
            for pid in list(workers):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    workers.discard(pid)
            time.sleep(0.2)
        assert not workers, f"workers {workers} kept running without their supervisor"
    finally:
        stop_server(running)


def test_second_service_on_a_port_in_use_fails_instead_of_sharing_it(tmp_path):
    """Workers share their port through SO_REUSEPORT; another ``otward serve`` must not join them."""
    import subprocess
    import sys

    import httpx

    running = start_server(tmp_path / "first", workers=2)
    try:
        port = running.https_url.rsplit(":", 1)[1]
        initialize(tmp_path / "second", organization="Other")
        result = subprocess.run(
            [sys.executable, "-m", "otward", "serve", "--data", str(tmp_path / "second"), "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr + result.stdout
        for _ in range(20):  # new connections, spread over both workers' sockets, all answered
            with httpx.Client(base_url=running.https_url, verify=running.ssl_context()) as fresh:
                assert fresh.get("/healthz").status_code == 200
    finally:
        stop_server(running)


def test_forged_attest_path_writes_no_line_into_the_syslog_export(server):
    """The review's attack: a newline and a syslog header in the device id of the unauthenticated
    attest route. Refused at the edge; the export has one well-formed message per event."""
    import json
    import subprocess
    import sys

    from tests.unit.core.test_syslog import parse_rfc5424

    forged = "plc-1%0A%3C86%3E1%202026-11-22T12:00:00.000000Z%20plc%20otward-ca%20-%20-%20-%20forged"
    with server.client() as client:
        response = client.post(
            f"/api/v1/devices/{forged}/attest",
            json={"challenge_id": "c" * 32, "signature": "AAAA"},
            headers={"Authorization": ""},
        )
    assert response.status_code == 400, response.text
    assert response.json()["rule"] == "schema"

    def export(fmt: str) -> str:
        command = [sys.executable, "-m", "otward", "audit", "export", "--format", fmt, "--data"]
        done = subprocess.run([*command, str(server.data_dir)], capture_output=True, text=True, check=True)
        return done.stdout

    events = [json.loads(line) for line in export("jsonl").splitlines()]
    assert events
    assert not [e for e in events if "\n" in e["subject"] or "forged" in e["subject"]]
    lines = export("syslog").splitlines()
    assert len(lines) == len(events)
    assert [parse_rfc5424(line)["params"]["seq"] for line in lines] == [str(e["sequence"]) for e in events]


def _worker_pids(server) -> set[int]:
    import re
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = (server.data_dir / "serve.log").read_text()
        if pids := {int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log)}:
            return pids
        time.sleep(0.1)
    raise AssertionError("no worker started")


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM): what it ever held, not what it holds now."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1])


def _flood(url: str, context, path: str, headers: str, *, chunked: bool, cap: int = 48 << 20):
    """POST to ``path`` with no credentials and send up to ``cap`` bytes of body, stopping as soon
    as the server answers; the status line (None if no answer came) and the bytes sent."""
    import contextlib
    import select
    import socket
    import ssl
    import urllib.parse

    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    raw = socket.create_connection((host, port), timeout=10)
    sock = context.wrap_socket(raw, server_hostname=host)
    length = "Transfer-Encoding: chunked" if chunked else "Content-Length: 524288000"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{length}\r\n\r\n".encode())
    piece = b"0" * (64 << 10)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
    sent = 0
    answer = b""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed after answering
        while sent < cap and not answer:
            sock.sendall(frame)
            sent += len(piece)
            if select.select([sock], [], [], 0)[0]:  # a TLS 1.3 session ticket also makes it readable
                sock.settimeout(0)
                with contextlib.suppress(ssl.SSLWantReadError):
                    answer = sock.recv(4096)
                sock.settimeout(10)
    with contextlib.suppress(ConnectionResetError, TimeoutError), sock:
        while b"\r\n" not in answer and (data := sock.recv(4096)):
            answer += data
    return (answer.split(b"\r\n", 1)[0].decode() if answer else None), sent


def test_oversized_bodies_are_refused_before_they_are_read(server):
    """A declared or streamed body over the endpoint's limit, without valid credentials: 413 at once,
    and the worker does not buffer it (its peak memory stays put). The EST request carries a wrong
    token: one without any gets the challenge (401) before its body is read, and the connection closed."""
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
    (worker,) = _worker_pids(server)
    before = _peak_rss_kib(worker)
    context = server.ssl_context()
    cases = [
        (server.https_url, "/api/v1/certificates", "Content-Type: application/json\r\n"),
        (
            server.https_url,
            "/.well-known/est/simpleenroll",
            "Content-Type: application/pkcs10\r\nAuthorization: Bearer otwe_0123456789abcdef_wrong\r\n",
        ),
        (server.https_url, "/ocsp", "Content-Type: application/ocsp-request\r\n"),
    ]
    for url, path, headers in cases:
        for chunked in (False, True):
            status, sent = _flood(url, context, path, headers, chunked=chunked)
            assert status is not None, (path, chunked, sent)  # answered before the sender gave up
            assert " 413 " in status, (path, chunked, status)
    with server.client() as client:  # the worker still serves
        assert client.get("/healthz").status_code == 200
    grown = _peak_rss_kib(worker) - before
    assert grown < 8 << 10, f"the worker's peak memory grew by {grown} KiB"


def _est_with_forged_sources(server, attempts: int) -> list[int]:
    """EST enrollments with a wrong token, each claiming another X-Forwarded-For address."""
    import base64

    csr = base64.b64encode(
        x509.load_pem_x509_csr(build_csr(make_key(), cn="plc-1")).public_bytes(Encoding.DER)
    )
    statuses = []
    with server.client() as client:
        for i in range(attempts):
            response = client.post(
                "/.well-known/est/simpleenroll",
                content=csr,
                headers={
                    "Content-Type": "application/pkcs10",
                    "Authorization": "Bearer otwe_0123456789abcdef_wrong",
                    "X-Forwarded-For": f"198.51.100.{i + 1}",
                },
            )
            statuses.append(response.status_code)
    return statuses


def _refusal_sources(server) -> set[str]:
    """From the database: the API would refuse this source's admin token for a minute too."""
    from otward.config import load_settings
    from otward.services.pki import Pki

    pki = Pki.open(load_settings(server.data_dir), migrate=False)
    try:
        return {
            r.event.source for r in pki.stores.audit.iter_audit() if r.event.type.value == "enroll.refused"
        }
    finally:
        pki.close()


def test_forwarded_for_is_not_believed_without_a_trusted_proxy(server):
    """A local client rotating X-Forwarded-For is still one source: limited, and audited as itself."""
    statuses = _est_with_forged_sources(server, MAX_FAILURES + 3)
    assert statuses[:MAX_FAILURES] == [401] * MAX_FAILURES
    assert statuses[MAX_FAILURES:] == [429] * 3
    assert _refusal_sources(server) == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_configured_proxy(tmp_path):
    data = tmp_path / "proxied"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    config = data / "config.toml"
    config.write_text(
        config.read_text().replace('# trusted_proxies = ["10.0.0.5"]', 'trusted_proxies = ["127.0.0.1"]')
    )
    running = start_server(data)
    try:
        statuses = _est_with_forged_sources(running, MAX_FAILURES + 3)
        assert statuses == [401] * (MAX_FAILURES + 3)  # every address is its own source
        assert _refusal_sources(running) == {f"198.51.100.{i + 1}" for i in range(MAX_FAILURES + 3)}
    finally:
        stop_server(running)


def test_wrong_admin_tokens_are_limited_and_aggregated_in_the_trail(tmp_path):
    """Wrong admin tokens: 429 after the per-source limit; the trail holds a few rows whose counts add
    up to every failure (the aggregate is written at the minute's tick or, here, at shutdown)."""
    from otward.config import load_settings
    from otward.services.pki import Pki

    running = start_server(tmp_path / "guessed")
    attempts = 200
    try:
        with running.client() as client:
            statuses = [
                client.get(
                    "/api/v1/certificates", headers={"Authorization": f"Bearer otw_{i:016x}_{'A' * 43}"}
                ).status_code
                for i in range(attempts)
            ]
            limited = client.get("/api/v1/certificates", headers={"Authorization": "Bearer wrong"})
    finally:
        stop_server(running)
    assert statuses[:MAX_FAILURES] == [401] * MAX_FAILURES
    assert set(statuses[MAX_FAILURES:]) == {429}
    assert int(limited.headers["Retry-After"]) >= 1
    pki = Pki.open(load_settings(running.data_dir), migrate=False)
    try:
        failed = [r.event for r in pki.stores.audit.iter_audit() if r.event.type.value == "auth.failed"]
    finally:
        pki.close()
    assert len(failed) <= 2  # the first on its own, the rest as one aggregate
    assert {e.source for e in failed} == {"127.0.0.1"}
    assert sum(int(e.details.get("failures", "1")) for e in failed) == MAX_FAILURES


def test_https_answers_carry_hsts_and_nosniff_and_the_plain_port_does_not(server):
    import httpx

    with server.client() as client:
        answers = [
            client.get("/healthz"),
            client.get("/api/v1/certificates", headers={"Authorization": ""}),  # a problem document
            client.get("/crl/issuing.crl"),  # the status app under the HTTPS port
            client.get("/docs"),
        ]
    for answer in answers:
        assert answer.headers["strict-transport-security"] == "max-age=31536000", answer.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.url
    with httpx.Client(base_url=server.http_url) as plain:
        crl = plain.get("/crl/issuing.crl")
        oversized = plain.post("/ocsp", content=b"0" * (17 << 10))  # the body limit holds here too
    assert crl.status_code == 200
    assert "strict-transport-security" not in crl.headers
    assert oversized.status_code == 413
    assert oversized.json()["rule"] == "body-size"


def test_every_https_listener_of_serve_keeps_the_tls_policy_and_no_answer_names_the_server(server):
    """TLS 1.2+ with ECDHE + AEAD suites only on the API/EST port (it once accepted CBC suites:
    uvicorn's own context was used as it came), and no ``Server`` banner on either port."""
    import httpx

    from tests.tls_policy import assert_tls_policy

    assert_tls_policy(int(server.https_url.rsplit(":", 1)[1]), cafile=server.root_pem)
    with server.client() as client:
        answers = [client.get("/healthz"), client.get("/.well-known/est/cacerts"), client.get("/nowhere")]
    with httpx.Client(base_url=server.http_url) as plain:
        answers += [plain.get("/crl/root.crl"), plain.get("/nowhere")]
    for answer in answers:
        assert "server" not in answer.headers, (answer.url, answer.headers["server"])
    assert answers[0].headers["strict-transport-security"] == "max-age=31536000"
    assert answers[0].headers["x-content-type-options"] == "nosniff"
