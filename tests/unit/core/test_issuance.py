from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.core.csr import load_csr, validate_csr
from otward.core.extensions import MODBUS_ROLE_OID, decode_modbus_role
from otward.core.issuance import (
    BACKDATE,
    IssuanceRequest,
    build_ca_certificate,
    build_certificate,
    device_uri,
    plan_certificate,
    validate_serial_number,
)
from otward.core.keys import KeyType
from otward.core.profiles import BUILTIN_PROFILES
from otward.errors import InvalidRequestError, PolicyViolationError
from tests.conftest import build_csr, make_key
from tests.unit.core.conftest import NOW, make_ca

SERIAL = 0x1234_5678_9ABC_DEF0_1234_5678


def request(ca, csr_pem, profile, **kwargs):
    return IssuanceRequest(
        checked=validate_csr(load_csr(csr_pem)),
        profile=BUILTIN_PROFILES[profile],
        issuer=ca.info,
        now=NOW,
        **kwargs,
    )


def issue(ca, csr_pem, profile, **kwargs) -> x509.Certificate:
    req = request(ca, csr_pem, profile, **kwargs)
    builder = build_certificate(plan_certificate(req), req.checked.csr.public_key(), ca.info, SERIAL)
    return builder.sign(ca.key, hashes.SHA256())


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


# --- what each profile produces ------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa-2048", "ec-p256", "ec-p384"])
def test_firmware_signing_certificate(issuing_ca, key_type):
    cert = issue(issuing_ca, build_csr(make_key(key_type), cn="plc firmware signer"), "firmware-signing")
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
    usage = ext(cert, x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_encipherment
    assert cert.not_valid_after_utc == NOW + timedelta(days=1095)


@pytest.mark.parametrize("key_type", ["ed25519", "ec-p521"])
def test_firmware_signing_refuses_keys_firmware_manifests_refuse(issuing_ca, key_type):
    with pytest.raises((InvalidRequestError, PolicyViolationError), match=key_type):
        issue(issuing_ca, build_csr(make_key(key_type), cn="signer"), "firmware-signing")


def test_tls_server_certificate(issuing_ca):
    cert = issue(
        issuing_ca,
        build_csr(make_key(), cn="plc.plant.example", dns=("plc.plant.example",), ips=("10.1.1.1",)),
        "tls-server",
    )
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_encipherment  # EC key: no key transport
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    assert cert.serial_number == SERIAL


def test_tls_server_rsa_key_gets_key_encipherment(issuing_ca):
    cert = issue(issuing_ca, build_csr(make_key("rsa-2048"), cn=None, dns=("h.example",)), "tls-server")
    assert ext(cert, x509.KeyUsage).value.key_encipherment
    # empty subject: the SAN must be critical (RFC 5280 4.2.1.6)
    assert ext(cert, x509.SubjectAlternativeName).critical


def test_every_certificate_links_to_status_services(issuing_ca):
    cert = issue(issuing_ca, build_csr(make_key(), cn="op-1"), "tls-client")
    cdp = ext(cert, x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://127.0.0.1:8080/crl/issuing.crl")]
    aia = {d.access_method: d.access_location.value for d in ext(cert, x509.AuthorityInformationAccess).value}
    assert aia[x509.oid.AuthorityInformationAccessOID.OCSP] == "http://127.0.0.1:8080/ocsp"
    assert aia[x509.oid.AuthorityInformationAccessOID.CA_ISSUERS] == "http://127.0.0.1:8080/ca/issuing.crt"
    ca_ski = ext(issuing_ca.info.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_ski
    assert len(ext(cert, x509.SubjectKeyIdentifier).value.digest) == 20


def test_device_certificate_names_owner_and_device(issuing_ca):
    cert = issue(issuing_ca, build_csr(make_key(), cn="plc-0042"), "device", owner="acme")
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [device_uri("acme", "plc-0042")]
    assert device_uri("acme", "plc-0042") == "urn:otward:device:acme:plc-0042"


def test_device_certificate_needs_an_owner(issuing_ca):
    """Without one the CA's name was written as the owner; a device belongs to an owner."""
    with pytest.raises(InvalidRequestError, match="needs an owner") as caught:
        issue(issuing_ca, build_csr(make_key(), cn="plc-1"), "device")
    assert caught.value.rule == "device-owner"


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [
        ("rsa-2048", {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"}),
        ("ec-p256", {"digital_signature", "content_commitment", "key_agreement"}),
    ],
)
def test_opcua_application_certificate(issuing_ca, key_type, expected):
    csr = build_csr(
        make_key(key_type), cn="Boiler HMI", uris=("urn:plant:hmi:boiler",), dns=("hmi.plant.example",)
    )
    cert = issue(issuing_ca, csr, "opcua-application")
    ku = ext(cert, x509.KeyUsage).value
    names = {
        n
        for n in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
        if getattr(ku, n)
    }
    if ku.key_agreement:
        names.add("key_agreement")
    assert names == expected
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    ) == ["urn:plant:hmi:boiler"]


def test_modbus_role_certificate_carries_utf8_role(issuing_ca):
    cert = issue(issuing_ca, build_csr(make_key(), cn="eng-station-3"), "modbus-role", role="Operator")
    role_ext = cert.extensions.get_extension_for_oid(MODBUS_ROLE_OID)
    assert not role_ext.critical
    assert decode_modbus_role(role_ext.value.value) == "Operator"
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])


# --- refusals, each naming its rule ---------------------------------------------------------------

REFUSALS = [
    pytest.param("tls-server", dict(cn="h.example"), {}, "san-required", id="tls-server-without-san"),
    pytest.param(
        "tls-server",
        dict(cn="other.example", dns=("h.example",)),
        {},
        "subject-cn-in-san",
        id="tls-server-cn-not-in-san",
    ),
    pytest.param(
        "tls-server",
        dict(cn=None, dns=("h.example",), emails=("a@b.example",)),
        {},
        "san-type",
        id="tls-server-email-san",
    ),
    pytest.param("tls-server", dict(cn=None, dns=("bad_name.example",)), {}, "san-dns", id="invalid-dns"),
    pytest.param(
        "tls-client", dict(cn=None, dns=("h.example",)), {}, "subject-required", id="client-without-cn"
    ),
    pytest.param(
        "tls-client",
        dict(cn="a", uris=("urn:otward:device:x:y",)),
        {},
        "san-uri",
        id="client-spoofs-device-uri",
    ),
    pytest.param("tls-client", dict(cn="a", uris=("not a uri",)), {}, "san-uri", id="client-invalid-uri"),
    pytest.param("device", dict(cn="plc 1"), {}, "device-id", id="device-id-with-space"),
    pytest.param("device", dict(cn="plc-1", uris=("urn:x:y",)), {}, "san-type", id="device-with-uri"),
    pytest.param(
        "device", dict(cn="plc-1"), {"owner": "Bad Owner"}, "device-owner", id="device-owner-syntax"
    ),
    pytest.param(
        "device",
        dict(cn="plc-1", extra_subject=(x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),)),
        {},
        "subject-attribute",
        id="device-country",
    ),
    pytest.param(
        "opcua-application", dict(cn="x", dns=("h.example",)), {}, "san-required", id="opcua-without-uri"
    ),
    pytest.param(
        "opcua-application", dict(cn="x", uris=("urn:a:b",)), {}, "opcua-host-name", id="opcua-without-host"
    ),
    pytest.param(
        "opcua-application",
        dict(cn="x", uris=("urn:a:b", "urn:a:c"), dns=("h.example",)),
        {},
        "opcua-application-uri",
        id="opcua-two-uris",
    ),
    pytest.param("modbus-role", dict(cn="x"), {}, "role", id="modbus-without-role"),
    pytest.param(
        "modbus-role", dict(cn="x"), {"role": "bad\nrole"}, "modbus-role-syntax", id="modbus-bad-role"
    ),
    pytest.param("tls-client", dict(cn="x"), {"role": "Operator"}, "role", id="role-on-other-profile"),
    pytest.param("tls-client", dict(cn="x"), {"owner": "acme"}, "owner", id="owner-on-other-profile"),
    pytest.param("tls-client", dict(cn="x"), {"validity_days": 399}, "validity", id="validity-above-max"),
    pytest.param("tls-client", dict(cn="x"), {"validity_days": 0}, "validity", id="validity-zero"),
    pytest.param(
        "tls-client",
        dict(cn="x", extra_subject=(x509.NameAttribute(NameOID.COUNTRY_NAME, "de"),)),
        {},
        "subject-value",
        id="country-lower-case",
    ),
]


@pytest.mark.parametrize(("profile", "csr_args", "kwargs", "rule"), REFUSALS)
def test_profile_refusals_name_the_rule(issuing_ca, profile, csr_args, kwargs, rule):
    with pytest.raises((PolicyViolationError, InvalidRequestError)) as info:
        plan_certificate(request(issuing_ca, build_csr(make_key(), **csr_args), profile, **kwargs))
    assert info.value.rule == rule, info.value.message


def test_opcua_refuses_ed25519(issuing_ca):
    csr = build_csr(make_key("ed25519"), cn="x", uris=("urn:a:b",), dns=("h.example",))
    with pytest.raises(PolicyViolationError, match="key type 'ed25519' not allowed") as info:
        plan_certificate(request(issuing_ca, csr, "opcua-application"))
    assert info.value.rule == "key-type"


def test_name_constraints_are_enforced_before_signing(root_ca):
    plant = make_ca("plant-a", root_ca, permitted_dns=("plant-a.example",))
    inside = build_csr(make_key(), cn=None, dns=("plc.plant-a.example", "plant-a.example"))
    plan_certificate(request(plant, inside, "tls-server"))
    outside = build_csr(make_key(), cn=None, dns=("plc.plant-b.example",))
    with pytest.raises(PolicyViolationError, match="outside the name constraints") as info:
        plan_certificate(request(plant, outside, "tls-server"))
    assert info.value.rule == "name-constraints"


@pytest.mark.parametrize("days", [None, 100], ids=["profile-default", "explicit"])
def test_a_certificate_outliving_its_ca_is_refused_naming_both_dates(root_ca, days):
    short = make_ca("short", root_ca, lifetime=timedelta(days=30))
    csr = build_csr(make_key(), cn="x")
    with pytest.raises(PolicyViolationError) as info:
        plan_certificate(request(short, csr, "tls-client", validity_days=days))
    assert info.value.rule == "validity-issuer"
    ca_end = short.info.certificate.not_valid_after_utc
    assert f"CA 'short' expires on {ca_end:%Y-%m-%d %H:%M} UTC" in info.value.message
    wanted = NOW + timedelta(days=days or 365)
    assert f"valid until {wanted:%Y-%m-%d %H:%M} UTC" in info.value.message


def test_a_certificate_ending_with_its_ca_is_issued(root_ca):
    short = make_ca("short", root_ca, lifetime=timedelta(days=30))
    plan = plan_certificate(request(short, build_csr(make_key(), cn="x"), "tls-client", validity_days=29))
    assert plan.not_valid_after < short.info.certificate.not_valid_after_utc


def test_expired_ca_issues_nothing(root_ca):
    expired = make_ca("old", root_ca, lifetime=timedelta(days=-1) + timedelta(hours=1))
    req = request(expired, build_csr(make_key(), cn="x"), "tls-client")
    req = dataclasses.replace(req, now=NOW + timedelta(days=2))
    with pytest.raises(PolicyViolationError, match="expired"):
        plan_certificate(req)


@pytest.mark.parametrize(
    "serial", [0, -5, 1 << 159, 12345], ids=["zero", "negative", "21-octets", "too-few-bits"]
)
def test_bad_serial_numbers_are_refused(serial):
    with pytest.raises(InvalidRequestError):
        validate_serial_number(serial)


def test_profile_key_types_cover_every_key_type():
    assert BUILTIN_PROFILES["tls-client"].key_types == frozenset(KeyType)


@pytest.mark.parametrize(
    ("cn", "allowed"),
    [
        ("hmi.plant-a.example", True),
        ("hmi.plant-b.example", False),
        ("plc-0042.line-2", False),
        ("10.20.30.40", False),
        ("plc-0042", True),
        ("Boiler HMI", True),
    ],
)
def test_host_like_cn_is_checked_against_name_constraints_when_there_is_no_dns_san(root_ca, cn, allowed):
    plant = make_ca("plant-a", root_ca, permitted_dns=("plant-a.example",))
    req = request(plant, build_csr(make_key(), cn=cn), "tls-client")
    if allowed:
        plan_certificate(req)
    else:
        with pytest.raises(PolicyViolationError) as info:
            plan_certificate(req)
        assert info.value.rule == "name-constraints"


def test_ip_name_constraints(root_ca):
    import ipaddress

    key = make_key()
    builder = build_ca_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plant-ip CA")]),
        public_key=key.public_key(),
        serial_number=1 << 90,
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=365),
        path_length=0,
        issuer=root_ca.info,
        permitted_dns=("plant.example",),
        permitted_ip=(ipaddress.ip_network("10.20.0.0/16"),),
    )
    from otward.core.authority import AuthorityInfo, PublicationUrls

    cert = builder.sign(root_ca.key, hashes.SHA256())
    plant = type(root_ca)(
        AuthorityInfo("plant-ip", cert, PublicationUrls.for_ca("http://127.0.0.1:1", "plant-ip")), key
    )
    assert plant.info.permitted_ip == (ipaddress.ip_network("10.20.0.0/16"),)
    plan_certificate(
        request(
            plant, build_csr(make_key(), cn=None, dns=("h.plant.example",), ips=("10.20.1.2",)), "tls-server"
        )
    )
    for ip in ("10.21.0.1", "::1"):
        with pytest.raises(PolicyViolationError) as info:
            plan_certificate(
                request(
                    plant, build_csr(make_key(), cn=None, dns=("h.plant.example",), ips=(ip,)), "tls-server"
                )
            )
        assert info.value.rule == "name-constraints"


# --- subject and SAN bounds ----------------------------------------------------------------------


def _o(value: str) -> x509.NameAttribute:
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, value)


def _ou(value: str) -> x509.NameAttribute:
    return x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, value)


@pytest.mark.parametrize(
    ("profile", "csr_args", "kwargs", "rule"),
    [
        pytest.param(
            "device",
            dict(cn="plc-1", dns=tuple(f"n{i}.plant.example" for i in range(1000))),
            {"owner": "acme"},
            "san-count",
            id="device-1000-dns-sans",
        ),
        pytest.param(
            "tls-server",
            dict(cn=None, dns=tuple(f"n{i}.plant.example" for i in range(33))),
            {},
            "san-count",
            id="tls-server-33-sans",
        ),
        pytest.param(
            "tls-client",
            dict(cn="op", extra_subject=tuple(_o(f"org-{i}") for i in range(100))),
            {},
            "subject-repeated",
            id="100-organizations",
        ),
        pytest.param(
            "tls-client", dict(cn="op", extra_subject=(_o("a"), _o("a"))), {}, "subject-repeated", id="two-o"
        ),
        pytest.param(
            "tls-client",
            dict(cn="op", extra_subject=tuple(_ou(f"unit-{i}") for i in range(5))),
            {},
            "subject-repeated",
            id="five-ou",
        ),
    ],
)
def test_subject_repeats_and_san_count_are_bounded(issuing_ca, profile, csr_args, kwargs, rule):
    with pytest.raises(PolicyViolationError) as info:
        plan_certificate(request(issuing_ca, build_csr(make_key(), **csr_args), profile, **kwargs))
    assert info.value.rule == rule, info.value.message


def test_bounds_are_inclusive(issuing_ca):
    ous = tuple(_ou(f"unit-{i}") for i in range(4))
    plan = plan_certificate(
        request(issuing_ca, build_csr(make_key(), cn="op", extra_subject=ous), "tls-client")
    )
    assert len(plan.subject) == 5
    sans = tuple(f"n{i}.plant.example" for i in range(32))
    plan = plan_certificate(request(issuing_ca, build_csr(make_key(), cn=None, dns=sans), "tls-server"))
    assert len(plan.sans.dns) == 32


def test_max_sans_is_a_profile_setting(issuing_ca):
    from otward.core.profiles import apply_overrides

    wide = apply_overrides(BUILTIN_PROFILES, {"tls-server": {"max_sans": 100}})["tls-server"]
    sans = tuple(f"n{i}.plant.example" for i in range(100))
    req = dataclasses.replace(
        request(issuing_ca, build_csr(make_key(), cn=None, dns=sans), "tls-server"), profile=wide
    )
    assert len(plan_certificate(req).sans.dns) == 100


def test_a_uri_san_is_bounded_in_length(issuing_ca):
    csr = build_csr(make_key(), cn="hmi", uris=("urn:plant:" + "x" * 1100,), dns=("hmi.plant.example",))
    with pytest.raises(PolicyViolationError) as info:
        plan_certificate(request(issuing_ca, csr, "opcua-application"))
    assert info.value.rule == "san-uri"
