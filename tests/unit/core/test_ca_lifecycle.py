"""The pure decisions of a CA's life: requests, checks on certificates signed outside, names of
generations, link certificates and expiry marks."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.core.ca_lifecycle import (
    CA_EXPIRY_MARKS,
    RequestedCa,
    build_ca_csr,
    build_link_certificate,
    expiry_marks_crossed,
    is_self_signed,
    read_requested_ca,
    successor_name,
    successor_subject,
    validate_ca_certificate,
)
from otward.core.extensions import key_identifier
from otward.errors import PolicyViolationError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _ca(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = True,
    path_length: int | None = 0,
    key_cert_sign: bool = True,
    ski: bool = True,
    start: datetime = NOW - timedelta(days=1),
    end: datetime = NOW + timedelta(days=365),
    basic_constraints: bool = True,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier(key_identifier(key.public_key())), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return _ca(_name("Offline Root"), key, path_length=None, end=NOW + timedelta(days=3650)), key


@pytest.fixture(scope="module")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _check(certificate, ca_key, chain, *, requested=0, now=NOW):  # type: ignore[no-untyped-def]
    return validate_ca_certificate(
        certificate,
        name="issuing",
        public_key=ca_key.public_key(),
        requested_path_length=requested,
        chain=chain,
        now=now,
    )


def test_a_good_certificate_gives_its_path_to_the_root(root, ca_key):
    certificate = _ca(_name("Issuing"), ca_key, issuer=(root[0].subject, root[1]))
    assert _check(certificate, ca_key, [root[0]]) == [certificate, root[0]]


@pytest.mark.parametrize(
    ("change", "rule", "message"),
    [
        ({"ca": False}, "ca-not-ca", "not a CA certificate"),
        ({"basic_constraints": False}, "ca-not-ca", "not a CA certificate"),
        ({"key_cert_sign": False}, "ca-key-usage", "keyCertSign and cRLSign"),
        ({"ski": False}, "ca-ski", "subjectKeyIdentifier"),
        ({"end": NOW - timedelta(hours=1), "start": NOW - timedelta(days=2)}, "ca-validity", "not valid now"),
        ({"start": NOW + timedelta(hours=1)}, "ca-validity", "not valid now"),
    ],
    ids=["not-ca", "no-basic-constraints", "no-keycertsign", "no-ski", "expired", "not-yet-valid"],
)
def test_certificates_unfit_for_a_ca_are_refused(root, ca_key, change, rule, message):
    certificate = _ca(_name("Issuing"), ca_key, issuer=(root[0].subject, root[1]), **change)
    with pytest.raises(PolicyViolationError, match=message) as refused:
        _check(certificate, ca_key, [root[0]])
    assert refused.value.rule == rule


def test_another_key_a_smaller_path_length_or_another_root_is_refused(root, ca_key):
    certificate = _ca(_name("Issuing"), ca_key, issuer=(root[0].subject, root[1]), path_length=0)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(PolicyViolationError, match="public key differs"):
        _check(certificate, other, [root[0]])
    with pytest.raises(
        PolicyViolationError, match="allows pathLen 0 but CA 'issuing' was requested with pathLen 1"
    ):
        _check(certificate, ca_key, [root[0]], requested=1)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _ca(root[0].subject, stranger_key, path_length=None)  # same name, other key
    with pytest.raises(PolicyViolationError, match="does not chain to the root given"):
        _check(certificate, ca_key, [stranger])
    with pytest.raises(PolicyViolationError, match="no self-signed root"):
        _check(certificate, ca_key, [])
    with pytest.raises(PolicyViolationError, match="self-signed"):
        _check(_ca(_name("Issuing"), ca_key), ca_key, [root[0]])


def test_a_sha1_signature_is_refused(root, ca_key):
    """cryptography signs no SHA-1 certificate any more: a static one made with openssl, its
    public key swapped in through the check's own parameter."""
    pem = _SHA1_CERTIFICATE
    certificate = x509.load_pem_x509_certificate(pem)
    with pytest.raises(PolicyViolationError, match="SHA-1 and MD5 are refused"):
        validate_ca_certificate(
            certificate,
            name="issuing",
            public_key=certificate.public_key(),
            requested_path_length=None,
            chain=[],
            now=certificate.not_valid_before_utc + timedelta(seconds=1),
        )


def test_the_request_asks_for_what_the_ca_needs():
    key = ec.generate_private_key(ec.SECP256R1())
    requested = RequestedCa(1, ("plant-a.example",), (ipaddress.ip_network("10.20.0.0/16"),))
    csr = build_ca_csr(_name("Plant A"), requested).sign(key, hashes.SHA256())
    assert read_requested_ca(csr) == requested
    usage = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    assert not usage.digital_signature
    with pytest.raises(PolicyViolationError, match="must not be negative"):
        build_ca_csr(_name("x"), RequestedCa(-1))


def test_reading_requests_that_ask_for_little_or_too_much():
    key = ec.generate_private_key(ec.SECP256R1())
    plain = x509.CertificateSigningRequestBuilder().subject_name(_name("x")).sign(key, hashes.SHA256())
    assert read_requested_ca(plain) == RequestedCa(0)
    unlimited = build_ca_csr(_name("x"), RequestedCa(None)).sign(key, hashes.SHA256())
    assert read_requested_ca(unlimited).path_length is None
    end_entity = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name("x"))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(PolicyViolationError, match="cA=FALSE"):
        read_requested_ca(end_entity)
    for constraints, message in (
        (
            x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[x509.DNSName("x.example")]),
            "excluded",
        ),
        (
            x509.NameConstraints(permitted_subtrees=[x509.RFC822Name("a@x.example")], excluded_subtrees=None),
            "RFC822",
        ),
    ):
        asking = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(_name("x"))
            .add_extension(constraints, critical=True)
            .sign(key, hashes.SHA256())
        )
        with pytest.raises(PolicyViolationError, match=message):
            read_requested_ca(asking)


@pytest.mark.parametrize(
    ("name", "successor"),
    [
        ("issuing", "issuing-g2"),
        ("issuing-g2", "issuing-g3"),
        ("plant-g9", "plant-g10"),
        ("a" * 63, "a" * 60 + "-g2"),
    ],
    ids=["first", "second", "tenth", "long"],
)
def test_generation_names(name, successor):
    assert successor_name(name) == successor


def test_generation_subjects_keep_the_attributes_and_mark_the_cn():
    assert successor_subject(_name("ACME issuing CA"), "issuing-g2") == _name("ACME issuing CA G2")
    assert successor_subject(_name("ACME issuing CA G2"), "issuing-g3") == _name("ACME issuing CA G3")
    no_cn = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ACME")])
    assert (
        successor_subject(no_cn, "issuing-g2").get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == "issuing-g2"
    )


def test_link_certificates_carry_the_other_generation(root):
    old, old_key = root
    new_key = ec.generate_private_key(ec.SECP256R1())
    new = _ca(_name("Offline Root G2"), new_key, path_length=None)
    link = build_link_certificate(
        subject_certificate=new,
        issuer_certificate=old,
        serial_number=x509.random_serial_number(),
        not_valid_before=NOW,
        not_valid_after=old.not_valid_after_utc,
    ).sign(old_key, hashes.SHA256())
    link.verify_directly_issued_by(old)
    assert link.subject == new.subject
    assert link.public_key() == new.public_key()
    assert link.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not is_self_signed(link)
    with pytest.raises(PolicyViolationError, match="notAfter after notBefore"):
        build_link_certificate(
            subject_certificate=new,
            issuer_certificate=old,
            serial_number=1,
            not_valid_before=NOW,
            not_valid_after=NOW,
        )


def test_self_signed_means_named_and_signed_by_itself(root, ca_key):
    assert is_self_signed(root[0])
    impostor = _ca(root[0].subject, ca_key, issuer=(root[0].subject, ec.generate_private_key(ec.SECP256R1())))
    assert not is_self_signed(impostor)


@pytest.mark.parametrize(
    ("left", "marks"),
    [
        (timedelta(days=120), ()),
        (timedelta(days=90), (90,)),
        (timedelta(days=29), (90, 30)),
        (timedelta(days=1), CA_EXPIRY_MARKS),
        (timedelta(0), ()),
        (-timedelta(days=1), ()),
    ],
    ids=["far", "90", "29", "1", "expiring-now", "expired"],
)
def test_expiry_marks(left, marks):
    assert expiry_marks_crossed(NOW + left, NOW) == marks


# Made with: openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha1 -days 3650
#   -subj /CN=sha1-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
_SHA1_CERTIFICATE = b"""\
-----BEGIN CERTIFICATE-----
MIIBhjCCAS6gAwIBAgIUasQiiJKdFXZz/wAPKUHi7TTTkDEwCQYHKoZIzj0EATAS
MRAwDgYDVQQDDAdzaGExLWNhMB4XDTI2MTIwNzE1Mzk1N1oXDTM2MTIwNDE1Mzk1
N1owEjEQMA4GA1UEAwwHc2hhMS1jYTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BNgXtoAPbpV+urHs1Xm/7GptfTBRaZ1FAPF8i44KEGttok0OmhTUqZomwbacpgoS
oy3azeIbm46lbmWVZmVLWdGjYzBhMB0GA1UdDgQWBBSOMuVFZjvpdQIuSTOStzHJ
FJg71DAfBgNVHSMEGDAWgBSOMuVFZjvpdQIuSTOStzHJFJg71DAPBgNVHRMBAf8E
BTADAQH/MA4GA1UdDwEB/wQEAwIBBjAJBgcqhkjOPQQBA0cAMEQCIBCiYWSzSIcj
fUR5I0pR73kcYbFI48pN4lj/yN9+KAnYAiAzYoNQo7oA+4WN8jINsorqFY6nyMOz
110QNgpcwPxb0A==
-----END CERTIFICATE-----
"""
