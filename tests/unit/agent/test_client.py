"""The agent's client without a network: server pinning, EST bodies, problem+json errors."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.agent.client import (
    EstClient,
    EstError,
    PinMismatchError,
    client_context,
    proxy_url,
    redacted_proxy,
    validate_pin,
    verify_server_chain,
)
from otward.core.attestation import ChallengePurpose
from otward.core.keys import spki_pin
from otward.errors import AuthenticationError, InvalidRequestError, ParseError
from tests.unit.core import conftest as core
from tests.unit.core.conftest import NOW, make_ca

HOST = "127.0.0.1"
HOST_SAN = x509.IPAddress(ipaddress.ip_address(HOST))


@pytest.fixture(scope="module")
def root() -> core.TestCa:
    return make_ca("root", path_length=None)


@pytest.fixture(scope="module")
def issuing(root: core.TestCa) -> core.TestCa:
    return make_ca("issuing", root)


def issue(
    issuer: core.TestCa,
    public_key: ec.EllipticCurvePublicKey,
    *,
    cn: str = "otward",
    san: x509.GeneralName = HOST_SAN,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH,
) -> x509.Certificate:
    ca = issuer.info.certificate
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(hours=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
        .sign(issuer.key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def leaf(issuing: core.TestCa, leaf_key) -> x509.Certificate:
    return issue(issuing, leaf_key.public_key())


def pin_of(certificate: x509.Certificate) -> str:
    return spki_pin(certificate.public_key())


# --- pinning ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pinned", ["root", "issuing", "leaf"])
def test_a_pin_on_any_key_of_the_verified_chain_is_accepted(root, issuing, leaf, pinned):
    by_name = {"root": root.info.certificate, "issuing": issuing.info.certificate, "leaf": leaf}
    cacerts = [issuing.info.certificate, root.info.certificate]
    chain = verify_server_chain(leaf, cacerts, HOST, pin_of(by_name[pinned]), NOW)
    assert chain == [leaf, issuing.info.certificate, root.info.certificate]


def test_a_wrong_pin_is_refused_and_named(root, issuing, leaf):
    wrong = spki_pin(ec.generate_private_key(ec.SECP256R1()).public_key())
    with pytest.raises(PinMismatchError) as info:
        verify_server_chain(leaf, [issuing.info.certificate, root.info.certificate], HOST, wrong, NOW)
    assert info.value.rule == "server-pin"
    assert "pin mismatch" in info.value.message
    assert wrong in info.value.message
    assert pin_of(root.info.certificate) in info.value.message  # what the server offered instead


def test_a_pin_on_a_certificate_off_the_chain_is_refused(root, issuing, leaf):
    """cacerts may carry more than the chain; only keys the leaf actually chains through count."""
    stranger = make_ca("stranger", path_length=None)
    cacerts = [issuing.info.certificate, root.info.certificate, stranger.info.certificate]
    with pytest.raises(PinMismatchError):
        verify_server_chain(leaf, cacerts, HOST, pin_of(stranger.info.certificate), NOW)


def test_a_leaf_that_does_not_chain_is_refused_even_when_pinned(root, issuing, leaf_key):
    """The pin alone is not enough: the server certificate must chain to the CA certificates
    the agent will trust from now on, else those would be unchecked."""
    other = make_ca("other-issuing", make_ca("other-root", path_length=None))
    foreign = issue(other, leaf_key.public_key())
    with pytest.raises(AuthenticationError) as info:
        verify_server_chain(
            foreign, [issuing.info.certificate, root.info.certificate], HOST, pin_of(foreign), NOW
        )
    assert info.value.rule == "server-chain"
    assert not isinstance(info.value, PinMismatchError)


@pytest.mark.parametrize(
    ("host", "san", "usage"),
    [
        pytest.param("192.0.2.1", None, None, id="other-ip"),
        pytest.param("pki.example", x509.DNSName("other.example"), None, id="other-dns-name"),
        pytest.param(HOST, None, ExtendedKeyUsageOID.CLIENT_AUTH, id="not-a-server-certificate"),
    ],
)
def test_a_leaf_for_another_host_or_purpose_is_refused(root, issuing, leaf_key, host, san, usage):
    options = {"san": san} if san is not None else {}
    if usage is not None:
        options["usage"] = usage
    certificate = issue(issuing, leaf_key.public_key(), **options)
    with pytest.raises(AuthenticationError) as info:
        verify_server_chain(
            certificate, [issuing.info.certificate, root.info.certificate], host, pin_of(certificate), NOW
        )
    assert info.value.rule == "server-chain"


def test_a_dns_host_name_is_verified_as_such(root, issuing, leaf_key):
    certificate = issue(issuing, leaf_key.public_key(), san=x509.DNSName("pki.example"))
    chain = verify_server_chain(
        certificate,
        [issuing.info.certificate, root.info.certificate],
        "pki.example",
        pin_of(root.info.certificate),
        NOW,
    )
    assert chain[-1] == root.info.certificate


def test_cacerts_without_a_root_are_refused(root, issuing, leaf):
    with pytest.raises(AuthenticationError, match="no root"):
        verify_server_chain(leaf, [issuing.info.certificate], HOST, pin_of(leaf), NOW)


def test_an_expired_server_certificate_is_refused(root, issuing, leaf):
    with pytest.raises(AuthenticationError) as info:
        verify_server_chain(
            leaf,
            [issuing.info.certificate, root.info.certificate],
            HOST,
            pin_of(leaf),
            NOW + timedelta(days=31),
        )
    assert info.value.rule == "server-chain"


@pytest.mark.parametrize(
    "pin",
    [
        "",
        "sha256/",
        "sha1/" + "A" * 27 + "=",
        "sha256/not-base64!",
        "sha256/" + base64.b64encode(b"x" * 31).decode(),
    ],
    ids=["empty", "no-digest", "sha1", "not-base64", "short-digest"],
)
def test_malformed_pins_are_refused(pin):
    with pytest.raises(InvalidRequestError) as info:
        validate_pin(pin)
    assert info.value.rule == "pin-format"


def test_client_context_trusts_only_the_given_cas_with_tls_1_2_minimum(root):
    import ssl

    context = client_context(root.info.certificate.public_bytes(Encoding.PEM))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.get_ca_certs(binary_form=True) == [root.info.certificate.public_bytes(Encoding.DER)]


# --- EST and device API over a transport -----------------------------------------------------------


def csr_for(key: ec.EllipticCurvePrivateKey, cn: str = "plc-7") -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())
    )


def pkcs7_body(certificates: list[x509.Certificate]) -> bytes:
    encoded = base64.b64encode(pkcs7.serialize_certificates(certificates, Encoding.DER))
    return b"\r\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)) + b"\r\n"


def client_for(root: core.TestCa, handler) -> EstClient:
    return EstClient(
        "https://127.0.0.1:8443/ignored/path",
        root.info.certificate.public_bytes(Encoding.PEM),
        transport=httpx.MockTransport(handler),
    )


def problem(
    status: int, detail: str, rule: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"type": "urn:otward:problem:x", "title": "x", "status": status, "detail": detail}
    if rule:
        body["rule"] = rule
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/problem+json", **(headers or {})},
    )


def test_simple_enroll_sends_base64_der_with_a_bearer_token(root, issuing):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = csr_for(key)
    issued = issue(issuing, key.public_key(), cn="plc-7", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            content=pkcs7_body([issued]),
            headers={"Content-Type": "application/pkcs7-mime; smime-type=certs-only"},
        )

    with client_for(root, handler) as client:
        assert client.simple_enroll(csr, "otwe_abc_secret") == issued
    (request,) = seen
    assert str(request.url) == "https://127.0.0.1:8443/.well-known/est/simpleenroll"
    assert request.headers["content-type"] == "application/pkcs10"
    assert request.headers["authorization"] == "Bearer otwe_abc_secret"
    assert x509.load_der_x509_csr(base64.b64decode(request.content)) == csr


def test_a_certificate_for_another_key_is_refused(root, issuing):
    other = issue(issuing, ec.generate_private_key(ec.SECP256R1()).public_key())

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=pkcs7_body([other]), headers={"Content-Type": "application/pkcs7-mime"}
        )

    with client_for(root, handler) as client, pytest.raises(ParseError) as info:
        client.simple_enroll(csr_for(ec.generate_private_key(ec.SECP256R1())), "t")
    assert info.value.rule == "issued-key"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("text/html", b"<html>", id="wrong-media-type"),
        pytest.param("application/pkcs7-mime", b"!!not base64!!", id="not-base64"),
        pytest.param("application/pkcs7-mime", base64.b64encode(b"\x30\x03\x02\x01\x00"), id="not-pkcs7"),
    ],
)
def test_unreadable_est_answers_are_parse_errors(root, content_type, body):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    with client_for(root, handler) as client, pytest.raises(ParseError):
        client.cacerts()


def test_problem_json_becomes_an_est_error_with_rule_and_retry_after(root):
    def handler(request: httpx.Request) -> httpx.Response:
        return problem(429, "too many failed attempts", "rate-limit", {"Retry-After": "17"})

    with client_for(root, handler) as client, pytest.raises(EstError) as info:
        client.simple_enroll(csr_for(ec.generate_private_key(ec.SECP256R1())), "otwe_abc_secret")
    error = info.value
    assert (error.status, error.detail, error.rule, error.retry_after) == (
        429,
        "too many failed attempts",
        "rate-limit",
        17.0,
    )
    assert "secret" not in str(error)


def test_retry_after_as_an_http_date(root):
    when = format_datetime(NOW.replace(year=2100), usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        return problem(503, "busy", None, {"Retry-After": when})

    with client_for(root, handler) as client, pytest.raises(EstError) as info:
        client.cacerts()
    assert info.value.retry_after is not None
    assert info.value.retry_after > 0
    assert info.value.rule is None


def test_an_error_without_problem_json_keeps_the_status(root):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"})

    with client_for(root, handler) as client, pytest.raises(EstError) as info:
        client.cacerts()
    assert info.value.status == 502
    assert info.value.detail == "Bad Gateway"


def test_challenge_and_attest_speak_the_device_api(root):
    nonce = bytes(range(32))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/challenge"):
            return httpx.Response(
                201,
                json={
                    "challenge_id": "ch-1",
                    "nonce": base64.urlsafe_b64encode(nonce).rstrip(b"=").decode(),
                    "purpose": "renew",
                    "expires_at": "2026-11-22T12:01:00Z",
                },
            )
        return httpx.Response(
            200,
            json={"device_id": "plc/7", "result": "passed", "serial": "ab12", "renewal_token": "otwr_x_y"},
        )

    with client_for(root, handler) as client:
        challenge = client.challenge("plc/7", ChallengePurpose.RENEW)
        result = client.attest("plc/7", challenge.challenge_id, b"\xff\xfe signature")
    assert challenge.nonce == nonce
    assert challenge.purpose is ChallengePurpose.RENEW
    assert challenge.expires_at == NOW + timedelta(minutes=1)
    assert (result.result, result.serial, result.renewal_token) == ("passed", "ab12", "otwr_x_y")
    assert "otwr_x_y" not in repr(result)
    assert seen[0].url.raw_path == b"/api/v1/devices/plc%2F7/challenge"
    assert json.loads(seen[0].content) == {"purpose": "renew"}
    assert json.loads(seen[1].content) == {
        "challenge_id": "ch-1",
        "signature": base64.urlsafe_b64encode(b"\xff\xfe signature").rstrip(b"=").decode(),
    }


def test_a_malformed_challenge_is_a_parse_error(root):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"challenge_id": "ch-1"})

    with client_for(root, handler) as client, pytest.raises(ParseError):
        client.challenge("plc-7", ChallengePurpose.ATTEST)


def test_network_failures_become_backend_errors(root):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    from otward.errors import BackendError

    with client_for(root, handler) as client, pytest.raises(BackendError) as info:
        client.cacerts()
    assert info.value.rule == "server-unreachable"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8443", "ftp://x", "https://", "not a url"])
def test_only_https_server_urls_are_accepted(root, url):
    with pytest.raises(InvalidRequestError):
        EstClient(url, root.info.certificate.public_bytes(Encoding.PEM))


def test_proxy_urls_are_checked_and_shown_without_their_password():
    assert proxy_url(None) is None
    assert proxy_url("http://proxy.plant:3128") == "http://proxy.plant:3128"
    for bad in ("socks5://proxy:1080", "http://proxy:3128/path", "proxy:3128", "http://"):
        with pytest.raises(InvalidRequestError) as info:
            proxy_url(bad)
        assert info.value.rule == "proxy-url"
    with pytest.raises(InvalidRequestError) as info:
        proxy_url("ftp://gw:s3cret@proxy:21")
    assert "s3cret" not in info.value.message
    assert redacted_proxy("http://gw:s3cret@proxy:3128") == "http://gw:***@proxy:3128"
    assert redacted_proxy("http://proxy:3128") == "http://proxy:3128"
    assert redacted_proxy(None) is None


# --- found by the fuzz target (tests/fuzz/agent/test_client.py) ---------------------------------


@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("application/problem+json", b'{"detail":' * 50_000 + b"1" + b"}" * 50_000),
        ("application/json", b"[" * 100_000 + b"]" * 100_000),
    ],
    ids=["problem", "answer"],
)
def test_json_nested_beyond_the_recursion_limit_is_not_json(root, media, body):
    """json.loads raises RecursionError, which is not a ValueError."""

    def handler(request: httpx.Request) -> httpx.Response:
        status = 403 if media == "application/problem+json" else 200
        return httpx.Response(status, content=body, headers={"content-type": media})

    with client_for(root, handler) as client:
        if media == "application/problem+json":
            with pytest.raises(EstError) as info:
                client.cacerts()
            assert info.value.status == 403
        else:
            with pytest.raises(ParseError, match="not a JSON object"):
                client.challenge("plc-7", ChallengePurpose.ATTEST)


def test_a_pkcs7_answer_that_is_not_signed_data_is_a_parse_error(root):
    """cryptography raises UnsupportedAlgorithm (not a ValueError) for other PKCS#7 content types."""
    data = base64.b64encode(bytes.fromhex("300b06092a864886f70d010701"))  # ContentInfo, id-data

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=data, headers={"content-type": "application/pkcs7-mime"})

    with client_for(root, handler) as client, pytest.raises(ParseError, match="unreadable"):
        client.cacerts()


def test_a_returned_certificate_with_an_unreadable_key_is_not_the_requested_one(root, issuing):
    """certificate.public_key() raises ValueError for a point that is not on the curve."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(issue(issuing, key.public_key()).public_bytes(Encoding.DER))
    point = der.index(key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
    der[point] = 0x05  # not an uncompressed (04) point
    broken = x509.load_der_x509_certificate(bytes(der))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=pkcs7_body([broken]), headers={"content-type": "application/pkcs7-mime"}
        )

    with client_for(root, handler) as client, pytest.raises(ParseError) as info:
        client.simple_enroll(csr_for(key), "otwe_abc_secret")
    assert info.value.rule == "issued-key"


def _with_unreadable_cn(certificate: x509.Certificate) -> x509.Certificate:
    """``certificate`` with its first CN (the issuer's) retyped as a BIT STRING: it still loads, but
    cryptography raises TypeError when the name is first read."""
    der = certificate.public_bytes(Encoding.DER)
    cn = der.index(b"\x06\x03\x55\x04\x03\x0c")
    return x509.load_der_x509_certificate(der[: cn + 5] + b"\x03" + der[cn + 6 :])


@pytest.mark.parametrize("which", ["leaf", "issuing", "root"])
def test_server_certificates_that_cannot_be_read_are_refused_not_raised(root, issuing, leaf, which):
    """A hostile server's certificates at bootstrap (found for bundles and CRLs by the fuzzers): a name
    cryptography cannot read is a refused chain, never a TypeError out of the agent."""
    chain = {"leaf": leaf, "issuing": issuing.info.certificate, "root": root.info.certificate}
    chain[which] = _with_unreadable_cn(chain[which])
    with pytest.raises(AuthenticationError) as refused:
        verify_server_chain(
            chain["leaf"], [chain["issuing"], chain["root"]], HOST, pin_of(root.info.certificate), NOW
        )
    assert refused.value.rule == "server-chain"
