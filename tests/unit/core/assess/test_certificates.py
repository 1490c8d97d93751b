"""The pure certificate checks, with certificates built in the test and a fixed ``now``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.core.assess.certificates import (
    CertificateExpectations,
    check_certificate_chain,
    is_self_signed,
    name_matches,
)
from otward.core.assess.findings import Severity
from tests.assess_certs import TestCa, load_sha1_vector, rsa_key

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> TestCa:
    return TestCa(NOW)


def checks(chain, trust, name="localhost", **kwargs) -> dict[str, Severity]:
    found = check_certificate_chain(
        chain,
        CertificateExpectations(trust=tuple(trust), server_name=name, **kwargs),
        now=NOW,
        target="plc-1:443",
        prefix="tls",
    )
    assert all(f.target == "plc-1:443" and f.requirements for f in found)
    return {f.check: f.severity for f in found}


def test_a_good_chain_has_no_findings(ca):
    assert checks([ca.leaf().certificate], [ca.certificate]) == {}
    assert checks([ca.leaf().certificate], [ca.certificate], name="127.0.0.1") == {}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"valid_from": timedelta(days=-30), "valid_for": timedelta(days=10)}, "tls.cert.expired"),
        ({"valid_from": timedelta(days=2)}, "tls.cert.not_yet_valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_validity_is_high_and_not_also_untrusted(ca, kwargs, expected):
    assert checks([ca.leaf(**kwargs).certificate], [ca.certificate]) == {expected: Severity.HIGH}


def test_expiring_within_30_days_is_medium(ca):
    leaf = ca.leaf(valid_for=timedelta(days=20))
    assert checks([leaf.certificate], [ca.certificate]) == {"tls.cert.expiring": Severity.MEDIUM}
    assert checks([ca.leaf(valid_for=timedelta(days=40)).certificate], [ca.certificate]) == {}


def test_self_signed_is_high_unless_it_is_the_anchor(ca):
    own = ca.leaf(self_signed=True).certificate
    assert is_self_signed(own)
    assert checks([own], [ca.certificate]) == {"tls.cert.self_signed": Severity.HIGH}
    assert checks([own], [own]) == {}


def test_unknown_root_and_no_anchors_are_untrusted(ca):
    other = TestCa(NOW, cn="rival root")
    leaf = other.leaf().certificate
    assert checks([leaf], [ca.certificate]) == {"tls.cert.untrusted": Severity.HIGH}
    assert checks([leaf], []) == {"tls.cert.untrusted": Severity.HIGH}


@pytest.mark.parametrize(
    ("name", "dns", "ips", "matches"),
    [
        ("plc-1.plant.example", ("plc-1.plant.example",), (), True),
        ("PLC-1.Plant.Example.", ("plc-1.plant.example",), (), True),
        ("plc-1.plant.example", ("*.plant.example",), (), True),
        ("a.plc-1.plant.example", ("*.plant.example",), (), False),
        ("plant.example", ("*.plant.example",), (), False),
        ("plc-2.plant.example", ("plc-1.plant.example",), (), False),
        ("10.0.0.7", ("10.0.0.7",), (), False),  # an IP literal needs an iPAddress entry
        ("10.0.0.7", (), ("10.0.0.7",), True),
        ("::1", (), ("::1",), True),
    ],
)
def test_name_matching_follows_rfc_6125(ca, name, dns, ips, matches):
    leaf = ca.leaf(dns=dns, ips=ips).certificate
    assert name_matches(leaf, name) is matches
    assert ("tls.cert.hostname_mismatch" in checks([leaf], [ca.certificate], name=name)) is not matches


def test_no_subject_alt_name_never_matches_the_common_name(ca):
    leaf = ca.leaf(dns=(), ips=(), cn="localhost").certificate
    assert checks([leaf], [ca.certificate]) == {"tls.cert.hostname_mismatch": Severity.HIGH}


def test_rsa_1024_is_high(ca):
    leaf = ca.leaf(key=rsa_key(1024)).certificate
    found = check_certificate_chain(
        [leaf], CertificateExpectations(trust=(ca.certificate,)), now=NOW, target="t", prefix="tls"
    )
    assert [(f.check, f.severity) for f in found] == [("tls.cert.weak_key", Severity.HIGH)]
    assert "RSA 1024 bits" in found[0].evidence


def test_sha1_signature_is_high():
    ca, leaf, _, _ = load_sha1_vector()
    now = datetime(2030, 1, 1, tzinfo=UTC)
    found = check_certificate_chain(
        [leaf],
        CertificateExpectations(trust=(ca,), server_name="localhost"),
        now=now,
        target="t",
        prefix="tls",
    )
    severities = {f.check: f.severity for f in found}
    assert severities["tls.cert.weak_signature"] is Severity.HIGH
    assert "SHA-1" in next(f.evidence for f in found if f.check == "tls.cert.weak_signature")
    assert set(severities) <= {"tls.cert.weak_signature", "tls.cert.untrusted"}


def test_eku(ca):
    assert checks([ca.leaf(eku=None).certificate], [ca.certificate]) == {"tls.cert.eku": Severity.LOW}
    client_only = ca.leaf(eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)).certificate
    assert checks([client_only], [ca.certificate]) == {"tls.cert.eku": Severity.MEDIUM}


def test_opcua_application_uri(ca):
    uri = "urn:acme:opcua:reactor-3"
    with_uri = ca.leaf(uris=(uri,)).certificate
    kwargs = {"require_application_uri": True}
    assert checks([with_uri], [ca.certificate], application_uri=uri, **kwargs) == {}
    assert checks([with_uri], [ca.certificate], application_uri="urn:other", **kwargs) == {
        "tls.cert.application_uri": Severity.MEDIUM
    }
    assert checks([ca.leaf().certificate], [ca.certificate], application_uri=uri, **kwargs) == {
        "tls.cert.application_uri": Severity.MEDIUM
    }


def test_an_empty_chain_is_high():
    assert checks([], []) == {"tls.cert.missing": Severity.HIGH}


@pytest.mark.parametrize(
    ("make", "evidence"),
    [
        (lambda: dsa.generate_private_key(2048), "DSA 2048 bits"),
        (lambda: ec.generate_private_key(ec.SECP192R1()), "secp192r1"),
    ],
    ids=["dsa", "p-192"],
)
def test_other_weak_keys(ca, make, evidence):
    try:
        key = make()
    except UnsupportedAlgorithm:
        pytest.skip("this cryptography build cannot make the key")
    found = check_certificate_chain(
        [ca.leaf(key=key).certificate],
        CertificateExpectations(trust=(ca.certificate,)),
        now=NOW,
        target="t",
        prefix="tls",
    )
    assert [f.check for f in found] == ["tls.cert.weak_key"]
    assert evidence in found[0].evidence


def test_any_extended_key_usage_counts_as_server_auth(ca):
    leaf = ca.leaf(eku=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,)).certificate
    assert checks([leaf], [ca.certificate]) == {}


def test_an_intermediate_is_checked_too(ca):
    """A presented intermediate that expired is named; the anchor's own self-signature is not judged."""
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuing")])
    intermediate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.certificate.subject)
        .public_key(intermediate_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=400))
        .not_valid_after(NOW - timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(intermediate_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server")]))
        .issuer_name(name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(8)
        .not_valid_before(NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=100))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(intermediate_key.public_key()), critical=False
        )
        .sign(intermediate_key, hashes.SHA256())
    )
    found = check_certificate_chain(
        [leaf, intermediate, ca.certificate],
        CertificateExpectations(trust=(ca.certificate,), server_name="localhost"),
        now=NOW,
        target="t",
        prefix="tls",
    )
    assert [f.check for f in found] == ["tls.cert.expired"]
    assert "chain certificate 1" in found[0].evidence


def test_the_wanted_extended_key_usage_is_a_parameter(ca):
    client_only = ca.leaf(eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)).certificate
    wanted = {"extended_key_usage": ExtendedKeyUsageOID.CLIENT_AUTH}
    assert checks([client_only], [ca.certificate], **wanted) == {}
    server_only = ca.leaf().certificate
    assert checks([server_only], [ca.certificate], **wanted) == {"tls.cert.eku": Severity.MEDIUM}
    assert checks([ca.leaf(eku=None).certificate], [ca.certificate], extended_key_usage=None) == {}
