"""``otward agent enroll --idevid-*`` against a real ``otward serve``: the factory identity (IEEE 802.1AR
IDevID) is a key pair made on a SoftHSM2 token with its certificate beside it, as a chip vendor would
provision it; the TLS handshake is signed by that token key (OpenSSL's pkcs11 engine), and the LDevID
key is made on the same token and bound to the TLS session with tls-unique (issue 19)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pkcs11.constants import Attribute, CertificateType, ObjectClass
from typer.testing import CliRunner

from otward.agent.keys import Pkcs11KeyStore
from otward.cli.app import app
from otward.core.keys import spki_pin
from otward.services.bootstrap import initialize
from tests.conftest import SoftHsm, free_port, softhsm_token, start_server, stop_server
from tests.factory import Manufacturer
from tests.interop.helpers import otward_cli

pytestmark = pytest.mark.integration

ENGINE = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")
SERIAL = "SN-HSM-0001"


def _provision_chip(hsm: SoftHsm, manufacturer: Manufacturer) -> x509.Certificate:
    """What the factory does: a key pair on the chip and the IDevID for it, stored beside it."""
    store = Pkcs11KeyStore(hsm.module, hsm.label, hsm.pin)
    try:
        key = store.generate("idevid")
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "acme-sensors GmbH"),
                        x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
                    ]
                )
            )
            .issuer_name(manufacturer.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(manufacturer.key, hashes.SHA256())
        )
        store._open_session().create_object(
            {
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: "idevid",
                Attribute.SUBJECT: certificate.subject.public_bytes(),
                Attribute.VALUE: certificate.public_bytes(Encoding.DER),
            }
        )
    finally:
        store.close()
    return certificate


@pytest.fixture
def hsm(tmp_path: Path) -> Iterator[SoftHsm]:
    if not ENGINE.is_file():
        pytest.fail(
            f"OpenSSL's pkcs11 engine is required ({ENGINE}; Debian package libengine-pkcs11-openssl)"
        )
    with softhsm_token(tmp_path / "hsm", label="chip", pin="4321") as token:
        yield token


def test_the_agent_enrolls_with_the_idevid_in_its_token_and_makes_the_ldevid_key_there(hsm, tmp_path):
    manufacturer = Manufacturer("acme-sensors")
    idevid = _provision_chip(hsm, manufacturer)
    data = tmp_path / "data"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    otward_cli(data, "owner", "create", "plant-h")
    otward_cli(data, "manufacturer", "add", "acme-sensors", "--ca", str(manufacturer.write(tmp_path)))
    otward_cli(
        data, "device", "claim", "--owner", "plant-h", "--manufacturer", "acme-sensors", "--serial", SERIAL
    )
    server = start_server(data)  # started after the manufacturer was added: in its client CAs at once
    try:
        pin = spki_pin(x509.load_pem_x509_certificate(server.root_pem.read_bytes()).public_key())
        store = tmp_path / "agent"
        result = CliRunner().invoke(
            app,
            [
                "agent",
                "enroll",
                "--server",
                server.https_url,
                "--device-id",
                "sensor-hsm-1",
                "--pin",
                pin,
                "--store",
                str(store),
                "--idevid-pkcs11-module",
                str(hsm.module),
                "--idevid-token",
                hsm.label,
                "--idevid-key-label",
                "idevid",
                "--pkcs11-pin-file",
                str(hsm.pin_file),
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        enrolled = json.loads(result.output)
        assert enrolled["key_backend"] == "pkcs11"
        ldevid = x509.load_pem_x509_certificate(Path(enrolled["certificate"]).read_bytes())
        # the LDevID's key is a new key on the same token, not the IDevID's, and never left it
        session = hsm.session()
        # the IDevID's key is on the token only: nothing in the agent store is a key file
        assert not list(store.rglob("*.key"))
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=enrolled["key_label"])
        assert private[Attribute.SENSITIVE]
        assert not private[Attribute.EXTRACTABLE]
        assert ldevid.public_key() != idevid.public_key()
        claims = json.loads(otward_cli(data, "device", "claims", "--json").stdout)
        assert claims[0]["enrolled_device_id"] == "sensor-hsm-1"
        assert claims[0]["idevid_fingerprint"] == idevid.fingerprint(hashes.SHA256()).hex()
        events = json.loads(otward_cli(data, "audit", "list", "--type", "enroll.succeeded", "--json").stdout)
        assert any(e["details"].get("proof") == "tls-unique" for e in events["items"])
    finally:
        stop_server(server)
        shutil.rmtree(tmp_path / "agent", ignore_errors=True)
