from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.errors import ParseError, PolicyViolationError
from otward.gateway.revocation import (
    RevocationChecker,
    StalePolicy,
    _cache_name,
    chain_keys,
    load_crl,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass
class Ca:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def crl(self, *serials: int, number: int = 1, next_update: datetime | None = None) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(NOW - timedelta(hours=1))
            .next_update(next_update or NOW + timedelta(days=7))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _certificate(name: str, issuer: Ca | None, *, ca: bool, serial: int) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return Ca(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def cas() -> tuple[Ca, Ca, Ca]:
    root = _certificate("Root", None, ca=True, serial=1)
    issuing = _certificate("Issuing", root, ca=True, serial=2)
    leaf = _certificate("plc-1", issuing, ca=False, serial=1000)
    return root, issuing, leaf


def test_crl_is_verified_and_indexed(cas):
    root, issuing, _leaf = cas
    index = load_crl(issuing.crl(1000, 1001, number=5), [root.certificate, issuing.certificate])
    assert index.serials == {1000, 1001}
    assert index.crl_number == 5
    assert index.issuer == issuing.certificate.subject.public_bytes()
    pem = x509.load_der_x509_crl(issuing.crl()).public_bytes(serialization.Encoding.PEM)
    assert load_crl(pem, [issuing.certificate]).serials == frozenset()


def test_crl_from_an_untrusted_issuer_or_with_a_bad_signature_is_refused(cas):
    root, issuing, _ = cas
    with pytest.raises(PolicyViolationError, match="not a certificate of the trust file"):
        load_crl(issuing.crl(), [root.certificate])
    impostor = Ca(issuing.certificate, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(PolicyViolationError, match="does not verify"):
        load_crl(impostor.crl(), [root.certificate, issuing.certificate])
    with pytest.raises(ParseError):
        load_crl(b"not a crl", [issuing.certificate])


def test_chain_keys_climb_the_trusted_cas(cas):
    root, issuing, leaf = cas
    keys = chain_keys(leaf.certificate, [root.certificate, issuing.certificate])
    assert keys == (
        (issuing.certificate.subject.public_bytes(), 1000),
        (root.certificate.subject.public_bytes(), 2),
    )
    assert chain_keys(leaf.certificate, [root.certificate]) == keys[:1]


def _checker(cas, **kwargs) -> RevocationChecker:
    root, issuing, _ = cas
    return RevocationChecker(
        [root.certificate, issuing.certificate], ["http://ca/crl/issuing.crl"], clock=lambda: NOW, **kwargs
    )


def test_verdicts(cas):
    root, issuing, leaf = cas
    keys = chain_keys(leaf.certificate, [root.certificate, issuing.certificate])
    assert RevocationChecker([root.certificate], []).check(keys).ok  # no URL: not checked
    checker = _checker(cas)
    unknown = checker.check(keys)
    assert not unknown.ok
    assert "revocation status unknown" in unknown.reason
    checker.install(load_crl(issuing.crl(number=1), [issuing.certificate]))
    assert checker.check(keys).ok
    checker.install(load_crl(issuing.crl(1000, number=2), [issuing.certificate]))
    revoked = checker.check(keys)
    assert not revoked.ok
    assert "certificate 3e8 is revoked" in revoked.reason
    # the issuing CA revoked by the root
    other = _checker(cas)
    other.install(load_crl(issuing.crl(number=1), [issuing.certificate]))
    other.install(load_crl(root.crl(2), [root.certificate]))
    assert "issuing CA certificate 2 is revoked" in other.check(keys).reason


def test_an_older_crl_never_replaces_a_newer_one(cas):
    _, issuing, _leaf = cas
    checker = _checker(cas)
    assert checker.install(load_crl(issuing.crl(1000, number=7), [issuing.certificate]))
    assert not checker.install(load_crl(issuing.crl(number=6), [issuing.certificate]))  # would un-revoke
    assert not checker.install(load_crl(issuing.crl(number=7), [issuing.certificate]))
    assert 1000 in checker.indexes[issuing.certificate.subject.public_bytes()].serials


@pytest.mark.parametrize(("policy", "admitted"), [(StalePolicy.KEEP, True), (StalePolicy.FAIL_CLOSED, False)])
def test_a_stale_crl(cas, policy, admitted):
    root, issuing, leaf = cas
    warnings: list[str] = []
    checker = _checker(cas, stale=policy, warn=warnings.append)
    checker.install(load_crl(issuing.crl(next_update=NOW - timedelta(hours=1)), [issuing.certificate]))
    keys = chain_keys(leaf.certificate, [root.certificate, issuing.certificate])
    assert checker.check(keys).ok is admitted
    assert checker.check(keys).ok is admitted
    assert len(warnings) == 1  # once per CRL, not per connection
    assert "past its nextUpdate" in warnings[0]


def test_refresh_installs_caches_and_survives_failures(cas, tmp_path):
    root, issuing, leaf = cas
    responses = [httpx.Response(200, content=issuing.crl(1000, number=3))]
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return responses[0]

    cache = tmp_path / "cache"
    checker = _checker(cas, cache_dir=cache)

    async def refresh() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await checker.refresh(client)

    assert asyncio.run(refresh()) == []
    generation = checker.generation
    stored = cache / _cache_name("http://ca/crl/issuing.crl")
    assert stored.stat().st_mode & 0o777 == 0o600
    assert asyncio.run(refresh()) == []  # unchanged: not installed again
    assert checker.generation == generation
    for bad, problem in [
        (httpx.Response(500), "HTTP 500"),
        (httpx.Response(200, content=b"garbage"), "refused"),
        (httpx.Response(200, content=Ca(issuing.certificate, root.key).crl()), "does not verify"),
    ]:
        responses[0] = bad
        (message,) = asyncio.run(refresh())
        assert problem in message
    keys = chain_keys(leaf.certificate, [root.certificate, issuing.certificate])
    assert not checker.check(keys).ok  # the last good CRL is still in force

    restarted = _checker(cas, cache_dir=cache)
    assert restarted.load_cache() == []
    assert "revoked" in restarted.check(keys).reason


def test_a_damaged_cache_is_reported_not_trusted(cas, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / _cache_name("http://ca/crl/issuing.crl")).write_bytes(b"junk")
    checker = _checker(cas, cache_dir=cache)
    (problem,) = checker.load_cache()
    assert "cached CRL" in problem
    assert checker.indexes == {}


def test_unreachable_crl_is_a_problem_not_an_exception(cas):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    checker = _checker(cas)

    async def refresh() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await checker.refresh(client)

    (problem,) = asyncio.run(refresh())
    assert "cannot fetch" in problem


def test_precomputed_chains_match_the_walk(cas):
    from otward.gateway.identity import ca_chains, peer_identity

    root, issuing, leaf = cas
    trusted = [root.certificate, issuing.certificate]
    der = leaf.certificate.public_bytes(serialization.Encoding.DER)
    walked = peer_identity(der, trusted)
    assert peer_identity(der, trusted, ca_chains(trusted)) == walked
    assert walked.chain == chain_keys(leaf.certificate, trusted)
    assert ca_chains(trusted)[root.certificate.subject.public_bytes()] == ()


# --- found by the fuzz target (tests/fuzz/gateway/test_revocation.py) ---------------------------


def test_a_crl_version_other_than_v1_or_v2_is_a_parse_error(cas):
    """cryptography raises InvalidVersion (not a ValueError) while loading."""
    _, issuing, _ = cas
    der = issuing.crl(5)
    version = der.index(b"\x02\x01\x01")  # the first INTEGER: the TBSCertList's version, v2
    assert version < 8
    with pytest.raises(ParseError) as info:
        load_crl(der[: version + 2] + b"\x05" + der[version + 3 :], [issuing.certificate])
    assert info.value.rule == "crl-parse"


def test_a_signed_crl_with_a_malformed_extension_is_refused_at_load(cas):
    """cryptography parses a CRL's extensions when they are first read: a CRL number that is a SET
    passed the load and raised a ValueError where the gateway read it (the refresh loop)."""
    _, issuing, _ = cas
    der = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.certificate.subject)
        .last_update(NOW - timedelta(hours=1))
        .next_update(NOW + timedelta(days=7))
        .add_extension(
            x509.UnrecognizedExtension(x509.oid.ExtensionOID.CRL_NUMBER, b"\x31\x00"), critical=False
        )
        .sign(issuing.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(ParseError, match="malformed") as info:
        load_crl(der, [issuing.certificate])
    assert info.value.rule == "crl-parse"
    checker = RevocationChecker([issuing.certificate], ["http://crl.example/issuing.crl"])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=der))

    async def refresh() -> list[str]:
        async with httpx.AsyncClient(transport=transport) as client:
            return await checker.refresh(client)

    assert "malformed" in asyncio.run(refresh())[0]


def test_a_crl_issuer_attribute_of_a_type_cryptography_refuses_is_a_parse_error(cas):
    """Found by scripts/fuzz-deep (Atheris, target crl): a CN as BIT STRING made cryptography raise
    TypeError when the issuer was read."""
    _, issuing, _ = cas
    der = issuing.crl(5)
    assert der.count(b"\x0c\x07Issuing") == 1
    with pytest.raises(ParseError) as info:
        load_crl(der.replace(b"\x0c\x07Issuing", b"\x03\x07Issuing"), [issuing.certificate])
    assert info.value.rule == "crl-parse"
