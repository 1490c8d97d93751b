"""kill -9 in the middle of a burst of issuance: nothing the API returned may be lost."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import build_csr, kill_server, make_key, start_server, stop_server

pytestmark = pytest.mark.integration

BURST = 1000
KILL_AFTER = 300


def test_sigkill_during_a_burst_loses_no_returned_certificate(tmp_path):
    server = start_server(tmp_path / "crash")
    csrs = [build_csr(make_key(), cn=f"burst-{i}").decode() for i in range(BURST)]
    returned: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    def client(part: list[str]) -> None:
        with server.client() as http:
            for csr in part:
                if killed.is_set():
                    return
                try:
                    response = http.post("/api/v1/certificates", json={"csr": csr, "profile": "tls-client"})
                except httpx.HTTPError:
                    return  # the server died under us
                if response.status_code == 201:
                    with lock:
                        returned.append(response.json()["serial"])
                        if len(returned) >= KILL_AFTER and not killed.is_set():
                            killed.set()
                            kill_server(server)  # SIGKILL to supervisor and workers: no shutdown, no flush

    threads = [threading.Thread(target=client, args=(csrs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop_server(server)
    assert killed.is_set(), "the burst finished before the kill"
    assert len(returned) >= KILL_AFTER

    restarted = start_server(tmp_path / "crash")
    try:
        with restarted.client() as http:
            for serial in returned:
                stored = http.get(f"/api/v1/certificates/{serial}")
                assert stored.status_code == 200, serial
                events = http.get("/api/v1/audit", params={"subject": serial, "type": "cert.issued"}).json()
                assert events["total"] == 1, serial
                proof = http.get(f"/api/v1/transparency/proof/{serial}")
                assert proof.status_code == 200, serial
            verdict = http.get("/api/v1/audit/verify").json()
            assert verdict["ok"], verdict
    finally:
        stop_server(restarted)
