"""A real Mosquitto (Debian's ``/usr/sbin/mosquitto``) with the listener ``otward mqtt-config`` writes,
and paho-mqtt devices holding otward ``device`` certificates.

One broker serves the module. Every test uses its own devices, so the order does not matter; the
revocation test revokes a device nobody else uses. Nothing waits a fixed time: a message that must
not arrive is checked with a marker published after it (the broker delivers one client's messages
in order), and a reload is complete once Mosquitto logged it (it reloads in its single event loop).
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.services.bootstrap import initialize
from otward.services.channels import reload_mosquitto
from otward.services.pki import Pki
from tests.conftest import build_csr, free_port, make_key, write_key
from tests.interop.helpers import otward_cli
from tests.tls_policy import assert_tls_policy

pytestmark = pytest.mark.interop

MOSQUITTO = "/usr/sbin/mosquitto"
TIMEOUT = 10.0
NOT_AUTHORIZED = 0x87


@dataclass(frozen=True)
class Identity:
    name: str
    certificate: Path | None
    key: Path | None
    serial_number: int = 0


@dataclass
class Broker:
    data_dir: Path
    out: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def server_root(self) -> Path:
        return self.out / "server-root.pem"

    def reloads(self) -> int:
        return self.log.read_text(errors="replace").count("Reloading config.")

    def wait_for_reload(self, before: int) -> None:
        """Until Mosquitto logged the reload: it reloads inside its single event loop, so any
        connection or packet handled afterwards sees the new files."""
        deadline = time.monotonic() + TIMEOUT
        while self.reloads() <= before:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "Mosquitto did not reload"
            time.sleep(0.05)


def _mosquitto_binary() -> str:
    path = shutil.which("mosquitto") or (MOSQUITTO if Path(MOSQUITTO).exists() else None)
    if path is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto)")
    return path


def _issue_device(pki: Pki, directory: Path, device_id: str, *, owner: str, ca: str = "issuing") -> Identity:
    key = make_key()
    issued = pki.issuance.issue(build_csr(key, cn=device_id), profile="device", owner=owner, ca=ca)
    stem = f"{ca}-{owner}-{device_id}"
    cert_path = directory / f"{stem}.pem"
    cert_path.write_text(issued.pem + "".join(issued.chain_pem[:-1]))
    key_path = directory / f"{stem}.key"
    write_key(key_path, key)
    return Identity(device_id, cert_path, key_path, issued.certificate.serial_number)


@pytest.fixture(scope="module")
def mqtt_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, dict[str, Identity]]]:
    binary = _mosquitto_binary()
    root = tmp_path_factory.mktemp("mqtt")
    data_dir = root / "data"
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    pki = Pki.open(load_settings(data_dir))
    try:
        pki.owners.create("acme")
        devices = root / "devices"
        devices.mkdir()
        identities = {
            name: _issue_device(pki, devices, name, owner="acme")
            for name in ("plc-1", "plc-2", "plc-3", "plc-4", "plc-5", "plc-6")
        }
        # A CA under the same root that the broker was not told to trust, issuing a look-alike of plc-1.
        pki.authorities.create_subordinate(
            "plant-b", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
        )
        identities["impostor"] = _issue_device(pki, devices, "plc-1", owner="acme", ca="plant-b")
    finally:
        pki.close()

    out = root / "broker"
    port = free_port()
    otward_cli(data_dir, "mqtt-config", "--out", str(out), "--port", str(port), "--ca", "issuing")
    log = root / "mosquitto.log"
    main = root / "main.conf"
    # What a packaged /etc/mosquitto/mosquitto.conf provides; the otward file is included as is.
    # `user` keeps a root test run from dropping to the mosquitto user, which cannot read tmp files.
    main.write_text(
        f"user {pwd.getpwuid(os.getuid()).pw_name}\n"
        "persistence false\n"
        f"log_dest file {log}\n"
        "log_type all\n"
        f"include_dir {out}\n"
    )
    process = subprocess.Popen([binary, "-c", str(main)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    broker = Broker(data_dir, out, port, process, log)
    try:
        _wait_for_port(broker)
        yield broker, identities
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_for_port(broker: Broker) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            stderr = broker.process.stderr.read().decode() if broker.process.stderr else ""
            pytest.fail(f"mosquitto exited {broker.process.returncode}: {stderr}\n{broker.log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail("mosquitto did not listen within 10 s")


class Device:
    """A paho-mqtt client whose callbacks feed events and queues the test waits on."""

    def __init__(
        self, broker: Broker, identity: Identity, *, protocol: MQTTProtocolVersion = mqtt.MQTTv5
    ) -> None:
        self.broker = broker
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{identity.name}-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
        )
        context = ssl.create_default_context(cafile=str(broker.server_root))
        if identity.certificate is not None and identity.key is not None:
            context.load_cert_chain(identity.certificate, identity.key)
        self.client.tls_set_context(context)
        self.connected = threading.Event()
        self.ended = threading.Event()
        self.connack: ReasonCode | None = None
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._acks = threading.Condition()
        self._pubacks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        self.connack = reason_code
        if reason_code.is_failure:
            self.ended.set()
        else:
            self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        self.ended.set()

    def _on_connect_fail(self, client, userdata):  # type: ignore[no-untyped-def]
        self.ended.set()

    def _on_message(self, client, userdata, message):  # type: ignore[no-untyped-def]
        self.messages.put((message.topic, message.payload))

    def _on_publish(self, client, userdata, mid, reason_code, properties):  # type: ignore[no-untyped-def]
        with self._acks:
            self._pubacks[mid] = reason_code
            self._acks.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):  # type: ignore[no-untyped-def]
        with self._acks:
            self._subacks[mid] = list(reason_codes)
            self._acks.notify_all()

    def connect(self) -> bool:
        """True when the broker accepted the connection (CONNACK success), False when it refused."""
        try:
            self.client.connect("127.0.0.1", self.broker.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return False  # TLS 1.2 reports a refused client certificate inside the handshake
        self.client.loop_start()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.connected.wait(0.05):
                return True
            if self.ended.is_set():
                return False
        raise AssertionError("neither CONNACK nor disconnect within 10 s")

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.client.publish(topic, payload, qos=1)
        with self._acks:
            assert self._acks.wait_for(lambda: info.mid in self._pubacks, TIMEOUT), "no PUBACK"
            return self._pubacks[info.mid]

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        assert mid is not None
        with self._acks:
            assert self._acks.wait_for(lambda: mid in self._subacks, TIMEOUT), "no SUBACK"
            return self._subacks[mid]

    def receive_until(self, marker: bytes) -> list[tuple[str, bytes]]:
        """Every message up to and including the one whose payload is ``marker``."""
        received = []
        while True:
            item = self.messages.get(timeout=TIMEOUT)
            received.append(item)
            if item[1] == marker:
                return received

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(mqtt_setup) -> Iterator[Callable[..., Device]]:
    broker, identities = mqtt_setup
    opened: list[Device] = []

    def connect(name: str, *, protocol: MQTTProtocolVersion = mqtt.MQTTv5, expect: bool = True) -> Device:
        identity = identities[name] if name != "anonymous" else Identity("anonymous", None, None)
        device = Device(broker, identity, protocol=protocol)
        opened.append(device)
        assert device.connect() is expect, f"{name}: expected {'accepted' if expect else 'refused'}"
        return device

    yield connect
    for device in opened:
        device.close()


def _granted(codes: list[ReasonCode]) -> bool:
    return all(not c.is_failure for c in codes)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["mqtt-3.1.1", "mqtt-5"])
def test_enrolled_device_publishes_and_receives_on_its_own_topics(devices, protocol):
    plc = devices("plc-1", protocol=protocol)
    assert _granted(plc.subscribe("otward/acme/plc-1/#"))
    assert not plc.publish("otward/acme/plc-1/temperature", b"21.5").is_failure
    assert plc.receive_until(b"21.5") == [("otward/acme/plc-1/temperature", b"21.5")]


def test_generated_files(mqtt_setup):
    broker, _ = mqtt_setup
    conf = (broker.out / "mosquitto.conf").read_text()
    for line in (
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"listener {broker.port} 127.0.0.1",
    ):
        assert line in conf.splitlines()
    assert (broker.out / "broker.key").stat().st_mode & 0o777 == 0o600
    acl = (broker.out / "acl").read_text()
    assert "user plc-1\ntopic readwrite otward/acme/plc-1/#" in acl
    assert "pattern" not in acl


def test_tls_1_2_works_and_1_1_is_refused_by_the_broker(mqtt_setup):
    broker, identities = mqtt_setup
    identity = identities["plc-1"]
    context = ssl.create_default_context(cafile=str(broker.server_root))
    context.load_cert_chain(identity.certificate, identity.key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", broker.port), timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == "TLSv1.2"
            cipher = tls.cipher()
            assert cipher is not None
            assert "GCM" in cipher[0] or "CHACHA20" in cipher[0]
    openssl = shutil.which("openssl")
    if openssl is None:
        return
    # The client is told to allow TLS 1.1 (security level 0): the refusal comes from the broker.
    proc = subprocess.run(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{broker.port}",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-CAfile",
            str(broker.server_root),
            "-cert",
            str(identity.certificate),
            "-key",
            str(identity.key),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "alert protocol version" in proc.stdout + proc.stderr


def test_the_generated_listener_keeps_otwards_tls_policy(mqtt_setup):
    """tls_version and ciphers of the generated listener, as Mosquitto applies them (issue 13 item 6)."""
    broker, identities = mqtt_setup
    plc = identities["plc-2"]
    assert_tls_policy(broker.port, cafile=broker.server_root, cert=plc.certificate, key=plc.key)


def test_client_without_certificate_is_refused(devices):
    devices("anonymous", expect=False)


def test_device_of_a_ca_the_broker_does_not_trust_is_refused(devices):
    # Same root, same CN as plc-1, but issued by plant-b: the broker holds no CRL for plant-b, and
    # Mosquitto's CRL check fails closed ("unable to get certificate CRL").
    devices("impostor", expect=False)


def test_publish_to_another_devices_topic_is_not_delivered(devices):
    victim = devices("plc-2", protocol=mqtt.MQTTv311)
    assert _granted(victim.subscribe("otward/acme/plc-2/#"))
    # MQTT 3.1.1 has no way to say no: Mosquitto acknowledges and drops the message.
    attacker = devices("plc-3", protocol=mqtt.MQTTv311)
    attacker.publish("otward/acme/plc-2/setpoint", b"forged-311")
    # MQTT 5 says so in the PUBACK.
    attacker5 = devices("plc-3", protocol=mqtt.MQTTv5)
    assert attacker5.publish("otward/acme/plc-2/setpoint", b"forged-5").value == NOT_AUTHORIZED
    # Published after both forgeries were handled: nothing may arrive before it.
    victim.publish("otward/acme/plc-2/marker", b"marker-2")
    assert victim.receive_until(b"marker-2") == [("otward/acme/plc-2/marker", b"marker-2")]


def test_subscription_to_another_devices_topic_receives_nothing(devices):
    spy = devices("plc-4")
    codes = spy.subscribe("otward/acme/plc-5/#", "otward/acme/#", "otward/acme/plc-4/marker")
    # Mosquitto 2.0.11 grants such subscriptions (SUBACK 0x01) and filters at delivery;
    # either way no message of another device may reach the subscriber.
    assert all(c.value in (0x00, 0x01, 0x80, NOT_AUTHORIZED) for c in codes)
    other = devices("plc-5")
    assert not other.publish("otward/acme/plc-5/data", b"secret").is_failure
    assert not spy.publish("otward/acme/plc-4/marker", b"marker-4").is_failure
    received = spy.receive_until(b"marker-4")
    assert all(payload != b"secret" for _, payload in received)
    assert received[-1] == ("otward/acme/plc-4/marker", b"marker-4")


def test_revoked_device_is_refused_after_refresh_and_reload(mqtt_setup, devices):
    broker, identities = mqtt_setup
    identity = identities["plc-6"]
    online = devices("plc-6")  # connected before the revocation
    assert _granted(online.subscribe("otward/acme/plc-6/#"))
    assert not online.publish("otward/acme/plc-6/state", b"before").is_failure

    otward_cli(broker.data_dir, "cert", "revoke", f"{identity.serial_number:x}", "--reason", "keyCompromise")
    before = broker.reloads()
    result = otward_cli(
        broker.data_dir,
        "mqtt-config",
        "--refresh-crl",
        "--out",
        str(broker.out),
        "--reload-pid",
        str(broker.process.pid),
        "--json",
    )
    assert '"plc-6"' not in result.stdout  # gone from the ACL
    broker.wait_for_reload(before)

    pem = (broker.out / "crl.pem").read_bytes()
    crls = [
        x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + p)
        for p in pem.split(b"-----BEGIN X509 CRL-----")[1:]
    ]
    assert any(c.get_revoked_certificate_by_serial_number(identity.serial_number) for c in crls)
    # A new connection fails in the TLS handshake (alert "certificate revoked") ...
    devices("plc-6", expect=False)
    # ... and the open one lost its topics with the reloaded ACL.
    assert online.publish("otward/acme/plc-6/state", b"after").value == NOT_AUTHORIZED
    # Everyone else is unaffected.
    plc = devices("plc-1")
    assert not plc.publish("otward/acme/plc-1/state", b"still-here").is_failure


def test_device_enrolled_later_gets_its_topics_after_refresh_and_reload(mqtt_setup, devices, tmp_path):
    broker, identities = mqtt_setup
    pki = Pki.open(load_settings(broker.data_dir))
    try:
        identities["plc-7"] = _issue_device(pki, tmp_path, "plc-7", owner="acme")
    finally:
        pki.close()
    newcomer = devices("plc-7")  # its certificate is good, but the ACL does not know it yet
    assert newcomer.publish("otward/acme/plc-7/state", b"early").value == NOT_AUTHORIZED
    before = broker.reloads()
    otward_cli(broker.data_dir, "mqtt-config", "--refresh-crl", "--out", str(broker.out))
    reload_mosquitto(broker.process.pid)
    broker.wait_for_reload(before)
    assert _granted(newcomer.subscribe("otward/acme/plc-7/#"))
    assert not newcomer.publish("otward/acme/plc-7/state", b"late").is_failure
    assert newcomer.receive_until(b"late") == [("otward/acme/plc-7/state", b"late")]


def _tls_client(pki: Pki, directory: Path, cn: str) -> Identity:
    key = make_key()
    issued = pki.issuance.issue(build_csr(key, cn=cn), profile="tls-client")
    cert_path = directory / f"client-{cn}.pem"
    cert_path.write_text(issued.pem + "".join(issued.chain_pem[:-1]))
    return Identity(
        cn, cert_path, write_key(directory / f"client-{cn}.key", key), issued.certificate.serial_number
    )


def test_a_client_certificate_never_gets_a_devices_topics(mqtt_setup, devices, tmp_path):
    """The broker knows a client only by its CN (use_identity_as_username). An administrator cannot
    certify a client under a device's name; and a colliding certificate from before client names had
    namespaces makes otward leave the device id out of the ACL rather than share its topics
    (security review, issue #11 item 2)."""
    from sqlalchemy import delete

    from otward.adapters.db.schema import subject_names
    from otward.errors import PolicyViolationError

    broker, identities = mqtt_setup
    pki = Pki.open(load_settings(broker.data_dir))
    try:
        identities["plc-8"] = _issue_device(pki, tmp_path, "plc-8", owner="acme")
        with pytest.raises(PolicyViolationError, match="belongs to a device"):
            _tls_client(pki, tmp_path, "plc-8")
        # what an installation that issued both before the namespaces existed holds
        with pki.stores.database.transaction() as conn:
            conn.execute(delete(subject_names).where(subject_names.c.name == "plc-8"))
        identities["client-plc-8"] = _tls_client(pki, tmp_path, "plc-8")
    finally:
        pki.close()
    before = broker.reloads()
    result = otward_cli(broker.data_dir, "mqtt-config", "--refresh-crl", "--out", str(broker.out), "--json")
    reload_mosquitto(broker.process.pid)
    broker.wait_for_reload(before)
    assert "also the CN of a non-device client certificate" in (broker.out / "acl").read_text()
    assert '"plc-8"' not in result.stdout.split('"conflicts"')[0]  # not among the granted devices
    impostor = devices("client-plc-8")  # a valid certificate: the broker lets it in, but grants nothing
    assert impostor.publish("otward/acme/plc-8/state", b"forged").value == NOT_AUTHORIZED
    device = devices("plc-8")  # fail closed: the device is left out too until the collision ends
    assert device.publish("otward/acme/plc-8/state", b"mine").value == NOT_AUTHORIZED
