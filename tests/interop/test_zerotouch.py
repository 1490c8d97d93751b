"""Zero-touch onboarding against a real ``otward serve``: the device side is curl and openssl with a
factory certificate (IDevID) made by a test manufacturer CA, and Python's ``ssl`` where the
request must be bound to a TLS 1.2 session (tls-unique), which curl cannot do (issue 19)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import AttributeOID, NameOID

from tests.conftest import RunningServer, est_refusal, start_server, stop_server, write_key
from tests.factory import Manufacturer
from tests.interop.helpers import need, otward_cli, run

pytestmark = [pytest.mark.interop, pytest.mark.integration]

OWNER = "plant-z"
TRUST_WAIT_SECONDS = 90  # the service refreshes its client CAs once a minute


@pytest.fixture(scope="module")
def acme() -> Manufacturer:
    return Manufacturer("acme-sensors")


@pytest.fixture(scope="module")
def zt_server(tmp_path_factory: pytest.TempPathFactory, acme: Manufacturer) -> Iterator[RunningServer]:
    """A server that was running before the manufacturer was added: the first handshake that passes
    proves the running service picked up the new manufacturer's CA."""
    directory = tmp_path_factory.mktemp("zerotouch")
    server = start_server(directory / "data")
    try:
        otward_cli(server.data_dir, "owner", "create", OWNER)
        otward_cli(server.data_dir, "manufacturer", "add", "acme-sensors", "--ca", str(acme.write(directory)))
        _wait_for_trust(server, acme, directory)
        yield server
    finally:
        stop_server(server)


def _files(directory: Path, stem: str, key, certificate: x509.Certificate) -> tuple[Path, Path]:
    cert = directory / f"{stem}.pem"
    cert.write_bytes(certificate.public_bytes(Encoding.PEM))
    return cert, write_key(directory / f"{stem}.key", key)


def _curl(
    server: RunningServer, path: str, out: Path, *args: str | Path, check: bool = True
) -> tuple[int, str]:
    proc = run(
        [
            need("curl"),
            "-sS",
            "--cacert",
            server.root_pem,
            "-o",
            out,
            "-w",
            "%{http_code}",
            *args,
            f"{server.https_url}{path}",
        ],
        check=check,
    )
    return int(proc.stdout or 0), proc.stderr


def _wait_for_trust(server: RunningServer, acme: Manufacturer, directory: Path) -> None:
    """Until a handshake with an IDevID passes (an unclaimed one: the answer is a 403 from the app)."""
    key, idevid = acme.idevid("PROBE-1")
    cert, key_file = _files(directory, "probe", key, idevid)
    csr = _openssl_csr(directory, "probe", key_file, "probe-1")
    deadline = time.monotonic() + TRUST_WAIT_SECONDS
    while time.monotonic() < deadline:
        status, _ = _curl(
            server,
            "/.well-known/est/simpleenroll",
            directory / "probe.out",
            *_enroll(csr, cert, key_file),
            check=False,
        )
        if status:
            assert status == 403, (directory / "probe.out").read_text()
            return
        time.sleep(2)
    pytest.fail("the running service did not trust the new manufacturer's CA in time")


def _openssl_csr(directory: Path, stem: str, key: Path, cn: str) -> Path:
    """``openssl req`` with the given key (the IDevID's, as a chip that reuses it would)."""
    der, b64 = directory / f"{stem}.csr.der", directory / f"{stem}.csr.b64"
    run(["openssl", "req", "-new", "-key", key, "-subj", f"/CN={cn}", "-outform", "DER", "-out", der])
    run(["openssl", "base64", "-in", der, "-out", b64])
    return b64


def _enroll(csr: Path, cert: Path, key: Path) -> list[str | Path]:
    return [
        "--cert",
        cert,
        "--key",
        key,
        "--data-binary",
        f"@{csr}",
        "-H",
        "Content-Type: application/pkcs10",
    ]


def _issued_pem(p7_b64: Path, out: Path) -> Path:
    der = p7_b64.with_suffix(".p7")
    run(["openssl", "base64", "-d", "-in", p7_b64, "-out", der])
    run(["openssl", "pkcs7", "-inform", "DER", "-in", der, "-print_certs", "-out", out])
    return out


def _claim(server: RunningServer, *serials: str, extra: tuple[str, ...] = ()) -> None:
    args = [a for s in serials for a in ("--serial", s)]
    otward_cli(
        server.data_dir, "device", "claim", "--owner", OWNER, "--manufacturer", "acme-sensors", *args, *extra
    )


def _refusals(server: RunningServer) -> list[dict]:
    out = otward_cli(
        server.data_dir, "audit", "list", "--type", "enroll.refused", "--json", "--limit", "1000"
    ).stdout
    return [e for e in json.loads(out)["items"] if e.get("details", {}).get("method") == "idevid"]


def test_curl_enrolls_a_claimed_unit_with_its_idevid_and_renews_with_the_ldevid(zt_server, acme, tmp_path):
    key, idevid = acme.idevid("SN-A1")
    cert, key_file = _files(tmp_path, "idevid", key, idevid)
    _claim(zt_server, "SN-A1", extra=("--device-id", "tank-a1"))
    csr = _openssl_csr(tmp_path, "req", key_file, "tank-a1")
    status, _ = _curl(
        zt_server, "/.well-known/est/simpleenroll", tmp_path / "ldevid.b64", *_enroll(csr, cert, key_file)
    )
    assert status == 200, (tmp_path / "ldevid.b64").read_text()
    ldevid = _issued_pem(tmp_path / "ldevid.b64", tmp_path / "ldevid.pem")
    chain = tmp_path / "issuing.pem"
    chain.write_text(otward_cli(zt_server.data_dir, "ca", "export", "issuing").stdout)
    verified = run(
        [
            "openssl",
            "verify",
            "-CAfile",
            zt_server.root_pem,
            "-untrusted",
            chain,
            "-purpose",
            "sslclient",
            ldevid,
        ]
    )
    assert f"{ldevid}: OK" in verified.stdout
    text = run(["openssl", "x509", "-in", ldevid, "-noout", "-subject", "-ext", "subjectAltName"]).stdout
    assert "CN=tank-a1" in text.replace(" ", "")
    assert "urn:otward:device:plant-z:tank-a1" in text
    claims = json.loads(otward_cli(zt_server.data_dir, "device", "claims", "--owner", OWNER, "--json").stdout)
    claim = next(c for c in claims if c["serial"] == "SN-A1")
    assert claim["idevid_fingerprint"] == idevid.fingerprint(hashes.SHA256()).hex()
    assert claim["enrolled_device_id"] == "tank-a1"
    # renewal: the LDevID in the handshake, as for any device
    status, _ = _curl(
        zt_server,
        "/.well-known/est/simplereenroll",
        tmp_path / "renewed.b64",
        *_enroll(csr, ldevid, key_file),
    )
    assert status == 200, (tmp_path / "renewed.b64").read_text()


def test_curl_enrolls_a_unit_named_by_hardware_module_name(zt_server, acme, tmp_path):
    key, idevid = acme.idevid(None, hardware_serial=b"HW-77")
    cert, key_file = _files(tmp_path, "idevid", key, idevid)
    _claim(zt_server, "HW-77")
    csr = _openssl_csr(tmp_path, "req", key_file, "sensor-hw-77")
    status, _ = _curl(
        zt_server, "/.well-known/est/simpleenroll", tmp_path / "out", *_enroll(csr, cert, key_file)
    )
    assert status == 200, (tmp_path / "out").read_text()


@pytest.mark.parametrize("case", ["unclaimed", "new-key-unbound", "revoked", "reenroll-with-idevid"])
def test_curl_refusals_are_answered_and_audited(zt_server, acme, tmp_path, case):
    serial = f"SN-{case}"
    key, idevid = acme.idevid(serial)
    cert, key_file = _files(tmp_path, "idevid", key, idevid)
    csr = _openssl_csr(tmp_path, "req", key_file, f"dev-{case}")
    path = "/.well-known/est/simpleenroll"
    expected = {
        "unclaimed": (403, "idevid-unclaimed"),
        "new-key-unbound": (401, "idevid-channel-binding"),
        "revoked": (401, "idevid-revoked"),
        "reenroll-with-idevid": (401, "est-client-certificate"),
    }[case]
    if case != "unclaimed":
        _claim(zt_server, serial)
    if case == "new-key-unbound":
        other = write_key(tmp_path / "other.key", ec.generate_private_key(ec.SECP256R1()))
        csr = _openssl_csr(tmp_path, "other", other, f"dev-{case}")
    if case == "revoked":
        crl = tmp_path / "acme.crl"
        crl.write_bytes(acme.crl((idevid,)))
        otward_cli(zt_server.data_dir, "manufacturer", "crl", "acme-sensors", "--crl", str(crl))
    if case == "reenroll-with-idevid":
        path = "/.well-known/est/simplereenroll"
    status, _ = _curl(zt_server, path, tmp_path / "out", *_enroll(csr, cert, key_file))
    body = (tmp_path / "out").read_text()
    assert (status, est_refusal(body)[1]) == expected, body
    if case != "reenroll-with-idevid":
        assert any(
            e["details"].get("idevid_serial") == f"{idevid.serial_number:x}"
            and e["details"]["rule"] == expected[1]
            for e in _refusals(zt_server)
        )


def test_an_unregistered_manufacturers_idevid_fails_the_handshake(zt_server, tmp_path):
    stranger = Manufacturer("unknown-chips")
    key, idevid = stranger.idevid("SN-1")
    cert, key_file = _files(tmp_path, "idevid", key, idevid)
    csr = _openssl_csr(tmp_path, "req", key_file, "dev-x")
    # TLS 1.2, where the refused certificate ends the handshake itself (with TLS 1.3 the client learns
    # of it only after its Finished: curl reports an empty reply); a registered manufacturer's IDevID
    # passes a TLS 1.2 handshake (test_a_new_key_bound_to_the_tls_session...)
    status, stderr = _curl(
        zt_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "out",
        "--tls-max",
        "1.2",
        *_enroll(csr, cert, key_file),
        check=False,
    )
    assert status == 0, stderr  # no HTTP answer
    assert "curl: (35)" in stderr, stderr  # the TLS handshake failed (the server closes the connection)


def _tls12_post(
    server: RunningServer, cert: Path, key: Path, csr_for: object, *, send: bool = True
) -> tuple[int, str]:
    """One TLS 1.2 connection with the IDevID; ``csr_for(tls_unique)`` makes the body's CSR (DER)."""
    context = ssl.create_default_context(cafile=str(server.root_pem))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    host, port = server.https_url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        connection.connect()
        unique = connection.sock.get_channel_binding("tls-unique")  # type: ignore[union-attr]
        body = base64.b64encode(csr_for(unique))  # type: ignore[operator]
        if not send:
            return 0, ""
        connection.request(
            "POST", "/.well-known/est/simpleenroll", body=body, headers={"Content-Type": "application/pkcs10"}
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_a_new_key_bound_to_the_tls_session_enrolls_and_its_replay_is_refused(zt_server, acme, tmp_path):
    key, idevid = acme.idevid("SN-B1")
    cert, key_file = _files(tmp_path, "idevid", key, idevid)
    _claim(zt_server, "SN-B1")
    new_key = ec.generate_private_key(ec.SECP256R1())
    made: list[bytes] = []

    def bound_csr(unique: bytes) -> bytes:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-b1")]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, base64.b64encode(unique))
            .sign(new_key, hashes.SHA256())
        )
        made.append(csr.public_bytes(Encoding.DER))
        return made[-1]

    # a request made for one TLS session (never sent there) and replayed over another is refused
    _tls12_post(zt_server, cert, key_file, bound_csr, send=False)
    status, body = _tls12_post(zt_server, cert, key_file, lambda _unique: made[0])
    assert (status, est_refusal(body)[1]) == (401, "idevid-channel-binding"), body
    # made for the session it is sent over, it enrolls
    status, body = _tls12_post(zt_server, cert, key_file, bound_csr)
    assert status == 200, body
    issued = pkcs7.load_der_pkcs7_certificates(base64.b64decode(body))[0]
    assert issued.public_key() == new_key.public_key()
