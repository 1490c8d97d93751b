"""otward's certificates, CRLs, OCSP answers and TLS endpoint, checked with the system OpenSSL and curl.

Every test issues the certificates it looks at, against one shared ``otward serve``
(see ``conftest.py``), and compares CRL numbers only before and after its own change.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.type import char

from tests.conftest import RunningServer, build_csr, free_port, make_key, self_signed
from tests.interop.helpers import (
    PROFILE_CASES,
    Api,
    IssueCase,
    RetiredCa,
    SubCa,
    need,
    openssl_serial,
    pem_of,
    run,
    write,
)

pytestmark = [pytest.mark.interop, pytest.mark.integration]

MODBUS_ROLE_OID = "1.3.6.1.4.1.50316.802.1"

# How ``openssl crl -text`` prints RFC 5280 reason codes.
OPENSSL_REASON_TEXT = {
    "keyCompromise": "Key Compromise",
    "cACompromise": "CA Compromise",
    "affiliationChanged": "Affiliation Changed",
    "superseded": "Superseded",
    "cessationOfOperation": "Cessation Of Operation",
    "privilegeWithdrawn": "Privilege Withdrawn",
    "aACompromise": "AA Compromise",
}

_CRL_ENTRY = re.compile(
    r"Serial Number: (?P<serial>[0-9A-F]+)\n"
    r"\s+Revocation Date: [^\n]+\n"
    r"(?:\s+CRL entry extensions:\n\s+X509v3 CRL Reason Code: *\n\s+(?P<reason>[^\n]+)\n)?"
)


@pytest.fixture
def openssl() -> str:
    return need("openssl")


@pytest.fixture
def curl() -> str:
    return need("curl")


# --- small readers of openssl output ------------------------------------------------------------


def x509_text(openssl: str, path: Path) -> str:
    return run([openssl, "x509", "-in", path, "-noout", "-text"]).stdout


def key_id(label: str, text: str) -> str:
    """The key identifier printed under ``X509v3 <label>:`` (OpenSSL 3.0 prints no ``keyid:``)."""
    match = re.search(rf"X509v3 {label}: *\n\s*(?:keyid:)?([0-9A-F]{{2}}(?::[0-9A-F]{{2}})+)\n", text)
    assert match, f"no {label} in:\n{text}"
    return match.group(1)


def crl_entries(text: str) -> dict[str, str | None]:
    """Revoked serials (as OpenSSL prints them) mapped to the printed reason, or None without one."""
    return {m.group("serial"): m.group("reason") for m in _CRL_ENTRY.finditer(text)}


def crl_number(openssl: str, der: Path) -> int:
    out = run([openssl, "crl", "-inform", "DER", "-in", der, "-noout", "-crlnumber"]).stdout.strip()
    assert out.startswith("crlNumber=0x"), out
    return int(out.removeprefix("crlNumber=0x"), 16)


def crl_to_pem(openssl: str, der: Path) -> Path:
    pem = der.with_suffix(".crl.pem")
    run([openssl, "crl", "-inform", "DER", "-in", der, "-outform", "PEM", "-out", pem])
    return pem


def verify(openssl: str, root: Path, untrusted: Path, leaf: Path, *extra: str | Path) -> None:
    out = run([openssl, "verify", *extra, "-CAfile", root, "-untrusted", untrusted, leaf])
    assert out.stdout.strip() == f"{leaf}: OK", out.stdout + out.stderr


def ocsp_check(
    openssl: str, server: RunningServer, issuer: Path, *target: str | Path
) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp -issuer ISSUER TARGET -url .../ocsp -CAfile root.pem`` (not checked)."""
    return run(
        [
            openssl,
            "ocsp",
            "-issuer",
            issuer,
            *target,
            "-url",
            f"{server.http_url}/ocsp",
            "-CAfile",
            server.root_pem,
        ],
        check=False,
    )


def assert_ocsp_verified(out: subprocess.CompletedProcess[str]) -> None:
    """The response signature chained to the root, and OpenSSL had no complaint about the nonce."""
    both = out.stdout + out.stderr
    assert out.returncode == 0, both
    assert "Response verify OK" in out.stderr, both
    assert "WARNING" not in both, both  # e.g. "WARNING: no nonce in response"
    assert "Nonce Verify error" not in both, both


def throwaway_ca(directory: Path) -> tuple[Path, Path]:
    """A CA otward never heard of, with one leaf: (ca.pem, leaf.pem)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Somebody Else's CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return write(directory / "other-ca.pem", pem_of(ca)), write(directory / "stranger.pem", pem_of(leaf))


# --- certificates of every profile ---------------------------------------------------------------


@pytest.mark.parametrize("case", PROFILE_CASES, ids=lambda c: c.id)
def test_openssl_verifies_certificate_and_publication_links(
    case: IssueCase, openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issued = api.issue_case(case)
    root = interop_server.root_pem
    assert issued.chain[-1] == root.read_text(), "the chain must end in the root clients pin"
    leaf = issued.write(tmp_path)
    issuing = tmp_path / "leaf-issuer.pem"

    verify(openssl, root, issuing, leaf, "-x509_strict")
    for purpose in case.purposes:
        verify(openssl, root, issuing, leaf, "-purpose", purpose)
    for dns in case.dns:
        verify(openssl, root, issuing, leaf, "-verify_hostname", dns)
    for ip in case.ips:
        verify(openssl, root, issuing, leaf, "-verify_ip", ip)
    for email in case.emails:
        verify(openssl, root, issuing, leaf, "-verify_email", email)

    text = x509_text(openssl, leaf)
    http = interop_server.http_url
    assert re.search(
        r"X509v3 CRL Distribution Points: *\n\s+Full Name:\n\s+URI:"
        + re.escape(f"{http}/crl/issuing.crl")
        + "\n",
        text,
    ), text
    assert re.search(
        r"Authority Information Access: *\n\s+OCSP - URI:" + re.escape(f"{http}/ocsp") + "\n", text
    )
    assert f"CA Issuers - URI:{http}/ca/issuing.crt\n" in text
    assert run([openssl, "x509", "-in", leaf, "-noout", "-ocsp_uri"]).stdout.strip() == f"{http}/ocsp"
    subject_key_id = key_id("Subject Key Identifier", text)
    authority_key_id = key_id("Authority Key Identifier", text)
    assert authority_key_id == key_id("Subject Key Identifier", x509_text(openssl, issuing))
    assert subject_key_id != authority_key_id
    if case.profile == "device":
        assert f"URI:urn:otward:device:{case.owner}:{case.cn}" in text


def test_openssl_and_curl_follow_the_aia_and_cdp_links(
    openssl: str, curl: str, api: Api, tmp_path: Path
) -> None:
    issued = api.issue("tls-server", cn="hmi-3.plant.example", dns=("hmi-3.plant.example",))
    leaf = issued.write(tmp_path)
    text = x509_text(openssl, leaf)
    ca_issuers = re.search(r"CA Issuers - URI:(\S+)\n", text)
    crl_url = re.search(r"Full Name:\n\s+URI:(\S+)\n", text)
    assert ca_issuers, text
    assert crl_url, text

    issuer_der = tmp_path / "issuer.der"
    run([curl, "-sS", "--fail", "-o", issuer_der, ca_issuers.group(1)])
    fingerprint = [openssl, "x509", "-noout", "-fingerprint", "-sha256"]
    assert (
        run([*fingerprint, "-inform", "DER", "-in", issuer_der]).stdout
        == run([*fingerprint, "-in", tmp_path / "leaf-issuer.pem"]).stdout
    )

    crl_der = tmp_path / "issuing.crl"
    run([curl, "-sS", "--fail", "-o", crl_der, crl_url.group(1)])
    chain = write(tmp_path / "chain.pem", "".join(issued.chain))
    out = run([openssl, "crl", "-inform", "DER", "-in", crl_der, "-CAfile", chain, "-noout"])
    assert "verify OK" in out.stderr, out.stderr


# --- the Modbus/TCP Security role extension ------------------------------------------------------


@pytest.mark.parametrize("role", ["operator", "Engineer/Line-2"])
def test_modbus_role_extension_decodes_to_utf8string(
    role: str, openssl: str, api: Api, tmp_path: Path
) -> None:
    issued = api.issue("modbus-role", cn="hmi-1", role=role)
    der = write(tmp_path / "leaf.der", issued.certificate.public_bytes(serialization.Encoding.DER))

    listing = run([openssl, "asn1parse", "-inform", "DER", "-in", der]).stdout.splitlines()
    oid_lines = [i for i, line in enumerate(listing) if line.rstrip().endswith(f":{MODBUS_ROLE_OID}")]
    assert len(oid_lines) == 1, "\n".join(listing)
    # Non-critical means no BOOLEAN in DER: the extnValue OCTET STRING follows the OID directly.
    value_line = listing[oid_lines[0] + 1]
    assert "prim: OCTET STRING" in value_line, value_line
    offset = value_line.split(":", 1)[0].strip()
    inner = run([openssl, "asn1parse", "-inform", "DER", "-in", der, "-strparse", offset]).stdout
    match = re.fullmatch(r"\s*0:d=0\s+hl=2\s+l=\s*(\d+)\s+prim:\s+UTF8STRING\s+:(.*)\n", inner)
    assert match, inner
    assert int(match.group(1)) == len(role.encode())
    assert match.group(2) == role

    extension = issued.certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(MODBUS_ROLE_OID))
    assert not extension.critical
    assert isinstance(extension.value, x509.UnrecognizedExtension)
    decoded, rest = der_decoder.decode(extension.value.value, asn1Spec=char.UTF8String())
    assert rest == b""
    assert str(decoded) == role


# --- CRLs ---------------------------------------------------------------------------------------


def test_crl_lists_revoked_serials_with_their_reasons(
    openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    reasons = ["keyCompromise", "affiliationChanged", "unspecified"]
    revoked = {reason: api.issue("tls-client", cn=f"op-{reason}") for reason in reasons}
    for reason, issued in revoked.items():
        api.revoke(issued.serial, reason)
    kept = api.issue("tls-client", cn="op-kept")

    crl = write(tmp_path / "issuing.crl", api.crl("issuing"))
    chain = write(tmp_path / "chain.pem", "".join(kept.chain))
    out = run([openssl, "crl", "-inform", "DER", "-in", crl, "-CAfile", chain, "-noout", "-text"])
    assert "verify OK" in out.stderr, out.stderr
    entries = crl_entries(out.stdout)
    assert entries[openssl_serial(revoked["keyCompromise"].serial_number)] == "Key Compromise"
    assert entries[openssl_serial(revoked["affiliationChanged"].serial_number)] == "Affiliation Changed"
    # RFC 5280 5.3.1: reasonCode SHOULD be absent instead of unspecified.
    assert entries[openssl_serial(revoked["unspecified"].serial_number)] is None
    assert openssl_serial(kept.serial_number) not in entries
    for issued in revoked.values():  # the API's lower-case hex names the same number openssl prints
        assert int(issued.serial, 16) == issued.certificate.serial_number

    leaf = kept.write(tmp_path)
    crl_issuer = run([openssl, "crl", "-inform", "DER", "-in", crl, "-noout", "-issuer"]).stdout
    cert_issuer = run([openssl, "x509", "-in", leaf, "-noout", "-issuer"]).stdout
    assert crl_issuer == cert_issuer
    assert key_id("Authority Key Identifier", out.stdout) == key_id(
        "Subject Key Identifier", x509_text(openssl, tmp_path / "leaf-issuer.pem")
    )


def test_crl_number_increases_with_each_revocation(openssl: str, api: Api, tmp_path: Path) -> None:
    before = crl_number(openssl, write(tmp_path / "before.crl", api.crl("issuing")))
    issued = api.issue("tls-client", cn="op-numbered")
    api.revoke(issued.serial, "superseded")
    after = crl_number(openssl, write(tmp_path / "after.crl", api.crl("issuing")))
    assert after > before


def test_openssl_verify_crl_check_all(
    openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    good = api.issue("tls-server", cn="good.plant.example", dns=("good.plant.example",))
    bad = api.issue("tls-client", cn="op-fired")
    api.revoke(bad.serial, "keyCompromise")
    issuing_crl = crl_to_pem(openssl, write(tmp_path / "issuing.der", api.crl("issuing")))
    root_crl = crl_to_pem(openssl, write(tmp_path / "root.der", api.crl("root")))
    issuing = write(tmp_path / "issuing.pem", good.chain[0])
    crl_args: list[str | Path] = ["-crl_check_all", "-CRLfile", issuing_crl, "-CRLfile", root_crl]

    verify(openssl, interop_server.root_pem, issuing, good.write(tmp_path, "good"), *crl_args)

    bad_leaf = bad.write(tmp_path, "bad")
    out = run(
        [openssl, "verify", *crl_args, "-CAfile", interop_server.root_pem, "-untrusted", issuing, bad_leaf],
        check=False,
    )
    assert out.returncode != 0
    assert "error 23 at 0 depth lookup: certificate revoked" in out.stdout + out.stderr


@pytest.mark.parametrize("index", [0, 1], ids=["cACompromise", "cessationOfOperation"])
def test_revoked_sub_ca_in_root_crl_and_ocsp(
    index: int,
    openssl: str,
    api: Api,
    interop_server: RunningServer,
    retired_cas: list[RetiredCa],
    tmp_path: Path,
) -> None:
    retired = retired_cas[index]
    root = interop_server.root_pem
    root_crl_der = write(tmp_path / "root.der", api.crl("root"))
    out = run([openssl, "crl", "-inform", "DER", "-in", root_crl_der, "-CAfile", root, "-noout", "-text"])
    assert "verify OK" in out.stderr, out.stderr
    ca_serial = retired.ca.certificate.serial_number
    assert crl_entries(out.stdout)[openssl_serial(ca_serial)] == OPENSSL_REASON_TEXT[retired.reason]

    sub_ca_crl = crl_to_pem(openssl, write(tmp_path / "sub.der", api.crl(retired.ca.name)))
    leaf = retired.leaf.write(tmp_path)
    out = run(
        [
            openssl,
            "verify",
            "-crl_check_all",
            "-CRLfile",
            crl_to_pem(openssl, root_crl_der),
            "-CRLfile",
            sub_ca_crl,
            "-CAfile",
            root,
            "-untrusted",
            retired.ca.chain_file,
            leaf,
        ],
        check=False,
    )
    assert out.returncode != 0
    assert "error 23 at 1 depth lookup: certificate revoked" in out.stdout + out.stderr

    sub_ca_pem = write(tmp_path / "sub-ca.pem", pem_of(retired.ca.certificate))
    answer = ocsp_check(openssl, interop_server, root, "-cert", sub_ca_pem)
    assert_ocsp_verified(answer)
    assert f"{sub_ca_pem}: revoked" in answer.stdout
    assert f"Reason: {retired.reason}" in answer.stdout

    refused = api.request_certificate("tls-client", ca=retired.ca.name, cn="too-late")
    assert refused.status_code == 422, refused.text
    assert refused.json()["rule"] == "ca-revoked"


# --- OCSP ---------------------------------------------------------------------------------------


def test_ocsp_good_then_revoked_for_key_compromise(
    openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issued = api.issue("tls-client", cn="op-ocsp")
    leaf = issued.write(tmp_path)
    issuer = tmp_path / "leaf-issuer.pem"

    out = ocsp_check(openssl, interop_server, issuer, "-cert", leaf)
    assert_ocsp_verified(out)
    assert f"{leaf}: good" in out.stdout

    api.revoke(issued.serial, "keyCompromise")
    out = ocsp_check(openssl, interop_server, issuer, "-cert", leaf)
    assert_ocsp_verified(out)
    assert f"{leaf}: revoked" in out.stdout
    assert "Reason: keyCompromise" in out.stdout


@pytest.mark.parametrize("nonce", [True, False], ids=["nonce", "no_nonce"])
def test_ocsp_nonce_echoed_only_when_sent(
    nonce: bool, openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    leaf = api.issue("tls-client", cn="op-nonce").write(tmp_path)
    request_file, response_file = tmp_path / "req.der", tmp_path / "resp.der"
    args: list[str | Path] = ["-cert", leaf, "-reqout", request_file, "-respout", response_file]
    out = ocsp_check(
        openssl, interop_server, tmp_path / "leaf-issuer.pem", *args, *([] if nonce else ["-no_nonce"])
    )
    assert_ocsp_verified(out)
    assert f"{leaf}: good" in out.stdout

    request = ocsp.load_der_ocsp_request(request_file.read_bytes())
    response = ocsp.load_der_ocsp_response(response_file.read_bytes())
    response_nonces = [e.value.nonce for e in response.extensions if isinstance(e.value, x509.OCSPNonce)]
    if nonce:
        sent = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert response_nonces == [sent]
    else:
        assert not any(isinstance(e.value, x509.OCSPNonce) for e in request.extensions)
        assert response_nonces == []


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
def test_ocsp_cert_id_hash_algorithms(
    digest: str, openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    leaf = api.issue("device", cn=f"plc-{digest}").write(tmp_path)
    response_file = tmp_path / "resp.der"
    out = ocsp_check(
        openssl,
        interop_server,
        tmp_path / "leaf-issuer.pem",
        f"-{digest}",
        "-cert",
        leaf,
        "-respout",
        response_file,
    )
    assert_ocsp_verified(out)
    assert f"{leaf}: good" in out.stdout
    response = ocsp.load_der_ocsp_response(response_file.read_bytes())
    assert response.hash_algorithm.name == digest


def test_ocsp_for_unknown_issuer_is_unauthorized(
    openssl: str, interop_server: RunningServer, tmp_path: Path
) -> None:
    other_ca, stranger = throwaway_ca(tmp_path)
    out = ocsp_check(openssl, interop_server, other_ca, "-cert", stranger)
    assert out.returncode != 0
    assert "Responder Error: unauthorized (6)" in out.stdout + out.stderr


def test_ocsp_for_never_issued_serial_is_unknown_openssl(
    openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issuing = write(tmp_path / "issuing.pem", api.issue("tls-client", cn="op-x").chain[0])
    # 0x1234 has 13 bits; otward never issues a serial with fewer than 64.
    out = ocsp_check(openssl, interop_server, issuing, "-serial", "0x1234")
    assert_ocsp_verified(out)
    assert "0x1234: unknown" in out.stdout


def test_ocsp_for_never_issued_serial_is_unknown_curl_post(
    curl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issued = api.issue("tls-client", cn="op-y")
    # The CertID hashes of the real issuing CA, with a 20-octet serial that was never issued.
    known = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(issued.certificate, issued.issuer_certificate, hashes.SHA1())
        .build()
    )
    serial = issued.serial_number ^ (1 << 100)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(known.issuer_name_hash, known.issuer_key_hash, serial, hashes.SHA1())
        .build()
    )
    request_file = write(tmp_path / "req.der", request.public_bytes(serialization.Encoding.DER))
    response_file = tmp_path / "resp.der"
    out = run(
        [
            curl,
            "-sS",
            "--data-binary",
            f"@{request_file}",
            "-H",
            "content-type: application/ocsp-request",
            "-o",
            response_file,
            "-w",
            "%{http_code} %{content_type}",
            f"{interop_server.http_url}/ocsp",
        ]
    )
    assert out.stdout == "200 application/ocsp-response"
    response = ocsp.load_der_ocsp_response(response_file.read_bytes())
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == serial
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_get_with_curl(
    curl: str, openssl: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issued = api.issue("tls-client", cn="op-get")
    certificate, issuing = issued.certificate, issued.issuer_certificate
    # RFC 6960 A.1: the URL-encoded base64 of the DER request. Pick a nonce whose base64 has
    # '+' or '/', so the percent-encoding is really exercised.
    for counter in range(256):
        nonce = counter.to_bytes(1, "big") * 16
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(certificate, issuing, hashes.SHA1())
            .add_extension(x509.OCSPNonce(nonce), critical=False)
            .build()
        )
        encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
        if "+" in encoded or "/" in encoded:
            break
    else:
        pytest.fail("no request with '+' or '/' in its base64")
    response_file = tmp_path / "resp.der"
    out = run(
        [
            curl,
            "-sS",
            "-o",
            response_file,
            "-w",
            "%{http_code} %{content_type}",
            f"{interop_server.http_url}/ocsp/{urllib.parse.quote(encoded, safe='')}",
        ]
    )
    assert out.stdout == "200 application/ocsp-response"
    response = ocsp.load_der_ocsp_response(response_file.read_bytes())
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.serial_number == certificate.serial_number
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    # OpenSSL checks the signature and the responder's chain up to the root.
    leaf = issued.write(tmp_path)
    checked = run(
        [
            openssl,
            "ocsp",
            "-respin",
            response_file,
            "-no_nonce",  # the request was curl's; do not compare against a fresh nonce
            "-issuer",
            tmp_path / "leaf-issuer.pem",
            "-cert",
            leaf,
            "-CAfile",
            interop_server.root_pem,
        ]
    )
    assert "Response verify OK" in checked.stderr
    assert f"{leaf}: good" in checked.stdout


# --- TLS ----------------------------------------------------------------------------------------


def s_client(openssl: str, port: int, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *args], check=False, timeout=20
    )


def https_port(server: RunningServer) -> int:
    return int(server.https_url.rsplit(":", 1)[1])


@pytest.mark.parametrize("version", ["1_2", "1_3"], ids=["tls1_2", "tls1_3"])
def test_tls_handshake_verifies_against_root(
    version: str, openssl: str, interop_server: RunningServer
) -> None:
    out = s_client(
        openssl,
        https_port(interop_server),
        f"-tls{version}",
        "-CAfile",
        interop_server.root_pem,
        "-verify_return_error",
        "-verify_ip",
        "127.0.0.1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CONNECTION ESTABLISHED" in out.stderr
    assert f"Protocol version: TLSv{version.replace('_', '.')}" in out.stderr
    assert "Verification: OK" in out.stderr


def test_tls_hostname_checked_by_openssl(openssl: str, interop_server: RunningServer) -> None:
    common: list[str | Path] = [
        "-CAfile",
        interop_server.root_pem,
        "-verify_return_error",
        "-servername",
        "localhost",
    ]
    port = https_port(interop_server)
    assert s_client(openssl, port, *common, "-verify_hostname", "localhost").returncode == 0
    wrong = s_client(openssl, port, *common, "-verify_hostname", "wrong.example")
    assert wrong.returncode != 0
    assert "hostname mismatch" in wrong.stdout + wrong.stderr


def test_tls_1_1_is_refused_by_the_server(
    openssl: str, interop_server: RunningServer, tmp_path: Path
) -> None:
    """The client really offers TLS 1.1 (proved against ``openssl s_server``); otward refuses it."""
    offer_tls_1_1 = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    key = ec.generate_private_key(ec.SECP256R1())
    control_cert = self_signed(key, "localhost")
    cert_file = write(tmp_path / "control.pem", pem_of(control_cert))
    key_file = write(
        tmp_path / "control.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    port = free_port()
    control = subprocess.Popen(
        [
            openssl,
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert_file),
            "-key",
            str(key_file),
            *offer_tls_1_1,
            "-naccept",
            "1",
        ],
        stdin=subprocess.PIPE,  # s_server stops at EOF on stdin
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert control.stdout is not None
        for line in control.stdout:
            if line.startswith("ACCEPT"):
                break
        else:
            pytest.fail("openssl s_server did not start")
        accepted = s_client(openssl, port, *offer_tls_1_1)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert "Protocol version: TLSv1.1" in accepted.stderr
    finally:
        assert control.stdin is not None
        control.stdin.close()
        try:
            control.wait(timeout=10)
        except subprocess.TimeoutExpired:
            control.kill()
            control.wait()
        assert control.stdout is not None
        control.stdout.close()

    # The server closes the connection without a protocol_version alert (asyncio and uvloop drop
    # TLS alerts on handshake failure, CPython gh-98078), so only the failed handshake is asserted.
    refused = s_client(
        openssl, https_port(interop_server), *offer_tls_1_1, "-CAfile", interop_server.root_pem
    )
    assert refused.returncode != 0
    assert "CONNECTION ESTABLISHED" not in refused.stderr
    assert "Protocol version" not in refused.stderr


# --- curl against the admin API -----------------------------------------------------------------


def test_curl_issues_certificate_trusting_only_the_root(
    curl: str, openssl: str, interop_server: RunningServer, tmp_path: Path
) -> None:
    url = f"{interop_server.https_url}/api/v1/certificates"
    body = {
        "csr": build_csr(make_key("ec-p256"), cn="curl.plant.example", dns=("curl.plant.example",)).decode(),
        "profile": "tls-server",
    }
    request = write(tmp_path / "req.json", json.dumps(body))
    output = tmp_path / "out.json"
    post: list[str | Path] = [
        "-d",
        f"@{request}",
        "-H",
        "content-type: application/json",
        "-o",
        output,
        "-w",
        "%{http_code}",
    ]

    # Without the pinned root curl must not trust the service.
    untrusted = run([curl, "-sS", *post, url], check=False)
    assert untrusted.returncode == 60, untrusted.stdout + untrusted.stderr

    pinned: list[str | Path] = ["--cacert", interop_server.root_pem]
    anonymous = run([curl, "-sS", *pinned, *post, url])
    assert anonymous.stdout == "401"

    out = run([curl, "-sS", *pinned, "-H", f"Authorization: Bearer {interop_server.token}", *post, url])
    assert out.stdout == "201", output.read_text()
    answer = json.loads(output.read_text())
    leaf = write(tmp_path / "leaf.pem", answer["certificate"])
    issuing = write(tmp_path / "issuing.pem", answer["chain"][0])
    verify(openssl, interop_server.root_pem, issuing, leaf, "-verify_hostname", "curl.plant.example")


# --- a sub-CA created with the CLI while the server runs -------------------------------------


def test_cli_sub_ca_issues_certificates_openssl_accepts(
    openssl: str, api: Api, interop_server: RunningServer, plant_a: SubCa, tmp_path: Path
) -> None:
    exported = plant_a.chain_file.read_text()
    assert api.client.get("/api/v1/cas/plant-a/chain").text == exported
    exported_chain = x509.load_pem_x509_certificates(exported.encode())
    assert [c.subject for c in exported_chain][1:] == [
        x509.load_pem_x509_certificate(interop_server.root_pem.read_bytes()).subject
    ]
    ca_text = x509_text(openssl, write(tmp_path / "plant-a.pem", pem_of(plant_a.certificate)))
    assert re.search(r"X509v3 Name Constraints: critical\n\s+Permitted:\n\s+DNS:plant-a\.example\n", ca_text)
    assert re.search(r"X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n", ca_text)

    issued = api.issue("tls-server", ca="plant-a", cn="hmi.plant-a.example", dns=("hmi.plant-a.example",))
    assert issued.chain == tuple(pem_of(c) for c in exported_chain)
    leaf = issued.write(tmp_path)
    root = interop_server.root_pem
    verify(openssl, root, plant_a.chain_file, leaf, "-purpose", "sslserver")
    verify(openssl, root, plant_a.chain_file, leaf, "-verify_hostname", "hmi.plant-a.example")

    crls = [crl_to_pem(openssl, write(tmp_path / f"{ca}.der", api.crl(ca))) for ca in ("plant-a", "root")]
    verify(
        openssl, root, plant_a.chain_file, leaf, "-crl_check_all", *(a for c in crls for a in ("-CRLfile", c))
    )

    # A CA made by another process (the CLI) is answered for at once by the running responder.
    out = ocsp_check(openssl, interop_server, tmp_path / "leaf-issuer.pem", "-cert", leaf)
    assert_ocsp_verified(out)
    assert f"{leaf}: good" in out.stdout


@pytest.mark.parametrize(
    "dns",
    ["hmi.plant-b.example", "evilplant-a.example", "plant-a.example.evil.example", "*.plant-b.example"],
)
def test_sub_ca_refuses_dns_names_outside_its_constraints(dns: str, api: Api, plant_a: SubCa) -> None:
    response = api.request_certificate("tls-server", ca=plant_a.name, cn=None, dns=(dns,))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["rule"] == "name-constraints"
    assert dns in response.json()["detail"]


@pytest.mark.parametrize(
    ("profile", "names"),
    [
        ("tls-client", {"cn": "hmi.plant-b.example"}),
        ("device", {"cn": "plc-0042.line-2"}),
        ("tls-server", {"cn": "10.20.30.40", "ips": ("10.20.30.40",)}),
    ],
    ids=["tls-client-dotted-cn", "device-dotted-id", "tls-server-ip-cn"],
)
def test_sub_ca_never_issues_what_openssl_rejects_for_its_name_constraints(
    profile: str,
    names: dict[str, Any],
    openssl: str,
    api: Api,
    interop_server: RunningServer,
    plant_a: SubCa,
    tmp_path: Path,
) -> None:
    """Either the API refuses the request (422 name-constraints) or OpenSSL accepts what it issued."""
    response = api.request_certificate(profile, ca=plant_a.name, **names)
    if response.status_code != 201:
        assert response.status_code == 422, response.text
        assert response.json()["rule"] == "name-constraints"
        return
    leaf = write(tmp_path / "leaf.pem", response.json()["certificate"])
    out = run(
        [openssl, "verify", "-CAfile", interop_server.root_pem, "-untrusted", plant_a.chain_file, leaf],
        check=False,
    )
    assert out.returncode == 0, f"otward issued a certificate OpenSSL rejects:\n{out.stdout}{out.stderr}"


def test_openssl_verifies_a_p521_chain(
    openssl: str, api: Api, interop_server: RunningServer, lifelong: SubCa, tmp_path: Path
) -> None:
    """A P-521 CA (ECDSA with SHA-512) and a P-521 device under it, checked by OpenSSL."""
    issued = api.issue("device", key_type="ec-p521", ca="lifelong", cn="plc-lifelong-2")
    leaf = issued.write(tmp_path)
    assert "NIST CURVE: P-521" in x509_text(openssl, leaf)
    assert "ecdsa-with-SHA512" in x509_text(openssl, leaf)
    verify(
        openssl,
        interop_server.root_pem,
        tmp_path / "leaf-issuer.pem",
        leaf,
        "-x509_strict",
        "-purpose",
        "sslclient",
    )
