"""Gatekeepers syncing with a real ``otward serve``: bundles pulled, trails pushed exactly once."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otward.config import load_settings
from otward.core.audit import EventType
from otward.core.edge.formats import answer_message
from otward.core.keys import sign_data
from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.edge.holder import run_exchange
from otward.edge.sync import SyncClient
from otward.services.pki import Pki
from tests.conftest import (
    RunningServer,
    build_csr,
    free_port,
    make_key,
    self_signed,
    start_server,
    stop_server,
    write_key,
)
from tests.tls_policy import assert_tls_policy

from .conftest import PLANT

pytestmark = pytest.mark.integration


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[RunningServer, Pki]]:
    """A running server with the plant imported and a first bundle for reactor-1."""
    server = start_server(tmp_path / "served")
    pki = Pki.open(load_settings(server.data_dir))
    try:
        pki.access.import_yaml(PLANT.read_text())
        pki.edge.issue_bundle("reactor-1")
        yield server, pki
    finally:
        pki.close()
        stop_server(server)


def _token(pki: Pki, asset: str = "reactor-1") -> str:
    return pki.edge.create_token(asset)[1]


def _gatekeeper(server: RunningServer, state: Path) -> Gatekeeper:
    return Gatekeeper("reactor-1", load_roots(server.root_pem), state)


@contextlib.contextmanager
def _syncing(server: RunningServer, pki: Pki, tmp_path: Path) -> Iterator[Gatekeeper]:
    """A gatekeeper syncing with ``server`` every 0.2 s, once it holds its first bundle."""
    gatekeeper = _gatekeeper(server, tmp_path / "state")
    sync = SyncClient(gatekeeper, server.https_url, _token(pki), ca_file=server.root_pem, interval=0.2)
    sync.start()
    try:
        wait_for(lambda: gatekeeper.version == 1, "the first bundle")
        yield gatekeeper
    finally:
        sync.stop()
        gatekeeper.close()


def _anna(pki: Pki) -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, pki.edge.issue_credential("anna", key.public_key(), ttl=timedelta(hours=2)).token


def _central_trail(pki: Pki) -> list[tuple[int, str]]:
    return [(r.sequence, r.hash.hex()) for r in pki.edge.trail("reactor-1", limit=5000)]


def _local_trail(gatekeeper: Gatekeeper) -> list[tuple[int, str]]:
    return [(r.sequence, r.hash.hex()) for r in gatekeeper.trail.records()]


def test_disabling_a_person_is_enforced_within_a_sync(central, tmp_path):
    server, pki = central
    with _syncing(server, pki, tmp_path) as gatekeeper:
        key, credential = _anna(pki)
        assert run_exchange(gatekeeper, credential, key, "start").allowed
        pki.access.disable_person("anna")
        wait_for(lambda: gatekeeper.version >= 2, "the bundle after disabling anna")
        verdict = run_exchange(gatekeeper, credential, key, "start")
        assert not verdict.allowed
        assert verdict.reason == "person is disabled"
        wait_for(lambda: gatekeeper.acked_sequence == gatekeeper.trail.last_sequence, "the trail pushed")
        assert _central_trail(pki) == _local_trail(gatekeeper)


def test_offline_decisions_arrive_exactly_once_across_disconnect_and_restart(central, tmp_path):
    server, pki = central
    token = _token(pki)
    key, credential = _anna(pki)
    state = tmp_path / "state"
    gatekeeper = _gatekeeper(server, state)
    sync = SyncClient(gatekeeper, server.https_url, token, ca_file=server.root_pem)
    assert sync.run_once().error is None
    assert gatekeeper.version == 1
    for _ in range(3):
        assert run_exchange(gatekeeper, credential, key, "start").allowed
    assert sync.run_once().acknowledged == gatekeeper.trail.last_sequence

    stop_server(server)  # the network goes away
    for _ in range(4):
        assert run_exchange(gatekeeper, credential, key, "read-data").allowed
    offline = sync.run_once()
    assert offline.error is not None
    last, acked = gatekeeper.trail.last_sequence, gatekeeper.acked_sequence
    assert acked == 4  # policy.changed + three decisions
    assert acked < last
    sync.stop()
    gatekeeper.close()  # and the gatekeeper restarts while offline

    gatekeeper = _gatekeeper(server, state)
    assert gatekeeper.version == 1
    assert gatekeeper.trail.last_sequence == last
    assert gatekeeper.acked_sequence == acked
    assert run_exchange(gatekeeper, credential, key, "stop").allowed

    restarted = start_server(server.data_dir)  # the network comes back
    try:
        sync = SyncClient(gatekeeper, restarted.https_url, token, ca_file=restarted.root_pem)
        assert sync.run_once().error is None
        assert gatekeeper.acked_sequence == gatekeeper.trail.last_sequence
        assert _central_trail(pki) == _local_trail(gatekeeper)
        assert [s for s, _ in _central_trail(pki)] == list(range(1, gatekeeper.trail.last_sequence + 1))
        decided = [r for r in pki.edge.trail("reactor-1") if r.event.type is EventType.ACCESS_DECIDED]
        assert len(decided) == 8

        # An acknowledgement lost on the way: the gatekeeper sends again, nothing is stored twice.
        (state / "state.json").write_text(
            json.dumps({"asset": "reactor-1", "version": 1, "acked_sequence": 2})
        )
        sync.stop()
        gatekeeper.close()
        gatekeeper = _gatekeeper(restarted, state)
        sync = SyncClient(gatekeeper, restarted.https_url, token, ca_file=restarted.root_pem)
        assert sync.run_once().error is None
        assert gatekeeper.acked_sequence == gatekeeper.trail.last_sequence
        assert _central_trail(pki) == _local_trail(gatekeeper)
    finally:
        sync.stop()
        gatekeeper.close()
        stop_server(restarted)


def test_sync_token_is_bound_to_its_asset(central):
    server, pki = central
    pki.edge.issue_bundle("mixer-2")
    token = _token(pki, "reactor-1")
    url = f"{server.https_url}/api/v1/edge/assets"
    with httpx.Client(verify=server.ssl_context()) as client:
        ok = client.get(f"{url}/reactor-1/bundle", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("application/jwt")
        assert ok.headers["x-otward-bundle-version"] == "1"
        newest = client.get(
            f"{url}/reactor-1/bundle", params={"after": 1}, headers={"Authorization": f"Bearer {token}"}
        )
        assert newest.status_code == 204
        other = client.get(f"{url}/mixer-2/bundle", headers={"Authorization": f"Bearer {token}"})
        assert other.status_code == 401
        assert client.get(f"{url}/reactor-1/bundle").status_code == 401
        forged = token[:-4] + "AAAA"
        assert (
            client.get(f"{url}/reactor-1/bundle", headers={"Authorization": f"Bearer {forged}"}).status_code
            == 401
        )
        admin = client.get(f"{url}/mixer-2/bundle", headers={"Authorization": f"Bearer {server.token}"})
        assert admin.status_code == 200
        # an edge token administers nothing
        listing = client.get(
            f"{server.https_url}/api/v1/edge/credentials", headers={"Authorization": f"Bearer {token}"}
        )
        assert listing.status_code == 401
    # the source's first failure is recorded at once, the others counted for the minute's aggregate
    failures = [r.event for r in pki.stores.audit.iter_audit() if r.event.type is EventType.AUTH_FAILED]
    assert failures[0].reason == "edge token not valid for this asset"


def test_pushed_trail_that_contradicts_the_stored_one_is_refused(central, tmp_path):
    server, pki = central
    gatekeeper = _gatekeeper(server, tmp_path / "state")
    key, credential = _anna(pki)
    sync = SyncClient(gatekeeper, server.https_url, _token(pki), ca_file=server.root_pem)
    try:
        sync.run_once()
        run_exchange(gatekeeper, credential, key, "start")
        assert sync.run_once().acknowledged == 2
        records = list(gatekeeper.trail.records())
        forged = records[1].__class__(
            records[1].sequence, records[0].event, records[1].previous_hash, records[1].hash
        )
        push = pki.edge.push_trail("reactor-1", [forged])
        assert push.problem is not None
        assert push.acknowledged == 2
        assert push.stored == 0
        integrity = [
            r.event for r in pki.stores.audit.iter_audit() if r.event.type is EventType.INTEGRITY_FAILED
        ]
        assert integrity
    finally:
        sync.stop()
        gatekeeper.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("trail_sync", ["always", "batch"])
def test_edge_serve_over_http_with_sync(central, tmp_path, trail_sync):
    """``otward edge serve`` as a process: the exchange over its local API, the trail at the centre
    (with ``--trail-sync batch`` too: only fsynced records are pushed, and the push fsyncs first)."""
    server, pki = central
    bundle = tmp_path / "bundle.jwt"
    bundle.write_text(pki.edge.issue_bundle("reactor-1").token)
    token_file = tmp_path / "edge.token"
    token_file.write_text(_token(pki))
    port = free_port()
    log = (tmp_path / "edge.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otward",
            "edge",
            "serve",
            "--asset",
            "reactor-1",
            "--bundle",
            str(bundle),
            "--state",
            str(tmp_path / "edge-state"),
            "--listen",
            f"127.0.0.1:{port}",
            "--sync",
            server.https_url,
            "--token-file",
            str(token_file),
            "--ca-file",
            str(server.root_pem),
            "--sync-interval",
            "0.2",
            "--trail-sync",
            trail_sync,
            "--trail-sync-interval-ms",
            "5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "edge.log").read_text()
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, "edge serve to listen")
        key, credential = _anna(pki)
        with httpx.Client(base_url=base) as client:
            challenge = client.post("/v1/challenge", json={"credential": credential, "function": "start"})
            assert challenge.status_code == 201, challenge.text
            nonce = base64.urlsafe_b64decode(challenge.json()["nonce"] + "==")
            signature = sign_data(key, answer_message("reactor-1", "start", nonce))
            answer = {"nonce": challenge.json()["nonce"], "signature": _b64url(signature)}
            forged = {"X-Forwarded-For": "203.0.113.9"}  # believed from no one: no --trusted-proxy
            decided = client.post("/v1/answer", json=answer, headers=forged)
            assert decided.json()["decision"] == "allow", decided.text
            replayed = client.post("/v1/answer", json=answer, headers=forged)
            assert replayed.json()["decision"] == "deny"
            assert (
                client.post("/v1/challenge", json={"credential": credential, "function": "a\nb"}).status_code
                == 400
            )
            wait_for(
                lambda: client.get("/v1/status").json()["acked_sequence"] >= 3,
                "the decisions pushed",
            )
            status = client.get("/v1/status").json()
            assert status["trail_sync"] == trail_sync
            assert status["trail_synced_sequence"] >= status["acked_sequence"]
        decided_centrally = [
            r.event for r in pki.edge.trail("reactor-1") if r.event.type is EventType.ACCESS_DECIDED
        ]
        assert [e.outcome.value for e in decided_centrally] == ["success", "failure"]
        assert {e.source for e in decided_centrally} == {"127.0.0.1"}
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_admin_endpoints(central, tmp_path):
    server, _pki = central
    holder = ec.generate_private_key(ec.SECP256R1())
    public_pem = holder.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with server.client() as client:
        issued = client.post(
            "/api/v1/edge/credentials",
            json={"person": "anna", "public_key": public_pem.decode(), "ttl": "1h"},
        )
        assert issued.status_code == 201, issued.text
        credential_id = issued.json()["credential_id"]
        assert issued.json()["credential"].count(".") == 2
        unknown = client.post(
            "/api/v1/edge/credentials", json={"person": "nobody", "public_key": public_pem.decode()}
        )
        assert unknown.status_code == 404
        assert (
            client.post("/api/v1/edge/credentials", json={"person": "anna", "public_key": "x"}).status_code
            == 400
        )
        listed = client.get("/api/v1/edge/credentials", params={"person": "anna"}).json()
        assert [c["status"] for c in listed] == ["valid"]
        revoked = client.post(f"/api/v1/edge/credentials/{credential_id}/revoke")
        assert revoked.json()["status"] == "revoked"
        assert client.post(f"/api/v1/edge/credentials/{credential_id}/revoke").status_code == 409
        bundle = client.post(
            "/api/v1/edge/assets/reactor-1/bundles", json={"ttl": "1d", "fail_open": ["read-data"]}
        )
        assert bundle.status_code == 201, bundle.text
        assert bundle.json()["version"] == 2
        bad = client.post("/api/v1/edge/assets/reactor-1/bundles", json={"fail_open": ["enter"]})
        assert bad.status_code == 400
        assert bad.json()["rule"] == "fail-open"
        assert client.get("/api/v1/edge/assets/reactor-1/trail").json() == []
    gatekeeper = _gatekeeper(server, tmp_path / "state")
    try:
        gatekeeper.install_bundle(bundle.json()["bundle"])
        verdict = run_exchange(gatekeeper, issued.json()["credential"], holder, "start")
        assert verdict.reason == "credential is revoked"
    finally:
        gatekeeper.close()


def test_a_signer_rotation_reaches_a_syncing_gatekeeper(central, tmp_path):
    """Rotated by another process while the service runs: the next poll brings a bundle of the new
    signer that still accepts the old signer's credentials; a rotation that revokes ends them."""

    server, pki = central
    with _syncing(server, pki, tmp_path) as gatekeeper:
        old_key, old_credential = _anna(pki)
        assert run_exchange(gatekeeper, old_credential, old_key, "start").allowed
        pki.signers.rotate("edge")
        new_key, new_credential = _anna(pki)
        wait_for(lambda: gatekeeper.version >= 2, "the bundle of the new signer")
        assert run_exchange(gatekeeper, new_credential, new_key, "start").allowed
        assert run_exchange(gatekeeper, old_credential, old_key, "start").allowed
        pki.signers.rotate("edge", revoke_previous=x509.ReasonFlags.key_compromise)
        newest_key, newest_credential = _anna(pki)
        wait_for(lambda: gatekeeper.version >= 3, "the bundle naming the previous signer revoked")
        refused = run_exchange(gatekeeper, new_credential, new_key, "start")
        assert not refused.allowed
        assert "unknown at this asset" in refused.reason
        assert run_exchange(gatekeeper, old_credential, old_key, "start").allowed  # not revoked
        assert run_exchange(gatekeeper, newest_credential, newest_key, "start").allowed


def _write_identity(
    pki: Pki, directory: Path, name: str, profile: str, **names: tuple[str, ...]
) -> tuple[Path, Path]:
    key = make_key()
    issued = pki.issuance.issue(build_csr(key, cn=name, **names), profile=profile)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    chain = (issued.certificate, *issued.chain[:-1])  # leaf and issuing CA; the root is the peer's
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    write_key(key_path, key)
    return cert_path, key_path


def test_edge_serve_over_https_admits_only_readers_with_a_client_certificate(central, tmp_path):
    """The reader elsewhere on the network: HTTPS with otward's TLS settings, and readers with a
    certificate of the plant's CA only (plain HTTP, no certificate and a foreign one are refused)."""
    server, pki = central
    bundle = tmp_path / "bundle.jwt"
    bundle.write_text(pki.edge.issue_bundle("reactor-1").token)
    gate_cert, gate_key = _write_identity(pki, tmp_path, "127.0.0.1", "tls-server", ips=("127.0.0.1",))
    reader_cert, reader_key = _write_identity(pki, tmp_path, "reader-1", "tls-client")
    port = free_port()
    log = (tmp_path / "edge.log").open("wb")
    command = [sys.executable, "-m", "otward", "edge", "serve", "--asset", "reactor-1"]
    command += ["--bundle", str(bundle), "--state", str(tmp_path / "edge-state")]
    command += ["--listen", f"127.0.0.1:{port}", "--ca-file", str(server.root_pem)]
    command += ["--tls-cert", str(gate_cert), "--tls-key", str(gate_key)]
    command += ["--tls-client-ca", str(server.root_pem)]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"https://127.0.0.1:{port}"
    reader = ssl.create_default_context(cafile=str(server.root_pem))
    reader.load_cert_chain(str(reader_cert), str(reader_key))
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "edge.log").read_text()
            try:
                return httpx.get(f"{base}/healthz", verify=reader, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, "edge serve to listen over HTTPS")
        key, credential = _anna(pki)
        with httpx.Client(base_url=base, verify=reader) as client:
            challenge = client.post("/v1/challenge", json={"credential": credential, "function": "start"})
            assert challenge.status_code == 201, challenge.text
            nonce = base64.urlsafe_b64decode(challenge.json()["nonce"] + "==")
            signature = sign_data(key, answer_message("reactor-1", "start", nonce))
            answer = {"nonce": challenge.json()["nonce"], "signature": _b64url(signature)}
            assert client.post("/v1/answer", json=answer).json()["decision"] == "allow"
        anonymous = ssl.create_default_context(cafile=str(server.root_pem))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/healthz", verify=anonymous, timeout=5)  # no client certificate
        stranger = ssl.create_default_context(cafile=str(server.root_pem))
        foreign_key = ec.generate_private_key(ec.SECP256R1())
        foreign = self_signed(foreign_key, "reader-x")
        (tmp_path / "foreign.pem").write_bytes(foreign.public_bytes(serialization.Encoding.PEM))
        write_key(tmp_path / "foreign.key", foreign_key)
        stranger.load_cert_chain(str(tmp_path / "foreign.pem"), str(tmp_path / "foreign.key"))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{base}/healthz", verify=stranger, timeout=5)  # a certificate of no plant CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # plain HTTP
        # the same settings as every listener (otward.adapters.tls), probed by openssl; no banner
        assert_tls_policy(port, cafile=server.root_pem, cert=reader_cert, key=reader_key)
        assert "server" not in httpx.get(f"{base}/healthz", verify=reader, timeout=5).headers
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def test_edge_serve_tls_options_go_together(tmp_path):
    from typer.testing import CliRunner

    from otward.cli.app import app

    result = CliRunner().invoke(
        app,
        ["edge", "serve", "--asset", "reactor-1", "--state", str(tmp_path / "s"), "--tls-cert", "x.pem"],
    )
    assert result.exit_code == 1
    assert "--tls-cert and --tls-key go together" in result.output
