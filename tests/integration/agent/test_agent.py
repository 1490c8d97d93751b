"""The device agent against a real ``otward serve``: pinning, enrollment, re-enrollment, attestation,
and renewal by challenge with a key on a SoftHSM2 token.

One server per module (its start-up dominates); every test enrolls its own device id. The SoftHSM2
token is set up the way tests/integration/agent/test_pkcs11_keys.py explains (private configuration,
module re-initialised, finalised afterwards).
"""

from __future__ import annotations

import json
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from otward.agent.agent import Agent
from otward.agent.client import EstError, PinMismatchError
from otward.agent.keys import FileKeyStore
from otward.agent.state import AgentStore, KeyBackend, Pkcs11Settings
from otward.cli.app import app as cli
from otward.config import load_settings
from otward.core.keys import spki_pin
from otward.errors import BackendError
from otward.services.pki import Pki
from tests.conftest import RunningServer, softhsm_token, start_server, stop_server

pytestmark = pytest.mark.integration

OWNER = "acme"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("agent") / "served")
    try:
        pki = Pki.open(load_settings(server.data_dir))
        try:
            pki.owners.create(OWNER)
        finally:
            pki.close()
        yield server
    finally:
        stop_server(server)


def enrollment_token(server: RunningServer) -> str:
    pki = Pki.open(load_settings(server.data_dir))
    try:
        _, text = pki.enrollment_tokens.create(OWNER)
    finally:
        pki.close()
    return text


def root_pin(server: RunningServer) -> str:
    return spki_pin(x509.load_pem_x509_certificate(server.root_pem.read_bytes()).public_key())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def registry(server: RunningServer, device_id: str) -> dict[str, object]:
    with server.client() as client:
        response = client.get(f"/api/v1/devices/{device_id}")
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll until ``condition`` holds; a minute without it is a failure, not a timing measurement."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached within 60 s")
        time.sleep(0.05)


def key_file(store: AgentStore, label: str) -> Path:
    return store.keys_dir / f"{label}.key.pem"


def test_enroll_attest_and_renew_with_a_file_key(served, tmp_path):
    store = AgentStore(tmp_path / "agent")
    with Agent.enroll(
        store,
        server=served.https_url,
        token=enrollment_token(served),
        device_id="plc-1",
        pin=root_pin(served),
    ) as agent:
        first = agent.state
        assert first.backend is KeyBackend.FILE
        assert first.key_label == "otward-plc-1-1"
        certificate = first.certificate
        assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "plc-1"
        first_key = FileKeyStore(store.keys_dir).load(first.key_label)
        assert certificate.public_key() == first_key.public_key()
        root = x509.load_pem_x509_certificate(served.root_pem.read_bytes())
        assert root in store.load_ca()
        assert [c.subject for c in first.chain] == [certificate.issuer]
        assert mode(store.directory) == 0o700
        for path in (store.state_path, store.ca_path, store.cert_path, store.chain_path):
            assert mode(path) == 0o600, path
        assert mode(key_file(store, first.key_label)) == 0o600

        attested = agent.attest()
        assert (attested.result, attested.serial) == ("passed", f"{certificate.serial_number:x}")
        assert registry(served, "plc-1")["last_attested_at"] is not None

        renewed = agent.renew()
        assert renewed.key_label == "otward-plc-1-2"
        assert renewed.certificate.serial_number != certificate.serial_number
        assert not key_file(store, first.key_label).exists()
        new_key = FileKeyStore(store.keys_dir).load(renewed.key_label)
        assert renewed.certificate.public_key() == new_key.public_key()
        assert renewed.certificate.public_key() != first_key.public_key()
        assert x509.load_pem_x509_certificate(store.cert_path.read_bytes()) == renewed.certificate
        assert store.load() == renewed

        assert agent.attest().serial == f"{renewed.certificate.serial_number:x}"
    assert registry(served, "plc-1")["current_serial"] == f"{renewed.certificate.serial_number:x}"


def test_a_failed_renewal_keeps_the_old_key_and_certificate(served, tmp_path):
    store = AgentStore(tmp_path / "agent")
    with Agent.enroll(
        store,
        server=served.https_url,
        token=enrollment_token(served),
        device_id="plc-7",
        pin=root_pin(served),
    ) as agent:
        before = agent.state
        exported = store.cert_path.read_bytes(), store.chain_path.read_bytes()
        with served.client() as admin:
            assert admin.post("/api/v1/devices/plc-7/disable").status_code == 200
        with pytest.raises(EstError) as info:
            agent.renew()
        assert info.value.status == 403
        assert store.load() == before
        assert (store.cert_path.read_bytes(), store.chain_path.read_bytes()) == exported
        assert key_file(store, before.key_label).exists()
        assert not key_file(store, before.next_key_label()).exists()

        with served.client() as admin:
            assert admin.post("/api/v1/devices/plc-7/enable").status_code == 200
        assert agent.renew().key_label == before.next_key_label()


def test_a_wrong_pin_is_refused_before_the_token_is_sent_and_nothing_is_stored(served, tmp_path):
    store = AgentStore(tmp_path / "agent")
    token = enrollment_token(served)  # single use
    stranger = spki_pin(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(PinMismatchError) as info:
        Agent.enroll(store, server=served.https_url, token=token, device_id="plc-2", pin=stranger)
    assert "pin mismatch" in info.value.message
    assert not store.directory.exists()
    # the token never left the agent: it still enrolls once the pin is right
    Agent.enroll(store, server=served.https_url, token=token, device_id="plc-2", pin=root_pin(served)).close()
    assert store.is_enrolled()


def test_a_refused_token_leaves_no_key_and_no_store(served, tmp_path):
    store = AgentStore(tmp_path / "agent")
    token = enrollment_token(served)
    wrong = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(EstError) as info:
        Agent.enroll(store, server=served.https_url, token=wrong, device_id="plc-3", pin=root_pin(served))
    assert info.value.status == 401
    assert token not in str(info.value)
    assert not store.directory.exists()


def test_the_cli_enrolls_reports_renews_and_attests(served, tmp_path):
    runner = CliRunner()
    directory = str(tmp_path / "agent")
    enrolled = runner.invoke(
        cli,
        [
            "agent",
            "enroll",
            "--server",
            served.https_url,
            "--device-id",
            "plc-4",
            "--pin",
            root_pin(served),
            "--store",
            directory,
            "--json",
        ],
        env={"OTWARD_ENROLL_TOKEN": enrollment_token(served)},
    )
    assert enrolled.exit_code == 0, enrolled.output
    status = runner.invoke(cli, ["agent", "status", "--store", directory, "--json"])
    assert status.exit_code == 0, status.output
    info = json.loads(status.output)
    assert (info["device_id"], info["key_backend"], info["key_label"]) == ("plc-4", "file", "otward-plc-4-1")
    assert info["renewal_due"] < info["not_after"]
    text = runner.invoke(cli, ["agent", "status", "--store", directory]).output
    assert "  proxy: none\n" in text  # no proxy: said so, not Python's "None"
    assert "None" not in text

    renewed = runner.invoke(cli, ["agent", "renew", "--store", directory, "--json"])
    assert renewed.exit_code == 0, renewed.output
    assert json.loads(renewed.output)["serial"] != info["serial"]
    attested = runner.invoke(cli, ["agent", "attest", "--store", directory, "--json"])
    assert attested.exit_code == 0, attested.output
    assert json.loads(attested.output) == {
        "device_id": "plc-4",
        "result": "passed",
        "serial": json.loads(renewed.output)["serial"],
    }


def test_the_cli_names_a_pin_mismatch_and_exits_1(served, tmp_path):
    stranger = spki_pin(ec.generate_private_key(ec.SECP256R1()).public_key())
    result = CliRunner().invoke(
        cli,
        [
            "agent",
            "enroll",
            "--server",
            served.https_url,
            "--token",
            "otwe_unused_token",
            "--device-id",
            "plc-5",
            "--pin",
            stranger,
            "--store",
            str(tmp_path / "agent"),
        ],
    )
    assert result.exit_code == 1
    assert "pin mismatch" in result.output
    assert not (tmp_path / "agent").exists()


def test_run_renews_once_due_and_stops_when_told(served, tmp_path):
    """The agent's clock is moved past the renewal point; run() must renew by itself."""
    store = AgentStore(tmp_path / "agent")
    Agent.enroll(
        store,
        server=served.https_url,
        token=enrollment_token(served),
        device_id="plc-6",
        pin=root_pin(served),
    ).close()
    first = store.load().certificate
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    offset = {"now": lifetime * 0.75}

    def clock() -> datetime:
        return datetime.now(UTC) + offset["now"]

    stop = threading.Event()
    with Agent.open(store.directory, clock=clock) as agent:
        worker = threading.Thread(
            target=agent.run, args=(stop,), kwargs={"attest_interval": timedelta(hours=1)}
        )
        worker.start()
        try:
            wait_for(lambda: store.load().key_counter >= 2)
            offset["now"] = timedelta(0)  # renewed: back to real time, where nothing is due
            wait_for(lambda: registry(served, "plc-6")["last_attested_at"] is not None)
        finally:
            stop.set()
            worker.join(timeout=60)
    assert not worker.is_alive()
    renewed = store.load()
    assert renewed.key_counter >= 2
    assert renewed.certificate.serial_number != first.serial_number
    assert registry(served, "plc-6")["current_serial"] == f"{renewed.certificate.serial_number:x}"


def test_a_file_agent_whose_certificate_expired_renews_by_challenge(served, tmp_path):
    """Seen from the device's clock the certificate has expired, so TLS client authentication is out:
    the agent earns a renewal token with its key instead (the server grants it: still valid there)."""
    store = AgentStore(tmp_path / "agent")
    Agent.enroll(
        store,
        server=served.https_url,
        token=enrollment_token(served),
        device_id="plc-9",
        pin=root_pin(served),
    ).close()
    first = store.load()
    token_before = registry(served, "plc-9")["enrollment_token"]
    lifetime = first.certificate.not_valid_after_utc - first.certificate.not_valid_before_utc
    with Agent.open(store.directory, clock=lambda: datetime.now(UTC) + lifetime) as agent:
        renewed = agent.renew()
    assert renewed.certificate.serial_number != first.certificate.serial_number
    assert not key_file(store, first.key_label).exists()
    shown = registry(served, "plc-9")
    assert shown["current_serial"] == f"{renewed.certificate.serial_number:x}"
    assert shown["enrollment_token"] != token_before  # the renewal token, not simplereenroll


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pkcs11Settings]:
    """A fresh SoftHSM2 token and a 0600 PIN file, for this module only."""
    with softhsm_token(tmp_path_factory.mktemp("softhsm"), label="agent") as hsm:
        yield Pkcs11Settings(hsm.module, hsm.label, hsm.pin_file)


def token_labels(settings: Pkcs11Settings) -> set[str]:
    """Labels of the private keys on the token, asked of the token directly."""
    from pkcs11.constants import Attribute, ObjectClass

    token = pkcs11.lib(str(settings.module)).get_token(token_label=settings.token_label)
    with token.open(user_pin=settings.pin_file.read_text().strip()) as session:
        return {o[Attribute.LABEL] for o in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})}


def test_a_pkcs11_agent_renews_by_challenge_and_attests(served, softhsm, tmp_path):
    """Python's ssl cannot do TLS with a token key: renewal goes challenge -> renewal token ->
    simpleenroll with the new key, and the old key leaves the token."""
    store = AgentStore(tmp_path / "agent")
    with Agent.enroll(
        store,
        server=served.https_url,
        token=enrollment_token(served),
        device_id="hsm-1",
        pin=root_pin(served),
        pkcs11=softhsm,
    ) as agent:
        first = agent.state
    assert first.backend is KeyBackend.PKCS11
    assert not store.keys_dir.exists()
    assert softhsm.pin_file.read_text().strip() not in store.state_path.read_text()

    with Agent.open(store.directory) as agent:
        assert agent.attest().serial == f"{first.certificate.serial_number:x}"
        renewed = agent.renew()
        assert renewed.key_label == "otward-hsm-1-2"
        assert renewed.certificate.serial_number != first.certificate.serial_number
        assert renewed.certificate.public_key() != first.certificate.public_key()
        assert agent.attest().serial == f"{renewed.certificate.serial_number:x}"
    labels = token_labels(softhsm)  # after close: PKCS#11 login state is per process
    assert "otward-hsm-1-2" in labels
    assert "otward-hsm-1-1" not in labels
    assert registry(served, "hsm-1")["current_serial"] == f"{renewed.certificate.serial_number:x}"


class ConnectProxy:
    """A small HTTP CONNECT proxy on loopback (as a plant's proxy would be), recording the tunnels it
    made and the Proxy-Authorization it saw; ``redirect`` makes it a malicious proxy that sends every
    tunnel elsewhere."""

    def __init__(self, redirect: tuple[str, int] | None = None) -> None:
        self.tunnels: list[str] = []
        self.down = False
        self.authorizations: list[str | None] = []
        self._redirect = redirect
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
            method, target, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            if self.down:  # the way to the server is broken (as during a network outage)
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            self.tunnels.append(target)
            self.authorizations.append(headers.get("Proxy-Authorization"))
            host, port = target.rsplit(":", 1)
            with socket.create_connection(self._redirect or (host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(client, upstream)

    def close(self) -> None:
        self._stop.set()
        self._server.close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 30)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            peers[sock].sendall(data)


def test_the_agent_reaches_its_server_through_an_http_proxy_it_was_given(served, tmp_path, monkeypatch):
    """CONNECT tunnel with TLS end to end: the pin and CA checks are unchanged, the proxy (with its
    credentials) is kept for renewals, and the environment's proxy variables are never used."""
    proxy = ConnectProxy()
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # would fail: the agent ignores it
    try:
        store = AgentStore(tmp_path / "agent")
        with Agent.enroll(
            store,
            server=served.https_url,
            token=enrollment_token(served),
            device_id="plc-proxied",
            pin=root_pin(served),
            proxy=proxy.url.replace("http://", "http://gw:s3cret@"),
        ) as agent:
            assert agent.renew().key_label == "otward-plc-proxied-2"
            assert agent.attest().result == "passed"
        host_port = served.https_url.removeprefix("https://")
        assert proxy.tunnels
        assert set(proxy.tunnels) == {host_port}
        assert set(proxy.authorizations) == {"Basic Z3c6czNjcmV0"}  # gw:s3cret
        result = CliRunner().invoke(cli, ["agent", "status", "--store", str(store.directory), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["proxy"] == proxy.url.replace("http://", "http://gw:***@")
        assert "s3cret" not in result.output
    finally:
        proxy.close()


def test_a_renewal_that_got_no_answer_is_asked_again_with_the_same_key(served, tmp_path):
    """When the connection fails the server may have issued: the agent keeps the new key and the next
    renewal asks with it again (the server then answers with what it issued, see test_devices)."""
    proxy = ConnectProxy()
    store = AgentStore(tmp_path / "agent")
    try:
        with Agent.enroll(
            store,
            server=served.https_url,
            token=enrollment_token(served),
            device_id="plc-lost",
            pin=root_pin(served),
            proxy=proxy.url,
        ) as agent:
            before = agent.state
            proxy.down = True
            with pytest.raises(BackendError) as failed:
                agent.renew()
            assert failed.value.rule == "server-unreachable"
            assert store.load() == before
            pending = FileKeyStore(store.keys_dir).load(before.next_key_label())  # kept

            proxy.down = False
            renewed = agent.renew()
            assert renewed.key_label == before.next_key_label()
            assert renewed.certificate.public_key() == pending.public_key()
            assert not key_file(store, before.key_label).exists()
    finally:
        proxy.close()


def test_a_proxy_that_sends_the_agent_elsewhere_is_caught_by_the_pin(served, tmp_path):
    impostor = start_server(tmp_path / "impostor")  # another otward installation, another root
    proxy = ConnectProxy(redirect=("127.0.0.1", int(impostor.https_url.rsplit(":", 1)[1])))
    try:
        store = AgentStore(tmp_path / "agent")
        with pytest.raises(PinMismatchError, match="pin mismatch"):
            Agent.enroll(
                store,
                server=served.https_url,
                token=enrollment_token(served),
                device_id="plc-redirected",
                pin=root_pin(served),
                proxy=proxy.url,
            )
        assert proxy.tunnels
        assert not store.directory.exists()
    finally:
        proxy.close()
        stop_server(impostor)


def test_the_cli_enrolls_a_device_of_an_owner_with_its_own_ca_without_being_told_the_ca(tmp_path):
    """``otward agent enroll`` without ``--ca`` for an owner whose devices come from its own sub-CA:
    the agent learns that CA's chain from its pinned server (it failed with "does not chain to the
    trusted CA certificates" after the server had issued), then renews and attests. Its own server,
    with the CA made before it starts (a CA made while a server runs is trusted for client
    certificates within a minute)."""
    from otward.services.bootstrap import initialize
    from tests.conftest import free_port

    data = tmp_path / "served"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    runner = CliRunner()
    for command in (
        ["ca", "create", "line-2", "--parent", "root"],
        ["owner", "create", "line-2", "--ca", "line-2"],
    ):
        made = runner.invoke(cli, [*command, "--data", str(data)])
        assert made.exit_code == 0, made.output
    pki = Pki.open(load_settings(data))
    try:
        _, token = pki.enrollment_tokens.create("line-2")
        owner_ca = pki.authorities.get("line-2").certificate
    finally:
        pki.close()
    server = start_server(data)
    try:
        directory = tmp_path / "agent"
        enrolled = runner.invoke(
            cli,
            [
                "agent",
                "enroll",
                "--server",
                server.https_url,
                "--device-id",
                "plc-30",
                "--pin",
                root_pin(server),
                "--store",
                str(directory),
                "--json",
            ],
            env={"OTWARD_ENROLL_TOKEN": token},
        )
        assert enrolled.exit_code == 0, enrolled.output
        store = AgentStore(directory)
        state = store.load()
        assert state.ca_label is None
        assert state.certificate.issuer == owner_ca.subject
        assert list(state.chain) == [owner_ca]  # chain.pem: what a TLS client presents
        assert x509.load_pem_x509_certificates(store.chain_path.read_bytes()) == [state.certificate, owner_ca]
        # the trust anchors are still only what the pin vouched for: the owner's CA is no anchor
        assert owner_ca not in store.load_ca()

        renewed = runner.invoke(cli, ["agent", "renew", "--store", str(directory), "--json"])
        assert renewed.exit_code == 0, renewed.output
        attested = runner.invoke(cli, ["agent", "attest", "--store", str(directory), "--json"])
        assert attested.exit_code == 0, attested.output
        assert json.loads(attested.output)["serial"] == json.loads(renewed.output)["serial"]
        assert registry(server, "plc-30")["owner"] == "line-2"
    finally:
        stop_server(server)


def test_an_agent_enrolls_renews_and_attests_with_an_ed25519_installation(tmp_path):
    """cryptography's Web PKI verifier refuses Ed25519 CAs; the agent checks its server and what it
    was issued with otward.core.chain, so an installation made with --key-type ed25519 works."""
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize
    from tests.conftest import free_port

    data = tmp_path / "served"
    initialize(
        data, key_type=KeyType.ED25519, organization="ACME", public_url=f"http://127.0.0.1:{free_port()}"
    )
    server = start_server(data)
    try:
        pki = Pki.open(load_settings(server.data_dir))
        try:
            pki.owners.create(OWNER)
        finally:
            pki.close()
        store = AgentStore(tmp_path / "agent")
        with Agent.enroll(
            store,
            server=server.https_url,
            token=enrollment_token(server),
            device_id="ed-1",
            pin=root_pin(server),
        ) as agent:
            assert agent.attest().result == "passed"
            renewed = agent.renew()
            assert agent.attest().serial == f"{renewed.certificate.serial_number:x}"
    finally:
        stop_server(server)
