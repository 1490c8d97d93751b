"""pkilint finds no ERROR or FATAL in anything otward signs: certificates, CRLs and OCSP responses.

Only two findings are let through, both pkilint 0.13 false positives (see ``ALLOWED_FINDINGS``).
Anything else pkilint reports as ERROR or FATAL fails the test and is printed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.conftest import RunningServer
from tests.interop.helpers import PROFILE_CASES, Api, IssueCase, RetiredCa, SubCa, need, pem_of, run, write

pytestmark = [pytest.mark.interop, pytest.mark.integration]

BLOCKING_SEVERITIES = frozenset({"ERROR", "FATAL"})


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str | None
    node_path: str
    validator: str

    def __str__(self) -> str:
        return f"{self.severity} {self.code} at {self.node_path} ({self.validator}): {self.message}"


@dataclass(frozen=True)
class Allowance:
    code: str
    node_path: re.Pattern[str]
    message: re.Pattern[str]
    why: str

    def covers(self, finding: Finding) -> bool:
        return (
            finding.code == self.code
            and self.node_path.search(finding.node_path) is not None
            and self.message.fullmatch(finding.message or "") is not None
        )


ALLOWED_FINDINGS = (
    Allowance(
        code="pkix.invalid_uri_syntax",
        node_path=re.compile(r"\.subjectAltName\.\d+\.uniformResourceIdentifier$"),
        # Only URNs of RFC 8141 shape (urn:<NID of 2-32 LDH chars>:<NSS>) are let through.
        message=re.compile(r'Invalid URI syntax: "urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:[^"\s]+"'),
        why=(
            "pkilint 0.13 reports urn: URIs as invalid although RFC 3986 allows them (RFC 8141 syntax); "
            "OPC UA application URIs and otward's device URIs (urn:otward:device:...) are URNs"
        ),
    ),
    Allowance(
        code="pkix.invalid_domain_name_syntax",
        node_path=re.compile(r"\.subjectAltName\.\d+\.dNSName$"),
        message=re.compile(r'Invalid domain name syntax: "localhost"'),
        why=(
            "pkilint 0.13 reports the single-label name localhost as invalid; the service's own TLS "
            "certificate names localhost for clients on the same host"
        ),
    ),
)


def lint(tool: str, *args: str | Path) -> list[Finding]:
    """Run a pkilint CLI with JSON output; every ERROR and FATAL finding it prints."""
    binary = need(tool)
    proc = run([binary, "lint", "-f", "JSON", "-s", "ERROR", *args], check=False)
    try:
        results = json.loads(proc.stdout)["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        pytest.fail(f"{tool} printed no JSON report (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}")
    findings = [
        Finding(
            severity=d["severity"],
            code=d["code"],
            message=d.get("message"),
            node_path=r["node_path"],
            validator=r["validator"],
        )
        for r in results
        for d in r["finding_descriptions"]
    ]
    # pkilint's exit status is the number of findings at or above the threshold.
    assert proc.returncode == min(len(findings), 255), (proc.returncode, proc.stdout, proc.stderr)
    return findings


def blocking(findings: list[Finding]) -> list[Finding]:
    return [
        f
        for f in findings
        if f.severity in BLOCKING_SEVERITIES and not any(a.covers(f) for a in ALLOWED_FINDINGS)
    ]


def assert_clean(findings: list[Finding]) -> None:
    problems = blocking(findings)
    assert not problems, "pkilint reports:\n" + "\n".join(str(f) for f in problems)


def lint_certificate(path: Path) -> None:
    assert_clean(lint("lint_pkix_cert", path))


def ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPRequest:
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate(certificate, issuer, hashes.SHA1())
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        .build()
    )


def load_pem(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# --- the harness itself ------------------------------------------------------------------------


def test_lint_helper_lets_only_the_two_false_positives_through(tmp_path: Path) -> None:
    """A certificate with real defects next to the two allowed false positives."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.UniformResourceIdentifier("urn:plant:opcua:server1"),
                    x509.UniformResourceIdentifier("not a uri"),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    findings = lint("lint_pkix_cert", write(tmp_path / "broken.pem", pem_of(certificate)))
    assert {f.code for f in findings} >= {"pkix.invalid_uri_syntax", "pkix.invalid_domain_name_syntax"}
    assert sorted((f.code, f.message) for f in blocking(findings)) == [
        ("pkix.authority_key_identifier_extension_absent", None),
        ("pkix.invalid_uri_syntax", 'Invalid URI syntax: "not a uri"'),
    ]


# --- certificates --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", PROFILE_CASES, ids=lambda c: c.id)
def test_pkilint_profile_certificate(case: IssueCase, api: Api, tmp_path: Path) -> None:
    lint_certificate(api.issue_case(case).write(tmp_path))


def test_pkilint_root_certificate(interop_server: RunningServer) -> None:
    lint_certificate(interop_server.root_pem)


def test_pkilint_issuing_ca_certificate(api: Api, tmp_path: Path) -> None:
    response = api.plain.get("/ca/issuing.crt")
    assert response.status_code == 200
    lint_certificate(write(tmp_path / "issuing.der", response.content))


def test_pkilint_name_constrained_sub_ca_certificate(plant_a: SubCa, tmp_path: Path) -> None:
    lint_certificate(write(tmp_path / "plant-a.pem", pem_of(plant_a.certificate)))


def test_pkilint_p521_sub_ca_and_its_p521_device_certificate(
    lifelong: SubCa, api: Api, tmp_path: Path
) -> None:
    lint_certificate(write(tmp_path / "lifelong.pem", pem_of(lifelong.certificate)))
    device = api.issue("device", key_type="ec-p521", ca="lifelong", cn="plc-lifelong-1")
    assert device.certificate.signature_hash_algorithm.name == "sha512"  # ECDSA with SHA-512
    lint_certificate(device.write(tmp_path))


def test_pkilint_service_tls_certificate(interop_server: RunningServer, tmp_path: Path) -> None:
    chain = x509.load_pem_x509_certificates((interop_server.data_dir / "tls" / "server.pem").read_bytes())
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)  # what allowance (b) is for
    lint_certificate(write(tmp_path / "server.pem", pem_of(chain[0])))


def test_pkilint_audit_signer_certificate(api: Api, tmp_path: Path) -> None:
    """The key that signs audit heads and transparency tree heads."""
    response = api.client.get("/api/v1/transparency/signer")
    assert response.status_code == 200
    signer = x509.load_pem_x509_certificates(response.content)[0]
    lint_certificate(write(tmp_path / "signer.pem", pem_of(signer)))


@pytest.mark.parametrize("ca", ["issuing", "root"])
def test_pkilint_ocsp_responder_certificate(
    ca: str, api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    issued = api.issue("tls-client", cn="op-responder")
    root = load_pem(interop_server.root_pem)
    # Ask each CA about something it issued; its delegated responder signs and ships its certificate.
    subject, issuer = (
        (issued.certificate, issued.issuer_certificate)
        if ca == "issuing"
        else (issued.issuer_certificate, root)
    )
    response = ocsp.load_der_ocsp_response(api.ocsp(ocsp_request(subject, issuer)))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert len(response.certificates) == 1
    responder = response.certificates[0]
    responder.verify_directly_issued_by(issuer)
    lint_certificate(write(tmp_path / "responder.pem", pem_of(responder)))


# --- CRLs ---------------------------------------------------------------------------------------


def lint_crl(der: bytes, path: Path) -> x509.CertificateRevocationList:
    assert_clean(lint("lint_crl", "-t", "CRL", "-p", "PKIX", write(path, der)))
    return x509.load_der_x509_crl(der)


def reasons_in(crl: x509.CertificateRevocationList) -> set[x509.ReasonFlags | None]:
    found: set[x509.ReasonFlags | None] = set()
    for entry in crl:
        try:
            found.add(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason)
        except x509.ExtensionNotFound:
            found.add(None)
    return found


def test_pkilint_issuing_crl_with_several_reasons(api: Api, tmp_path: Path) -> None:
    for reason in ("keyCompromise", "superseded", "privilegeWithdrawn", "unspecified"):
        api.revoke(api.issue("tls-client", cn=f"op-{reason}").serial, reason)
    crl = lint_crl(api.crl("issuing"), tmp_path / "issuing.crl")
    assert reasons_in(crl) >= {
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.privilege_withdrawn,
        None,
    }


def test_pkilint_root_crl_with_revoked_sub_cas(
    api: Api, retired_cas: list[RetiredCa], tmp_path: Path
) -> None:
    crl = lint_crl(api.crl("root"), tmp_path / "root.crl")
    serials = {entry.serial_number for entry in crl}
    assert {r.ca.certificate.serial_number for r in retired_cas} <= serials
    assert reasons_in(crl) >= {x509.ReasonFlags.ca_compromise, x509.ReasonFlags.cessation_of_operation}


def test_pkilint_crl_of_sub_ca_created_by_cli(api: Api, plant_a: SubCa, tmp_path: Path) -> None:
    lint_crl(api.crl(plant_a.name), tmp_path / "plant-a.crl")


# --- OCSP responses -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["good", "revoked", "unknown", "revoked-sub-ca", "unauthorized"])
def test_pkilint_ocsp_response(
    status: str, api: Api, interop_server: RunningServer, retired_cas: list[RetiredCa], tmp_path: Path
) -> None:
    issued = api.issue("tls-client", cn=f"op-{status}")
    certificate, issuer = issued.certificate, issued.issuer_certificate
    expected = ocsp.OCSPResponseStatus.SUCCESSFUL
    if status == "revoked":
        api.revoke(issued.serial, "keyCompromise")
    if status == "revoked-sub-ca":
        certificate, issuer = retired_cas[0].ca.certificate, load_pem(interop_server.root_pem)
    if status == "unauthorized":
        issuer = retired_cas[0].leaf.certificate  # a key otward never issued under
        expected = ocsp.OCSPResponseStatus.UNAUTHORIZED
    request = ocsp_request(certificate, issuer)
    if status == "unknown":
        request = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(
                request.issuer_name_hash,
                request.issuer_key_hash,
                certificate.serial_number ^ (1 << 100),
                hashes.SHA1(),
            )
            .build()
        )
    der = api.ocsp(request)
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is expected
    if expected is ocsp.OCSPResponseStatus.SUCCESSFUL:
        want = {
            "good": ocsp.OCSPCertStatus.GOOD,
            "unknown": ocsp.OCSPCertStatus.UNKNOWN,
        }.get(status, ocsp.OCSPCertStatus.REVOKED)
        assert response.certificate_status is want
    assert_clean(lint("lint_ocsp_response", write(tmp_path / "response.der", der)))


# --- issuer/subject pairs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pair",
    ["root>issuing", "issuing>tls-server", "issuing>ocsp-responder", "root>plant-a", "plant-a>tls-server"],
)
def test_pkilint_signer_signee_pair(
    pair: str, api: Api, interop_server: RunningServer, plant_a: SubCa, tmp_path: Path
) -> None:
    root = load_pem(interop_server.root_pem)
    if pair == "root>plant-a":
        issuer, subject = root, plant_a.certificate
    elif pair == "plant-a>tls-server":
        issued = api.issue(
            "tls-server", ca="plant-a", cn="scada.plant-a.example", dns=("scada.plant-a.example",)
        )
        issuer, subject = plant_a.certificate, issued.certificate
    else:
        issued = api.issue("tls-server", cn="scada.plant.example", dns=("scada.plant.example",))
        issuer, subject = issued.issuer_certificate, issued.certificate
        if pair == "root>issuing":
            issuer, subject = root, issued.issuer_certificate
        elif pair == "issuing>ocsp-responder":
            response = ocsp.load_der_ocsp_response(api.ocsp(ocsp_request(issued.certificate, issuer)))
            subject = response.certificates[0]
    findings = lint(
        "lint_pkix_signer_signee_cert_chain",
        write(tmp_path / "issuer.pem", pem_of(issuer)),
        write(tmp_path / "subject.pem", pem_of(subject)),
    )
    assert_clean(findings)


def test_signer_signee_lint_detects_a_wrong_issuer(
    api: Api, interop_server: RunningServer, tmp_path: Path
) -> None:
    """The pair linter is not a no-op: a leaf presented as signed by the root is reported."""
    issued = api.issue("tls-server", cn="scada-2.plant.example", dns=("scada-2.plant.example",))
    findings = lint(
        "lint_pkix_signer_signee_cert_chain",
        interop_server.root_pem,
        write(tmp_path / "subject.pem", issued.pem),
    )
    assert "pkix.signature_verification_failed" in {f.code for f in blocking(findings)}, findings
