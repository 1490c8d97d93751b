"""core.idevid: a factory identity is recognised, and refused for every reason it must be."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from otward.core.idevid import (
    ClaimRecord,
    ManufacturerRecord,
    hardware_serials,
    identify,
    load_manufacturer_certificates,
    matches_public_key,
    public_key_sha256,
    validate_crl,
    validate_possession,
    validate_serial,
)
from otward.errors import AuthenticationError, InvalidRequestError, PolicyViolationError
from tests.factory import Manufacturer

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def acme() -> Manufacturer:
    return Manufacturer("acme-sensors")


@pytest.fixture(scope="module")
def other() -> Manufacturer:
    return Manufacturer("other-chips")


def _record(m: Manufacturer, *, crl: bytes | None = None, required: bool = False) -> ManufacturerRecord:
    return ManufacturerRecord(
        name=m.name,
        ca_certificates=(m.certificate,),
        created_at=NOW,
        crl=crl,
        crl_required=required or crl is not None,
    )


def _rule(exc: pytest.ExceptionInfo[Exception]) -> str | None:
    return getattr(exc.value, "rule", None)


def test_serial_in_the_subject_identifies_the_unit(acme, other):
    key, idevid = acme.idevid("SN-0001")
    found = identify(idevid, [_record(other), _record(acme)], NOW)
    assert (found.manufacturer, found.serial) == ("acme-sensors", "SN-0001")
    assert found.certificate_serial == f"{idevid.serial_number:x}"
    assert found.public_key_sha256 == public_key_sha256(key.public_key())


@pytest.mark.parametrize(
    ("raw", "expected"), [(b"HW-42", "HW-42"), (b"\x01\x02\xfe", "0102FE")], ids=["ascii", "binary-as-hex"]
)
def test_hardware_module_name_identifies_the_unit(acme, raw, expected):
    _, idevid = acme.idevid(None, hardware_serial=raw)
    assert hardware_serials(idevid) == (expected,)
    assert identify(idevid, [_record(acme)], NOW).serial == expected


def test_the_same_serial_in_subject_and_san_is_one_serial(acme):
    _, idevid = acme.idevid("HW-42", hardware_serial=b"HW-42")
    assert identify(idevid, [_record(acme)], NOW).serial == "HW-42"


def test_a_hardware_module_name_that_is_not_the_two_field_sequence_is_refused(acme):
    broken = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4"), b"\x30\x03\x02\x01\x05")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(acme.certificate.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([broken]), critical=False)
    )
    idevid = builder.sign(acme.key, hashes.SHA256())
    with pytest.raises(AuthenticationError) as exc:
        identify(idevid, [_record(acme)], NOW)
    assert _rule(exc) == "idevid-serial"


@pytest.mark.parametrize(
    ("serial", "hardware", "why"),
    [
        (None, None, "no serialNumber"),
        ("A-1", b"B-2", "different serial numbers"),
        ("bad serial", None, "not a serial"),
    ],
    ids=["none", "two-different", "unclaimable"],
)
def test_a_unit_without_one_clear_serial_is_refused(acme, serial, hardware, why):
    _, idevid = acme.idevid(serial, hardware_serial=hardware)
    with pytest.raises(AuthenticationError, match=why) as exc:
        identify(idevid, [_record(acme)], NOW)
    assert _rule(exc) == "idevid-serial"


def test_an_unregistered_manufacturer_is_refused(acme, other):
    _, idevid = other.idevid("SN-1")
    with pytest.raises(AuthenticationError) as exc:
        identify(idevid, [_record(acme)], NOW)
    assert _rule(exc) == "idevid-manufacturer"


def test_a_certificate_signed_by_another_key_under_the_manufacturers_name_is_refused(acme):
    impostor = Manufacturer("acme-sensors")  # same names, its own key
    _, idevid = impostor.idevid("SN-1")
    with pytest.raises(AuthenticationError) as exc:
        identify(idevid, [_record(acme)], NOW)
    assert _rule(exc) == "idevid-manufacturer"


@pytest.mark.parametrize(
    ("valid_from", "valid_for"),
    [(NOW - timedelta(days=400), timedelta(days=365)), (NOW + timedelta(days=1), timedelta(days=365))],
    ids=["expired", "not-yet-valid"],
)
def test_an_idevid_outside_its_validity_is_refused(acme, valid_from, valid_for):
    _, idevid = acme.idevid("SN-1", valid_from=valid_from, valid_for=valid_for)
    with pytest.raises(AuthenticationError) as exc:
        identify(idevid, [_record(acme)], NOW)
    assert _rule(exc) == "idevid-expired"


def test_a_revoked_idevid_is_refused_and_an_unrevoked_one_passes(acme):
    _, revoked = acme.idevid("SN-R")
    _, good = acme.idevid("SN-G")
    record = _record(acme, crl=acme.crl((revoked,)))
    with pytest.raises(AuthenticationError) as exc:
        identify(revoked, [record], NOW)
    assert _rule(exc) == "idevid-revoked"
    assert identify(good, [record], NOW).serial == "SN-G"


@pytest.mark.parametrize(
    "crl", ["missing", "stale", "other-signer"], ids=["no-crl-yet", "past-next-update", "signed-by-another"]
)
def test_a_configured_crl_that_is_not_current_refuses_every_idevid(acme, other, crl):
    _, idevid = acme.idevid("SN-1")
    der = {
        "missing": None,
        "stale": acme.crl(next_update=timedelta(days=-1)),
        "other-signer": other.crl(),
    }[crl]
    with pytest.raises(AuthenticationError) as exc:
        identify(idevid, [_record(acme, crl=der, required=True)], NOW)
    assert _rule(exc) == "idevid-crl"


def test_validate_crl_accepts_only_the_manufacturers_crl(acme, other):
    assert validate_crl(acme.crl(), (acme.certificate,)).issuer == acme.certificate.subject
    with pytest.raises(PolicyViolationError):
        validate_crl(other.crl(), (acme.certificate,))
    with pytest.raises(InvalidRequestError):
        validate_crl(b"not a crl", (acme.certificate,))


def test_only_ca_certificates_register(acme):
    assert load_manufacturer_certificates(acme.pem()) == (acme.certificate,)
    _, leaf = acme.idevid("SN-1")
    from cryptography.hazmat.primitives.serialization import Encoding

    with pytest.raises(PolicyViolationError):
        load_manufacturer_certificates(leaf.public_bytes(Encoding.PEM))
    with pytest.raises(InvalidRequestError):
        load_manufacturer_certificates(b"nothing")


@pytest.mark.parametrize("serial", ["", "a b", "x" * 129, "ü"], ids=["empty", "space", "long", "non-ascii"])
def test_serials_are_bounded(serial):
    with pytest.raises(InvalidRequestError):
        validate_serial(serial)


def test_the_voucher_hash_must_match_the_idevid_key(acme):
    key, idevid = acme.idevid("SN-1")
    found = identify(idevid, [_record(acme)], NOW)
    assert matches_public_key(None, found)
    assert matches_public_key(public_key_sha256(key.public_key()).upper(), found)
    assert not matches_public_key("00" * 32, found)
    _ = ClaimRecord  # the claim carries the hash; matching is here


def _csr(key, password: bytes | None = None) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sensor-1")])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password)
    return builder.sign(key, hashes.SHA256())


def test_a_request_for_the_idevid_key_needs_no_binding(acme):
    key, idevid = acme.idevid("SN-1")
    assert validate_possession(_csr(key), idevid, tls_version="TLSv1.3", tls_unique=None) == "idevid-key"


def test_a_new_key_is_bound_to_the_tls_session_by_tls_unique(acme):
    _, idevid = acme.idevid("SN-1")
    new_key = ec.generate_private_key(ec.SECP256R1())
    unique = bytes(range(12))
    bound = _csr(new_key, base64.b64encode(unique))
    assert validate_possession(bound, idevid, tls_version="TLSv1.2", tls_unique=unique) == "tls-unique"
    for version, session in [("TLSv1.2", bytes(12)), ("TLSv1.3", None), ("TLSv1.2", None)]:
        with pytest.raises(AuthenticationError) as exc:
            validate_possession(bound, idevid, tls_version=version, tls_unique=session)
        assert _rule(exc) == "idevid-channel-binding"
    with pytest.raises(AuthenticationError):
        validate_possession(_csr(new_key), idevid, tls_version="TLSv1.2", tls_unique=unique)


@given(value=st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_any_hardware_module_name_value_is_read_or_refused_cleanly(acme, value):
    """A hardwareModuleName's value is whatever the manufacturer wrote: a serial comes out, or an
    AuthenticationError (idevid-serial); nothing else escapes."""
    import contextlib

    sequence = b"\x30" + bytes([len(value)]) + value if len(value) < 128 else value
    name = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4"), sequence)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(acme.certificate.subject)
        .public_key(acme.key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([name]), critical=False)
    )
    certificate = None
    with contextlib.suppress(ValueError):  # cryptography refuses to write a value that is not DER
        certificate = builder.sign(acme.key, hashes.SHA256())
    if certificate is None:
        return
    outcome: object
    try:
        outcome = hardware_serials(certificate)
    except AuthenticationError as exc:
        outcome = exc.rule
    assert outcome == "idevid-serial" or (
        isinstance(outcome, tuple) and len(outcome) == 1 and isinstance(outcome[0], str)
    )
