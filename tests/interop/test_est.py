"""EST (RFC 7030 / RFC 8951) against a real ``otward serve``, driven only by openssl and curl.

The device side is plain ``openssl req`` + ``curl``, as a field integrator would do it by hand;
every answer is checked with ``openssl``. These tests cause fewer authentication failures
than the per-source limit, which the in-process tests check.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import RunningServer, build_csr, est_refusal, make_key, with_change_subject_name
from tests.interop.helpers import (
    est_certificates,
    est_csr,
    est_curl,
    est_enroll_args,
    otward_cli,
    run,
    write,
)

pytestmark = [pytest.mark.interop, pytest.mark.integration]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _owner(server: RunningServer, *options: str) -> str:
    name = _name("plant")
    otward_cli(server.data_dir, "owner", "create", name, *options)
    return name


def _token(server: RunningServer, owner: str, *options: str) -> str:
    out = otward_cli(server.data_dir, "token", "create", "--owner", owner, "--json", *options).stdout
    return str(json.loads(out)["token"])


def _verify(server: RunningServer, cert: Path) -> None:
    issuing = server.data_dir / "issuing-chain.pem"
    if not issuing.exists():
        run(
            [
                "curl",
                "-sS",
                "--cacert",
                server.root_pem,
                "-o",
                issuing,
                f"{server.https_url}/api/v1/cas/issuing/chain",
            ]
        )
    out = run(
        [
            "openssl",
            "verify",
            "-CAfile",
            server.root_pem,
            "-untrusted",
            issuing,
            "-purpose",
            "sslclient",
            cert,
        ]
    )
    assert f"{cert}: OK" in out.stdout


def _text(cert: Path) -> str:
    return run(["openssl", "x509", "-in", cert, "-noout", "-text"]).stdout


def test_cacerts_is_the_issuing_chain_as_pkcs7(interop_server, tmp_path):
    status, content_type = est_curl(interop_server, "/.well-known/est/cacerts", tmp_path / "ca.b64")
    assert status == 200
    assert content_type.startswith("application/pkcs7-mime")
    pem = est_certificates(tmp_path / "ca.b64", tmp_path / "ca.pem")
    assert pem.count("BEGIN CERTIFICATE") == 2
    assert "CN=ACME Chemicals issuing CA" in pem.replace(" = ", "=")
    # the same chain per CA label
    status, _ = est_curl(interop_server, "/.well-known/est/issuing/cacerts", tmp_path / "ca2.b64")
    assert status == 200
    assert est_certificates(tmp_path / "ca2.b64", tmp_path / "ca2.pem") == pem


def test_enroll_with_token_then_reenroll_with_the_certificate(interop_server, tmp_path):
    owner = _owner(interop_server)
    device = _name("plc")
    token = _token(interop_server, owner, "--device-id-pattern", "plc-*")
    key, csr = est_csr(tmp_path, "first", device)

    status, content_type = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "first.p7.b64",
        *est_enroll_args(csr, "-u", f"dev:{token}"),
    )
    assert status == 200, (tmp_path / "first.p7.b64").read_text()
    assert content_type.replace(" ", "") == "application/pkcs7-mime;smime-type=certs-only"
    assert est_certificates(tmp_path / "first.p7.b64", tmp_path / "first.pem").count("BEGIN CERTIFICATE") == 1
    _verify(interop_server, tmp_path / "first.pem")
    text = _text(tmp_path / "first.pem")
    assert f"Subject: CN={device}" in text.replace(" = ", "=")
    assert f"URI:urn:otward:device:{owner}:{device}" in text
    # the private key openssl made is the one certified
    certified = run(["openssl", "x509", "-in", tmp_path / "first.pem", "-noout", "-pubkey"]).stdout
    assert certified == run(["openssl", "pkey", "-in", key, "-pubout"]).stdout

    # the same request again (a client that lost the answer) gets the same certificate, and the
    # token was single use: another key is refused
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "again.p7.b64",
        *est_enroll_args(csr, "-u", f"dev:{token}"),
    )
    assert status == 200
    assert (
        est_certificates(tmp_path / "again.p7.b64", tmp_path / "again.pem")
        == (tmp_path / "first.pem").read_text()
    )
    _, another = est_csr(tmp_path, "another", device)
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "another.out",
        *est_enroll_args(another, "-u", f"dev:{token}"),
    )
    assert status == 401

    # re-enrollment: a new key, the same subject, the current certificate in the TLS handshake
    new_key, new_csr = est_csr(tmp_path, "second", device)
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simplereenroll",
        tmp_path / "second.p7.b64",
        "--cert",
        tmp_path / "first.pem",
        "--key",
        key,
        *est_enroll_args(new_csr),
    )
    assert status == 200, (tmp_path / "second.p7.b64").read_text()
    est_certificates(tmp_path / "second.p7.b64", tmp_path / "second.pem")
    _verify(interop_server, tmp_path / "second.pem")
    first_serial = run(["openssl", "x509", "-in", tmp_path / "first.pem", "-noout", "-serial"]).stdout
    second_serial = run(["openssl", "x509", "-in", tmp_path / "second.pem", "-noout", "-serial"]).stdout
    assert first_serial != second_serial
    assert (
        run(["openssl", "x509", "-in", tmp_path / "second.pem", "-noout", "-pubkey"]).stdout
        == run(["openssl", "pkey", "-in", new_key, "-pubout"]).stdout
    )

    # the registry knows the device, its owner, the token and both certificates
    shown = json.loads(otward_cli(interop_server.data_dir, "device", "show", device, "--json").stdout)
    assert shown["owner"] == owner
    assert shown["status"] == "active"
    assert shown["current_serial"] == second_serial.strip().split("=")[1].lower().lstrip("0")
    assert shown["enrollment_token"] == token.split("_")[1]
    assert len(shown["certificates"]) == 2

    # re-enrollment must keep the subject
    _, other_csr = est_csr(tmp_path, "other", _name("plc"))
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simplereenroll",
        tmp_path / "other.out",
        "--cert",
        tmp_path / "second.pem",
        "--key",
        new_key,
        *est_enroll_args(other_csr),
    )
    assert status == 403
    assert est_refusal((tmp_path / "other.out").read_text())[1] == "est-subject"

    # a disabled device cannot re-enroll; revoking it revokes its certificates for good
    otward_cli(interop_server.data_dir, "device", "disable", device)
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simplereenroll",
        tmp_path / "disabled.out",
        "--cert",
        tmp_path / "second.pem",
        "--key",
        new_key,
        *est_enroll_args(new_csr),
    )
    assert status == 403
    otward_cli(interop_server.data_dir, "device", "revoke", device)
    shown = json.loads(otward_cli(interop_server.data_dir, "device", "show", device, "--json").stdout)
    assert shown["status"] == "revoked"
    assert {c["status"] for c in shown["certificates"]} == {"revoked"}


def _san_of(cert: Path) -> set[str]:
    text = run(["openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName"]).stdout
    return {name.strip() for name in text.splitlines()[-1].split(",")}


def test_reenroll_keeps_subject_and_san_unless_change_subject_name_asks(interop_server, tmp_path):
    """RFC 7030 section 4.2.2 at the EST endpoint, with the current certificate in the TLS handshake."""
    owner = _owner(interop_server)
    device = _name("plc")
    uri = f"URI:urn:otward:device:{owner}:{device}"
    key, csr = est_csr(tmp_path, "first", device, f"DNS:{device}.line2.example")
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "first.b64",
        *est_enroll_args(csr, "-u", f"dev:{_token(interop_server, owner)}"),
    )
    assert status == 200
    est_certificates(tmp_path / "first.b64", tmp_path / "first.pem")
    names = {f"DNS:{device}.line2.example", uri}
    assert _san_of(tmp_path / "first.pem") == names

    def reenroll(current: str, current_key: Path, body: Path, out: str) -> int:
        status, _ = est_curl(
            interop_server,
            "/.well-known/est/simplereenroll",
            tmp_path / out,
            "--cert",
            tmp_path / current,
            "--key",
            current_key,
            *est_enroll_args(body),
        )
        return status

    # the certificate's own subject and SAN, otward's device URI included (was 403 san-type)
    same_key, same = est_csr(tmp_path, "same", device, f"DNS:{device}.line2.example,{uri}")
    assert reenroll("first.pem", key, same, "same.b64") == 200, (tmp_path / "same.b64").read_text()
    est_certificates(tmp_path / "same.b64", tmp_path / "same.pem")
    assert _san_of(tmp_path / "same.pem") == names
    # no SAN: the SAN of the certificate being renewed
    bare_key, bare = est_csr(tmp_path, "bare", device)
    assert reenroll("same.pem", same_key, bare, "bare.b64") == 200
    est_certificates(tmp_path / "bare.b64", tmp_path / "bare.pem")
    assert _san_of(tmp_path / "bare.pem") == names
    # another SAN: refused (was accepted silently) ...
    _, moved = est_csr(tmp_path, "moved", device, f"DNS:{device}.line3.example")
    assert reenroll("bare.pem", bare_key, moved, "moved.out") == 403
    assert "ChangeSubjectName" in (tmp_path / "moved.out").read_text()
    # ... unless the CSR carries ChangeSubjectName (RFC 6402), which the device profile allows for DNS
    new_key = make_key()
    asked = with_change_subject_name(
        build_csr(new_key, cn=device, dns=(f"{device}.line3.example",)),
        new_key,
        subject_alt=(f"{device}.line3.example",),
    )
    write(tmp_path / "asked.b64", base64.b64encode(asked))
    assert reenroll("bare.pem", bare_key, tmp_path / "asked.b64", "asked.out.b64") == 200
    est_certificates(tmp_path / "asked.out.b64", tmp_path / "asked.pem")
    assert _san_of(tmp_path / "asked.pem") == {f"DNS:{device}.line3.example", uri}


def test_token_pattern_and_missing_credentials(interop_server, tmp_path):
    owner = _owner(interop_server)
    token = _token(interop_server, owner, "--device-id-pattern", "sensor-*", "--uses", "3")
    _, csr = est_csr(tmp_path, "plc", _name("plc"))
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "pattern.out",
        *est_enroll_args(csr, "-H", f"Authorization: Bearer {token}"),
    )
    assert status == 403
    assert est_refusal((tmp_path / "pattern.out").read_text())[1] == "enroll-token-pattern"

    proc = run(
        [
            "curl",
            "-sS",
            "-i",
            "--cacert",
            interop_server.root_pem,
            *est_enroll_args(csr),
            f"{interop_server.https_url}/.well-known/est/simpleenroll",
        ]
    )
    assert proc.stdout.startswith("HTTP/1.1 401")
    assert '\nWWW-Authenticate: Basic realm="otward-est"' in proc.stdout

    # Bearer works as well as Basic, and the token's remaining uses still enroll
    _, good = est_csr(tmp_path, "sensor", _name("sensor"))
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/simpleenroll",
        tmp_path / "s.b64",
        *est_enroll_args(good, "-H", f"Authorization: Bearer {token}"),
    )
    assert status == 200
    # a reenroll without a client certificate is refused
    status, _ = est_curl(
        interop_server, "/.well-known/est/simplereenroll", tmp_path / "nocert.out", *est_enroll_args(good)
    )
    assert status == 401


def test_serverkeygen_only_for_owners_that_allow_it(interop_server, tmp_path):
    refusing = _owner(interop_server)
    token = _token(interop_server, refusing)
    _, csr = est_csr(tmp_path, "k1", _name("meter"))
    status, _ = est_curl(
        interop_server,
        "/.well-known/est/serverkeygen",
        tmp_path / "no.out",
        *est_enroll_args(csr, "-u", f"x:{token}"),
    )
    assert status == 403

    allowing = _owner(interop_server, "--allow-server-keygen")
    token = _token(interop_server, allowing)
    device = _name("meter")
    _, csr = est_csr(tmp_path, "k2", device)
    status, content_type = est_curl(
        interop_server,
        "/.well-known/est/serverkeygen",
        tmp_path / "multipart",
        *est_enroll_args(csr, "-u", f"x:{token}"),
    )
    assert status == 200
    assert content_type.startswith("multipart/mixed; boundary=")
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + (tmp_path / "multipart").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    parts = {part.get_content_type(): part.get_payload(decode=False) for part in message.iter_parts()}
    assert set(parts) == {"application/pkcs8", "application/pkcs7-mime"}
    key_b64 = write(tmp_path / "key.b64", parts["application/pkcs8"])
    run(["openssl", "base64", "-d", "-in", key_b64, "-out", tmp_path / "key.der"])
    key_pub = run(["openssl", "pkey", "-inform", "DER", "-in", tmp_path / "key.der", "-pubout"]).stdout
    p7 = write(tmp_path / "cert.b64", parts["application/pkcs7-mime"])
    est_certificates(p7, tmp_path / "cert.pem")
    assert run(["openssl", "x509", "-in", tmp_path / "cert.pem", "-noout", "-pubkey"]).stdout == key_pub
    assert f"CN={device}" in _text(tmp_path / "cert.pem").replace(" = ", "=")
    _verify(interop_server, tmp_path / "cert.pem")


def test_csrattrs_asks_for_ecdsa_with_sha256_on_p256(interop_server, tmp_path):
    status, content_type = est_curl(interop_server, "/.well-known/est/csrattrs", tmp_path / "attrs.b64")
    assert status == 200
    assert content_type == "application/csrattrs"
    run(["openssl", "base64", "-d", "-in", tmp_path / "attrs.b64", "-out", tmp_path / "attrs.der"])
    parsed = run(["openssl", "asn1parse", "-inform", "DER", "-in", tmp_path / "attrs.der"]).stdout
    assert "ecdsa-with-SHA256" in parsed
    assert "id-ecPublicKey" in parsed
    assert "prime256v1" in parsed


def test_ca_pin_is_the_sha256_of_the_public_key_as_openssl_computes_it(interop_server, tmp_path):
    pin = otward_cli(interop_server.data_dir, "ca", "pin", "root").stdout.strip()
    spki = tmp_path / "root.spki"
    pub = run(["openssl", "x509", "-in", interop_server.root_pem, "-noout", "-pubkey"]).stdout
    run(
        [
            "openssl",
            "pkey",
            "-pubin",
            "-in",
            write(tmp_path / "root.pub", pub),
            "-outform",
            "DER",
            "-out",
            spki,
        ]
    )
    digest = tmp_path / "root.sha256"
    run(["openssl", "dgst", "-sha256", "-binary", "-out", digest, spki])
    assert pin == "sha256/" + run(["openssl", "base64", "-A", "-in", digest]).stdout.strip()


def test_preprovisioned_devices_are_pkcs12_files_openssl_opens(interop_server, tmp_path):
    owner = _owner(interop_server)
    out = tmp_path / "lot"
    otward_cli(
        interop_server.data_dir, "device", "preprovision", "--owner", owner, "--count", "3", "--out", str(out)
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["owner"] == owner
    assert [d["device_id"] for d in manifest["devices"]] == [f"{owner}-{n:06d}" for n in (1, 2, 3)]
    assert (out / "manifest.csv").read_text().splitlines()[0].startswith("device_id,file,serial")
    assert oct((out / "manifest.json").stat().st_mode & 0o777) == "0o600"
    for entry in manifest["devices"]:
        p12 = out / entry["file"]
        assert oct(p12.stat().st_mode & 0o777) == "0o600"
        password = f"pass:{entry['password']}"
        cert = tmp_path / f"{entry['device_id']}.pem"
        run(["openssl", "pkcs12", "-in", p12, "-passin", password, "-clcerts", "-nokeys", "-out", cert])
        key = run(["openssl", "pkcs12", "-in", p12, "-passin", password, "-nocerts", "-nodes"]).stdout
        assert "PRIVATE KEY" in key
        info = run(["openssl", "pkcs12", "-in", p12, "-passin", password, "-info", "-noout"]).stderr
        assert "PBES2" in info
        assert "AES-256-CBC" in info
        assert "sha256" in info.lower()
        assert (
            run(["openssl", "pkcs12", "-in", p12, "-passin", "pass:wrong", "-noout"], check=False).returncode
            != 0
        )
        _verify(interop_server, cert)
        assert f"URI:urn:otward:device:{owner}:{entry['device_id']}" in _text(cert)
        shown = json.loads(
            otward_cli(interop_server.data_dir, "device", "show", entry["device_id"], "--json").stdout
        )
        assert shown["owner"] == owner
        assert shown["current_serial"] == entry["serial"]
