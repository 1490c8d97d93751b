"""RFC 7030 section 4.2.2 in the issuance pipeline: a re-enrollment keeps the renewed certificate's
Subject and SubjectAltName unless its CSR carries ChangeSubjectName and the profile allows it."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import encoder
from pyasn1.type import univ

from otward.core.csr import load_csr, validate_csr
from otward.core.issuance import IssuanceRequest, build_certificate, plan_certificate
from otward.core.profiles import BUILTIN_PROFILES
from otward.core.renewal import NameChange, parse_change_subject_name, renewal_of
from otward.errors import ParseError, PolicyViolationError
from tests.conftest import build_csr, make_key, with_change_subject_name
from tests.unit.core.conftest import NOW

SERIAL = 0x1234_5678_9ABC_DEF0_1234_5678
DEVICE_URI = "urn:otward:device:acme:plc-1"


def _issue(ca, csr: bytes, *, renewing: x509.Certificate | None = None) -> x509.Certificate:
    parsed = load_csr(csr)
    req = IssuanceRequest(
        checked=validate_csr(parsed),
        profile=BUILTIN_PROFILES["device"],
        issuer=ca.info,
        now=NOW,
        owner="acme",
        renewal=renewal_of(renewing, parsed) if renewing is not None else None,
    )
    builder = build_certificate(plan_certificate(req), parsed.public_key(), ca.info, SERIAL)
    return builder.sign(ca.key, hashes.SHA256())


def _sans(certificate: x509.Certificate) -> set[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(getattr(name, "value", name)) for name in san}


@pytest.fixture
def enrolled(issuing_ca) -> x509.Certificate:
    """plc-1 of owner acme with a DNS and an IP name, as a first enrollment issues it."""
    return _issue(
        issuing_ca, build_csr(make_key(), cn="plc-1", dns=("plc-1.line2.example",), ips=("10.2.0.1",))
    )


def test_the_first_certificate_carries_otwards_device_uri(enrolled):
    assert _sans(enrolled) == {"plc-1.line2.example", "10.2.0.1", DEVICE_URI}


def test_a_csr_with_the_renewed_certificates_names_is_renewed_including_the_device_uri(issuing_ca, enrolled):
    """What libest sends: subject and SAN copied from the certificate, otward's URI included (it was
    refused with san-type)."""
    csr = build_csr(
        make_key(), cn="plc-1", dns=("plc-1.line2.example",), ips=("10.2.0.1",), uris=(DEVICE_URI,)
    )
    renewed = _issue(issuing_ca, csr, renewing=enrolled)
    assert _sans(renewed) == _sans(enrolled)
    assert renewed.subject == enrolled.subject


def test_the_device_uri_may_be_left_out_and_names_may_come_in_any_order(issuing_ca, enrolled):
    csr = build_csr(make_key(), cn="plc-1", dns=("plc-1.line2.example",), ips=("10.2.0.1",))
    assert _sans(_issue(issuing_ca, csr, renewing=enrolled)) == _sans(enrolled)


def test_a_csr_without_san_gets_the_renewed_certificates_san(issuing_ca, enrolled):
    renewed = _issue(issuing_ca, build_csr(make_key(), cn="plc-1"), renewing=enrolled)
    assert _sans(renewed) == _sans(enrolled)


@pytest.mark.parametrize(
    ("dns", "ips", "uris"),
    [
        pytest.param(("other.line2.example",), ("10.2.0.1",), (), id="another-dns-name"),
        pytest.param(("plc-1.line2.example",), ("10.2.0.9",), (), id="another-ip"),
        pytest.param(("plc-1.line2.example",), (), (), id="a-name-dropped"),
        pytest.param(("plc-1.line2.example", "extra.line2.example"), ("10.2.0.1",), (), id="a-name-added"),
    ],
)
def test_a_different_san_without_change_subject_name_is_refused(issuing_ca, enrolled, dns, ips, uris):
    csr = build_csr(make_key(), cn="plc-1", dns=dns, ips=ips, uris=uris)
    with pytest.raises(PolicyViolationError, match="ChangeSubjectName") as refused:
        _issue(issuing_ca, csr, renewing=enrolled)
    assert refused.value.rule == "est-san"


def test_change_subject_name_lets_a_device_change_its_dns_and_ip_names(issuing_ca, enrolled):
    key = make_key()
    csr = build_csr(key, cn="plc-1", dns=("plc-1.line3.example",), ips=("10.3.0.1",))
    asked = with_change_subject_name(csr, key, subject_alt=("plc-1.line3.example",))
    renewed = _issue(issuing_ca, asked, renewing=enrolled)
    assert _sans(renewed) == {"plc-1.line3.example", "10.3.0.1", DEVICE_URI}


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("urn:otward:device:acme:plc-2", id="another-device-of-the-owner"),
        pytest.param("urn:otward:device:rival:plc-1", id="the-device-id-of-another-owner"),
        pytest.param("urn:otward:client:plc-1", id="elsewhere-in-otwards-namespace"),
        pytest.param("urn:example:asset:plc-1", id="a-uri-the-device-profile-never-issues"),
    ],
)
def test_no_other_uri_passes_not_even_with_change_subject_name(issuing_ca, enrolled, uri):
    key = make_key()
    csr = build_csr(key, cn="plc-1", dns=("plc-1.line2.example",), ips=("10.2.0.1",), uris=(uri,))
    with pytest.raises(PolicyViolationError) as plain:
        _issue(issuing_ca, csr, renewing=enrolled)
    asked = with_change_subject_name(csr, key, subject_alt=("plc-1.line2.example",))
    with pytest.raises(PolicyViolationError, match="uri") as changed:
        _issue(issuing_ca, asked, renewing=enrolled)
    assert (plain.value.rule, changed.value.rule) == ("est-san", "est-san")


def test_the_subject_is_kept_even_with_change_subject_name(issuing_ca, enrolled):
    key = make_key()
    extra = (x509.NameAttribute(x509.NameOID.ORGANIZATIONAL_UNIT_NAME, "line 3"),)
    csr = build_csr(key, cn="plc-1", extra_subject=extra)
    for request in (csr, with_change_subject_name(csr, key, subject=True, subject_alt=None)):
        with pytest.raises(PolicyViolationError, match="keeps the subject") as refused:
            _issue(issuing_ca, request, renewing=enrolled)
        assert refused.value.rule == "est-subject"


def test_a_profile_that_allows_no_change_refuses_change_subject_name(issuing_ca, enrolled):
    import dataclasses

    frozen = dataclasses.replace(BUILTIN_PROFILES["device"], renewal_may_change=frozenset())
    key = make_key()
    csr = with_change_subject_name(
        build_csr(key, cn="plc-1", dns=("plc-1.line3.example",)), key, subject_alt=("plc-1.line3.example",)
    )
    parsed = load_csr(csr)
    req = IssuanceRequest(
        checked=validate_csr(parsed),
        profile=frozen,
        issuer=issuing_ca.info,
        now=NOW,
        owner="acme",
        renewal=renewal_of(enrolled, parsed),
    )
    with pytest.raises(PolicyViolationError, match="does not let a re-enrollment change its dns, ip"):
        plan_certificate(req)


# --- the attribute itself ------------------------------------------------------------------------


def test_change_subject_name_says_which_names_change():
    key = make_key()
    csr = build_csr(key, cn="plc-1")
    assert parse_change_subject_name(load_csr(csr)) is None
    parse = parse_change_subject_name
    assert parse(load_csr(with_change_subject_name(csr, key, subject_alt=("a.example",)))) == NameChange(
        subject=False, subject_alt=True
    )
    both = with_change_subject_name(csr, key, subject=True, subject_alt=("a.example",))
    assert parse(load_csr(both)) == NameChange(subject=True, subject_alt=True)
    only_subject = with_change_subject_name(csr, key, subject=True, subject_alt=None)
    assert parse(load_csr(only_subject)) == NameChange(subject=True, subject_alt=False)


def test_an_empty_or_malformed_change_subject_name_is_refused():
    key = make_key()
    csr = build_csr(key, cn="plc-1")
    with pytest.raises(ParseError, match="neither") as empty:
        parse_change_subject_name(load_csr(with_change_subject_name(csr, key, subject_alt=None)))
    assert empty.value.rule == "csr-change-subject-name"
    # a value that is an INTEGER, not a ChangeSubjectName
    from cryptography.hazmat.primitives.asymmetric import ec
    from pyasn1.codec.der import decoder
    from pyasn1_alt_modules import rfc2986, rfc6402

    request, _ = decoder.decode(
        load_csr(csr).public_bytes(Encoding.DER), asn1Spec=rfc2986.CertificationRequest()
    )
    attribute = rfc2986.Attribute()
    attribute["type"] = rfc6402.id_cmc_changeSubjectName
    attribute["values"].append(univ.Any(encoder.encode(univ.Integer(7))))
    request["certificationRequestInfo"]["attributes"].append(attribute)
    signature = key.sign(encoder.encode(request["certificationRequestInfo"]), ec.ECDSA(hashes.SHA256()))
    request["signature"] = univ.BitString.fromOctetString(signature)
    with pytest.raises(ParseError, match="not a ChangeSubjectName"):
        parse_change_subject_name(load_csr(encoder.encode(request)))
