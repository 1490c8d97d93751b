"""Certification paths (otward.core.chain): the checks RFC 5280 §6 asks for, on EC and Ed25519 CAs."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from otward.core.chain import find_path, has_extended_key_usage, names_host

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _key(kind: str):  # type: ignore[no-untyped-def]
    return (
        ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(  # type: ignore[no-untyped-def]
    subject: str,
    key,
    issuer: x509.Certificate | None,
    issuer_key,
    *,
    ca: bool,
    path_length: int | None = None,
    key_cert_sign: bool | None = None,
    days: tuple[int, int] = (-1, 30),
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> x509.Certificate:
    sign_cert = key_cert_sign if key_cert_sign is not None else ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(not ca, False, False, False, False, sign_cert, ca, False, False), critical=True
        )
    )
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


@pytest.fixture(params=["ec-p256", "ed25519"])
def pki(request):  # type: ignore[no-untyped-def]
    kind = request.param
    root_key, issuing_key, leaf_key = _key(kind), _key(kind), _key(kind)
    root = issue("root", root_key, None, root_key, ca=True, path_length=1)
    issuing = issue("issuing", issuing_key, root, root_key, ca=True, path_length=0)
    leaf = issue("signer", leaf_key, issuing, issuing_key, ca=False)
    return kind, (root, root_key), (issuing, issuing_key), leaf


def test_a_path_through_an_intermediate_to_the_anchor(pki):
    _, (root, _), (issuing, _), leaf = pki
    assert find_path(leaf, [issuing], [root], NOW) == [leaf, issuing, root]


def test_no_path_to_an_anchor_the_caller_does_not_trust(pki):
    kind, _, (issuing, _), leaf = pki
    other_key = _key(kind)
    other = issue("root", other_key, None, other_key, ca=True)  # same name, other key
    assert find_path(leaf, [issuing], [other], NOW) is None


def test_a_forged_intermediate_with_the_right_name_is_left_behind(pki):
    kind, (root, _), (issuing, _), leaf = pki
    forged_key = _key(kind)
    forged = issue("issuing", forged_key, root, forged_key, ca=True)  # not signed by the root
    assert find_path(leaf, [forged, issuing], [root], NOW) == [leaf, issuing, root]
    assert find_path(leaf, [forged], [root], NOW) is None


def test_every_certificate_must_be_valid_at_the_time(pki):
    kind, (root, root_key), (issuing, _), leaf = pki
    assert find_path(leaf, [issuing], [root], NOW + timedelta(days=29)) is not None
    assert find_path(leaf, [issuing], [root], NOW + timedelta(days=31)) is None
    assert find_path(leaf, [issuing], [root], NOW - timedelta(days=2)) is None
    short_key = _key(kind)  # the intermediate alone ends before the leaf does
    short = issue("issuing", short_key, root, root_key, ca=True, path_length=0, days=(-1, 5))
    long_leaf = issue("signer", _key(kind), short, short_key, ca=False)
    assert find_path(long_leaf, [short], [root], NOW + timedelta(days=4)) is not None
    assert find_path(long_leaf, [short], [root], NOW + timedelta(days=6)) is None


def test_path_length_and_key_cert_sign_are_enforced(pki):
    kind, (root, root_key), (issuing, issuing_key), _ = pki
    sub_key, leaf_key = _key(kind), _key(kind)
    sub = issue("sub", sub_key, issuing, issuing_key, ca=True)  # issuing has pathLen 0
    leaf = issue("deep", leaf_key, sub, sub_key, ca=False)
    assert find_path(leaf, [sub, issuing], [root], NOW) is None
    no_sign_key = _key(kind)
    no_sign = issue("no-sign", no_sign_key, root, root_key, ca=True, key_cert_sign=False)
    leaf2 = issue("x", _key(kind), no_sign, no_sign_key, ca=False)
    assert find_path(leaf2, [no_sign], [root], NOW) is None
    not_ca_key = _key(kind)
    not_ca = issue("not-ca", not_ca_key, root, root_key, ca=False, key_cert_sign=True)
    leaf3 = issue("y", _key(kind), not_ca, not_ca_key, ca=False)
    assert find_path(leaf3, [not_ca], [root], NOW) is None


def test_an_unknown_critical_extension_anywhere_on_the_path_is_refused(pki):
    kind, (root, root_key), _, _ = pki
    unknown = (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.32473.99"), b"\x05\x00"), True)
    odd_key = _key(kind)
    odd_ca = issue("odd", odd_key, root, root_key, ca=True, extra=(unknown,))
    leaf = issue("z", _key(kind), odd_ca, odd_key, ca=False)
    assert find_path(leaf, [odd_ca], [root], NOW) is None
    plain_key = _key(kind)
    plain = issue("plain", plain_key, root, root_key, ca=True)
    odd_leaf = issue("w", _key(kind), plain, plain_key, ca=False, extra=(unknown,))
    assert find_path(odd_leaf, [plain], [root], NOW) is None
    fine_leaf = issue("v", _key(kind), plain, plain_key, ca=False, extra=((unknown[0], False),))
    assert find_path(fine_leaf, [plain], [root], NOW) is not None


def test_name_constraints_of_an_issuer_hold_for_the_leafs_dns_and_ip_names(pki):
    kind, (root, root_key), _, _ = pki
    constrained_key = _key(kind)
    constraints = x509.NameConstraints(
        permitted_subtrees=[
            x509.DNSName("plant-b.example"),
            x509.IPAddress(ipaddress.ip_network("10.20.0.0/16")),
        ],
        excluded_subtrees=[x509.DNSName("secret.plant-b.example")],
    )
    ca = issue("plant-b", constrained_key, root, root_key, ca=True, extra=((constraints, True),))

    def leaf(**names):  # type: ignore[no-untyped-def]
        return issue("l", _key(kind), ca, constrained_key, ca=False, **names)

    assert find_path(leaf(dns=("hmi.plant-b.example",), ips=("10.20.1.2",)), [ca], [root], NOW)
    assert find_path(leaf(), [ca], [root], NOW)  # no names of the constrained forms
    assert find_path(leaf(dns=("hmi.plant-a.example",)), [ca], [root], NOW) is None
    assert find_path(leaf(ips=("10.30.1.2",)), [ca], [root], NOW) is None
    assert find_path(leaf(dns=("db.secret.plant-b.example",)), [ca], [root], NOW) is None
    other_forms = x509.NameConstraints(
        permitted_subtrees=[x509.RFC822Name("plant-b.example")], excluded_subtrees=None
    )
    mail_ca = issue("mail", constrained_key, root, root_key, ca=True, extra=((other_forms, True),))
    assert (
        find_path(issue("m", _key(kind), mail_ca, constrained_key, ca=False), [mail_ca], [root], NOW) is None
    )


def test_a_loop_of_cross_signed_cas_ends(pki):
    kind, (root, _), _, _ = pki
    a_key, b_key = _key(kind), _key(kind)
    b_self = issue("b", b_key, None, b_key, ca=True)
    a = issue("a", a_key, b_self, b_key, ca=True)  # a issued by b ...
    b = issue("b", b_key, a, a_key, ca=True)  # ... and b by a: a cycle that reaches no anchor
    leaf = issue("leaf", _key(kind), a, a_key, ca=False)
    assert find_path(leaf, [a, b, b_self], [root], NOW) is None


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("pki.plant.example", True),
        ("PKI.Plant.Example", True),
        ("hmi.line-2.plant.example", True),  # *.line-2.plant.example
        ("a.b.line-2.plant.example", False),  # the wildcard stands for one label only
        ("line-2.plant.example", False),
        ("10.20.30.40", True),
        ("10.20.30.41", False),
        ("other.example", False),
    ],
)
def test_a_host_is_named_by_a_dns_or_ip_san(pki, host, named):
    kind, (root, root_key), _, _ = pki
    server = issue(
        "ignored-cn", _key(kind), root, root_key, ca=False,
        dns=("pki.plant.example", "*.line-2.plant.example"), ips=("10.20.30.40",),
    )  # fmt: skip
    assert names_host(server, host) is named


def test_the_extended_key_usage_is_read_as_rfc_5280_says(pki):
    kind, (root, root_key), _, _ = pki
    server_auth = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    server = issue("s", _key(kind), root, root_key, ca=False, extra=((server_auth, False),))
    assert has_extended_key_usage(server, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
    assert not has_extended_key_usage(server, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    unrestricted = issue("u", _key(kind), root, root_key, ca=False)  # no EKU: any purpose
    assert has_extended_key_usage(unrestricted, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
