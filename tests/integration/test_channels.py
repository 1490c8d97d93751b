"""The files otward writes for Mosquitto and OPC UA stacks, through the service on SQLite."""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import pytest
from cryptography import x509

from otward.adapters.files import write_atomic
from otward.core.keys import KeyType
from otward.core.mosquitto import MqttDevice
from otward.errors import ConfigError, InvalidRequestError, NotFoundError, PolicyViolationError
from otward.services.channels import Channels, reload_mosquitto
from tests.conftest import build_csr, make_key

pytestmark = pytest.mark.integration


def _device(pki, device_id: str, owner: str = "acme", ca: str = "issuing"):  # type: ignore[no-untyped-def]
    if pki.stores.owners.get_owner(owner) is None:
        pki.owners.create(owner)
    return pki.issuance.issue(build_csr(make_key(), cn=device_id), profile="device", owner=owner, ca=ca)


@pytest.fixture
def channels(sqlite_pki):
    return Channels.for_pki(sqlite_pki)


def test_mosquitto_files_broker_key_and_reuse(sqlite_pki, channels, tmp_path):
    _device(sqlite_pki, "plc-1")
    out = tmp_path / "mqtt"
    first = channels.write_mosquitto(out, port=8884)
    assert first.broker_reissued
    assert first.devices == (MqttDevice("acme", "plc-1"),)
    assert (out / "broker.key").stat().st_mode & 0o777 == 0o600
    assert (out / "ca.pem").stat().st_mode & 0o777 == 0o644
    broker = x509.load_pem_x509_certificates((out / "broker.pem").read_bytes())
    assert [c.subject.rfc4514_string() for c in broker][1:] == [
        "CN=ACME Chemicals issuing CA,O=ACME Chemicals"
    ]
    san = broker[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    # a second run keeps the broker's key and certificate; --renew replaces them
    again = channels.write_mosquitto(out, port=8884)
    assert (again.broker_serial, again.broker_reissued) == (first.broker_serial, False)
    renewed = channels.write_mosquitto(out, port=8884, renew=True)
    assert renewed.broker_reissued
    assert renewed.broker_serial != first.broker_serial
    # a new name for the broker is a new certificate too
    named = channels.write_mosquitto(out, port=8884, server_names=["mqtt.plant-a.example"])
    assert named.broker_reissued
    assert json.loads((out / "otward-mqtt.json").read_text())["server_names"] == ["mqtt.plant-a.example"]


def test_mosquitto_refusals_write_nothing(channels, tmp_path):
    out = tmp_path / "mqtt"
    with pytest.raises(InvalidRequestError, match="--server-name"):
        channels.write_mosquitto(out, host="0.0.0.0")  # noqa: S104
    with pytest.raises(NotFoundError, match="CA 'nowhere' not found"):
        channels.write_mosquitto(out, device_cas=["nowhere"])
    with pytest.raises(InvalidRequestError, match="white space"):
        channels.write_mosquitto(tmp_path / "with space")
    assert not out.exists()
    with pytest.raises(ConfigError, match="mqtt-config --out first"):
        channels.refresh_mosquitto(out)


def test_refresh_drops_revoked_devices_and_ids_claimed_twice(sqlite_pki, channels, tmp_path):
    keep = _device(sqlite_pki, "plc-1")
    gone = _device(sqlite_pki, "plc-2")
    _device(sqlite_pki, "shared", owner="acme")
    _device(sqlite_pki, "shared", owner="rival")
    out = tmp_path / "mqtt"
    channels.write_mosquitto(out)
    sqlite_pki.revocation.revoke(gone.certificate.serial_number, x509.ReasonFlags.key_compromise)
    result = channels.refresh_mosquitto(out)
    assert result.devices == (MqttDevice("acme", "plc-1"),)
    assert result.conflicts == ("shared",)
    acl = (out / "acl").read_text()
    assert "user plc-2" not in acl
    assert "user shared" not in acl
    crl_pem = (out / "crl.pem").read_bytes()
    issuing_crl = x509.load_pem_x509_crl(
        crl_pem.split(b"-----END X509 CRL-----")[0] + b"-----END X509 CRL-----\n"
    )
    assert issuing_crl.get_revoked_certificate_by_serial_number(gone.certificate.serial_number)
    assert issuing_crl.get_revoked_certificate_by_serial_number(keep.certificate.serial_number) is None


def test_revoked_device_ca_is_withdrawn_from_the_ca_file_and_acl(sqlite_pki, channels, tmp_path):
    sqlite_pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
    )
    _device(sqlite_pki, "plc-1")
    _device(sqlite_pki, "plc-a1", ca="plant-a")
    out = tmp_path / "mqtt"
    first = channels.write_mosquitto(out, device_cas=["issuing", "plant-a"])
    assert {d.device_id for d in first.devices} == {"plc-1", "plc-a1"}
    assert len(x509.load_pem_x509_certificates((out / "ca.pem").read_bytes())) == 3
    plant_a = sqlite_pki.authorities.get("plant-a").certificate
    sqlite_pki.revocation.revoke(plant_a.serial_number, x509.ReasonFlags.ca_compromise)
    result = channels.refresh_mosquitto(out)
    assert result.withdrawn_cas == ("plant-a",)
    assert {d.device_id for d in result.devices} == {"plc-1"}
    assert plant_a not in x509.load_pem_x509_certificates((out / "ca.pem").read_bytes())


def test_trust_list_defaults_to_every_sub_ca_and_refreshes_in_place(sqlite_pki, channels, tmp_path):
    sqlite_pki.authorities.create_subordinate(
        "plant-a", parent="root", key_type=KeyType.EC_P256, organization="ACME Chemicals"
    )
    out = tmp_path / "pki"
    result = channels.export_opcua_trust_list(out)
    assert (sorted(result.trusted), result.issuers) == (["issuing", "plant-a"], ("root",))
    (out / "trusted" / "certs" / "vendor-hmi.der").write_bytes(b"someone else's")
    # narrowing the list removes what otward wrote before, never other files
    narrowed = channels.export_opcua_trust_list(out, ["plant-a"])
    assert narrowed.trusted == ("plant-a",)
    assert not (out / "trusted" / "certs" / "issuing.der").exists()
    assert not (out / "trusted" / "crl" / "issuing.crl").exists()
    assert (out / "trusted" / "certs" / "vendor-hmi.der").exists()
    # a revoked CA cannot be trusted by name, and is skipped by default
    plant_a = sqlite_pki.authorities.get("plant-a").certificate
    sqlite_pki.revocation.revoke(plant_a.serial_number, x509.ReasonFlags.ca_compromise)
    with pytest.raises(PolicyViolationError, match="revoked"):
        channels.export_opcua_trust_list(out, ["plant-a"])
    default = channels.export_opcua_trust_list(out)
    assert (default.trusted, default.skipped) == (("issuing",), ("plant-a",))
    root_crl = x509.load_der_x509_crl((out / "issuers" / "crl" / "root.crl").read_bytes())
    assert root_crl.get_revoked_certificate_by_serial_number(plant_a.serial_number) is not None


def test_write_atomic_replaces_with_mode(tmp_path):
    path = tmp_path / "file"
    write_atomic(path, b"one", mode=0o600)
    write_atomic(path, b"two", mode=0o600)
    assert path.read_bytes() == b"two"
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_reload_of_a_missing_process_names_it():
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(NotFoundError, match=f"no process {proc.pid}"):
        reload_mosquitto(proc.pid)


def test_file_owner_gets_the_key_and_an_unknown_user_is_refused(channels, tmp_path):
    with pytest.raises(InvalidRequestError, match="user 'no-such-user-here' does not exist"):
        channels.write_mosquitto(tmp_path / "none", file_owner="no-such-user-here")
    assert not (tmp_path / "none").exists()
    if os.getuid() != 0:
        pytest.skip("changing file ownership needs root")
    nobody = pwd.getpwnam("nobody")
    out = tmp_path / "mqtt"
    channels.write_mosquitto(out, file_owner="nobody")
    key = (out / "broker.key").stat()
    assert (key.st_uid, key.st_mode & 0o777) == (nobody.pw_uid, 0o600)
    # a refresh keeps the owner
    channels.refresh_mosquitto(out)
    assert (out / "crl.pem").stat().st_uid == nobody.pw_uid


def test_service_keeps_the_mosquitto_files_current_and_signals_the_broker(tmp_path):
    """``[mqtt]`` in config.toml: the running service rewrites the CRLs after a revocation and
    sends SIGHUP to the process named by the pid file (here a stand-in that records it)."""
    import signal
    import sys
    import time

    from otward.config import load_settings
    from otward.services.bootstrap import initialize
    from otward.services.pki import Pki
    from tests.conftest import free_port, start_server, stop_server

    data, out = tmp_path / "data", tmp_path / "mqtt"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    pki = Pki.open(load_settings(data))
    try:
        pki.owners.create("acme")
        device = _device(pki, "plc-1")
        Channels.for_pki(pki).write_mosquitto(out)
    finally:
        pki.close()
    hups, pid_file = tmp_path / "hups", tmp_path / "mosquitto.pid"
    stand_in = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys, time\n"
            "signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], 'a').write('hup\\n'))\n"
            "open(sys.argv[2], 'w').write(str(os.getpid()))\n"
            "time.sleep(120)\n",
            str(hups),
            str(pid_file),
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the stand-in broker did not start"
            time.sleep(0.05)
        config = data / "config.toml"  # fill in the [mqtt] section that otward init wrote commented out
        settings = f'[mqtt]\nconfig_dir = "{out}"\nrefresh_seconds = 0.5\npid_file = "{pid_file}"\n'
        config.write_text(config.read_text().replace("[mqtt]\n", settings, 1))
        running = start_server(data)
        try:
            serial = format(device.certificate.serial_number, "x")
            with running.client() as client:
                answer = client.post(
                    f"/api/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"}
                )
                assert answer.status_code == 200, answer.text

            def revoked_in_crl_file() -> bool:
                text = (out / "crl.pem").read_text()
                crls = [
                    x509.load_pem_x509_crl(("-----BEGIN X509 CRL-----" + part).encode())
                    for part in text.split("-----BEGIN X509 CRL-----")[1:]
                ]
                return any(
                    crl.get_revoked_certificate_by_serial_number(device.certificate.serial_number)
                    for crl in crls
                )

            deadline = time.monotonic() + 60
            while not (revoked_in_crl_file() and hups.exists()):
                assert time.monotonic() < deadline, "the service did not refresh the MQTT files"
                time.sleep(0.2)
            assert "plc-1" not in (out / "acl").read_text()
        finally:
            stop_server(running)
    finally:
        stand_in.send_signal(signal.SIGTERM)
        stand_in.wait(timeout=10)
