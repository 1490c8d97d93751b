"""The pure parts of the edge gatekeeper: claims, the signed message, nonces, the order of checks,
and the JWS layer on a throwaway CA (no database, no files)."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otward.core.access.decision import Decision
from otward.core.edge.exchange import NonceBook, evaluate
from otward.core.edge.formats import (
    CREDENTIAL_TYPE,
    EDGE_SIGNING_OID,
    BundleClaims,
    CredentialClaims,
    answer_message,
    certificate_thumbprint,
    jwk_thumbprint,
    verify_signer_chain,
)
from otward.core.issuance import build_signer_certificate, service_subject
from otward.edge.tokens import TokenVerifier, holder_jwk, sign_bundle, sign_credential
from otward.errors import OtwardError, ParseError, PolicyViolationError

from ..conftest import NOW, make_ca

SKEW = timedelta(seconds=60)
SLICE = {
    "site": "s",
    "timezone": "UTC",
    "asset": "door-1",
    "functions": ["enter"],
    "policies": "",
    "entities": [],
}


def _credential(**changes: object) -> CredentialClaims:
    values: dict[str, object] = {
        "credential_id": "0" * 32,
        "person": "carla",
        "issued_at": NOW,
        "not_before": NOW,
        "expires_at": NOW + timedelta(hours=1),
        "holder_jwk": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"},
    }
    values.update(changes)
    return CredentialClaims(**values)  # type: ignore[arg-type]


def _install(verifier: TokenVerifier, token: str, at: datetime) -> tuple[str, ...]:
    """What a gatekeeper does with a bundle it accepts: verify it, then take its signers."""
    return verifier.trust_bundle_signers(verifier.verify_bundle(token, at), at)


def _bundle(**changes: object) -> BundleClaims:
    values: dict[str, object] = {
        "asset": "door-1",
        "version": 3,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(days=1),
        "slice": SLICE,
        "revoked": frozenset(),
        "fail_open": frozenset(),
    }
    values.update(changes)
    return BundleClaims(**values)  # type: ignore[arg-type]


def test_answer_message_is_domain_separated_and_unambiguous():
    message = answer_message("door-1", "enter", b"\x00" * 32)
    assert message == b"otward-edge-access-v1\ndoor-1\nenter\n" + b"\x00" * 32
    assert answer_message("door-1", "enter", b"n" * 32) != answer_message("door-1", "ente", b"rn" * 16)
    with pytest.raises(ParseError):
        answer_message("door\n1", "enter", b"n" * 32)


def test_claims_round_trip_and_strict_parsing():
    bundle = _bundle(
        revoked=frozenset({"a" * 32}),
        fail_open=frozenset({"enter"}),
        signers=("MIIB",),
        revoked_signers=frozenset({"t" * 43}),
    )
    assert BundleClaims.from_payload(bundle.to_payload()) == bundle
    credential = _credential()
    assert CredentialClaims.from_payload(credential.to_payload()) == credential
    extra = {**bundle.to_payload(), "admin": True}
    with pytest.raises(ParseError, match="unexpected claims"):
        BundleClaims.from_payload(extra)
    for key, value in (
        ("ver", 0),
        ("ver", True),
        ("iat", "now"),
        ("slice", []),
        ("revoked", "x"),
        ("signers", "MIIB"),
        ("signers", [1]),
        ("signers", ["x"] * 17),
        ("revoked_signers", [""]),
    ):
        with pytest.raises(ParseError):
            BundleClaims.from_payload({**bundle.to_payload(), key: value})
    with pytest.raises(ParseError):
        CredentialClaims.from_payload({**credential.to_payload(), "cnf": {"jwk": {}, "x5t": "a"}})
    with pytest.raises(ParseError):
        CredentialClaims.from_payload({**credential.to_payload(), "jti": "../etc"})
    with pytest.raises(ParseError, match="expires before"):
        _bundle(expires_at=NOW).from_payload(_bundle(expires_at=NOW).to_payload())


def test_same_content_same_hash():
    assert _bundle().content_hash() == _bundle(version=9, issued_at=NOW + timedelta(hours=1)).content_hash()
    assert _bundle().content_hash() != _bundle(revoked=frozenset({"b" * 32})).content_hash()


def test_jwk_thumbprint_matches_rfc_7638_example():
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKR"
            "XjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
            "aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPk"
            "sINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    with pytest.raises(ParseError):
        jwk_thumbprint({"kty": "oct", "k": "secret"})


def test_credential_validity_tolerates_the_skew_both_ways():
    credential = _credential()
    assert credential.validity_problem(NOW - timedelta(seconds=59), SKEW) is None
    assert "not yet valid" in (credential.validity_problem(NOW - timedelta(seconds=61), SKEW) or "")
    assert credential.validity_problem(NOW + timedelta(hours=1, seconds=59), SKEW) is None
    assert "expired" in (credential.validity_problem(NOW + timedelta(hours=1, seconds=60), SKEW) or "")


def test_nonces_are_single_use_and_short_lived():
    book = NonceBook(ttl=timedelta(seconds=30), capacity=2)
    book.issue(b"a" * 16, asset="door-1", function="enter", credential="c", at=NOW)
    pending = book.take(b"a" * 16, NOW + timedelta(seconds=29))
    assert pending is not None
    assert pending.credential == "c"
    assert book.take(b"a" * 16, NOW) is None  # used
    book.issue(b"b" * 16, asset="door-1", function="enter", credential="c", at=NOW)
    assert book.take(b"b" * 16, NOW + timedelta(seconds=30)) is None  # expired
    for nonce in (b"c" * 16, b"d" * 16, b"e" * 16):  # capacity 2: the oldest is dropped
        book.issue(nonce, asset="door-1", function="enter", credential="c", at=NOW)
    assert len(book) == 2
    assert book.take(b"c" * 16, NOW) is None
    with pytest.raises(ValueError, match="128 random bits"):
        book.issue(b"short", asset="door-1", function="enter", credential="c", at=NOW)
    with pytest.raises(ValueError, match="reused"):
        book.issue(b"d" * 16, asset="door-1", function="enter", credential="c", at=NOW)


def _allow(person: str, function: str, at: object) -> Decision:
    return Decision(True, f"allowed {person} {function}", ("p1",))


def test_a_flood_from_one_source_does_not_push_out_the_nonces_of_others():
    book = NonceBook(ttl=timedelta(seconds=30), capacity=100, per_source=8)
    book.issue(b"h" * 16, asset="door-1", function="enter", credential="c", at=NOW, source="10.0.0.2")
    for index in range(1000):
        nonce = index.to_bytes(16, "big")
        book.issue(nonce, asset="door-1", function="enter", credential="x", at=NOW, source="10.0.0.66")
    assert book.pending_from("10.0.0.66") == 8  # its own oldest went first
    assert book.pending_from("10.0.0.2") == 1
    assert len(book) == 9
    assert book.take((0).to_bytes(16, "big"), NOW) is None
    assert book.take((999).to_bytes(16, "big"), NOW) is not None
    assert book.pending_from("10.0.0.66") == 7
    pending = book.take(b"h" * 16, NOW + timedelta(seconds=29))
    assert pending is not None
    assert pending.source == "10.0.0.2"
    assert book.pending_from("10.0.0.2") == 0
    # many sources: the total stays bounded, the oldest overall going first
    for index in range(300):
        nonce = (10_000 + index).to_bytes(16, "big")
        book.issue(nonce, asset="door-1", function="enter", credential="x", at=NOW, source=f"s{index}")
    assert len(book) == 100
    book.purge(NOW + timedelta(seconds=30))
    assert len(book) == 0
    assert book.pending_from("s299") == 0


@pytest.mark.parametrize(
    ("case", "kwargs", "reason", "proof_failed"),
    [
        ("no bundle", {"bundle": None}, "no valid policy bundle", False),
        (
            "bad credential",
            {"credential": None, "credential_problem": "credential refused: x"},
            "refused: x",
            True,
        ),
        ("expired", {"at": NOW + timedelta(hours=2)}, "credential expired", False),
        ("bad signature", {"holder_signature_valid": False}, "not signed by the credential's key", True),
        ("revoked", {"bundle": _bundle(revoked=frozenset({"0" * 32}))}, "credential is revoked", False),
        ("bundle expired", {"bundle": _bundle(expires_at=NOW + timedelta(minutes=1))}, "fails closed", False),
    ],
)
def test_every_failed_check_denies(case, kwargs, reason, proof_failed):
    arguments: dict[str, object] = {
        "function": "enter",
        "bundle": _bundle(),
        "credential": _credential(expires_at=NOW + timedelta(days=2))
        if case == "bundle expired"
        else _credential(),
        "credential_problem": None,
        "holder_signature_valid": True,
        "decide": _allow,
        "at": NOW + timedelta(minutes=2) if case == "bundle expired" else NOW,
        "skew": SKEW,
    }
    arguments.update(kwargs)
    verdict = evaluate(**arguments)  # type: ignore[arg-type]
    assert not verdict.allowed, case
    assert reason in verdict.reason
    assert verdict.proof_failed is proof_failed  # only what proves nothing counts against a source


def test_all_checks_passed_the_policy_decides_and_fail_open_is_noted():
    verdict = evaluate(
        function="enter",
        bundle=_bundle(),
        credential=_credential(),
        credential_problem=None,
        holder_signature_valid=True,
        decide=_allow,
        at=NOW,
        skew=SKEW,
    )
    assert verdict.allowed
    assert verdict.policies == ("p1",)
    assert verdict.decision == "allow"
    assert not verdict.proof_failed
    late = evaluate(
        function="enter",
        bundle=_bundle(expires_at=NOW + timedelta(minutes=1), fail_open=frozenset({"enter"})),
        credential=_credential(),
        credential_problem=None,
        holder_signature_valid=True,
        decide=lambda p, f, a: Decision(False, "no grant", ()),
        at=NOW + timedelta(minutes=2),
        skew=SKEW,
    )
    assert not late.allowed  # fail-open still asks the policy
    assert "fails open" in late.reason


# --- the JWS layer on a throwaway CA -----------------------------------------------------------------


@pytest.fixture(scope="module")
def edge_signer(issuing_ca):
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = build_signer_certificate(
        subject=service_subject(issuing_ca.info, "edge"),
        public_key=key.public_key(),
        issuer=issuing_ca.info,
        serial_number=1 << 70,
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=30),
        extended_key_usage=(EDGE_SIGNING_OID,),
    ).sign(issuing_ca.key, hashes.SHA256())
    return key, certificate


def test_signer_chain_needs_the_edge_eku_and_the_root(edge_signer, issuing_ca, root_ca):
    key, certificate = edge_signer
    chain = [certificate, issuing_ca.info.certificate]
    assert verify_signer_chain(chain, [root_ca.info.certificate], NOW) == key.public_key()
    with pytest.raises(PolicyViolationError):
        verify_signer_chain(chain, [root_ca.info.certificate], NOW + timedelta(days=31))
    with pytest.raises(PolicyViolationError):
        verify_signer_chain([certificate], [root_ca.info.certificate], NOW)  # intermediate missing
    with pytest.raises(PolicyViolationError):
        verify_signer_chain([], [root_ca.info.certificate], NOW)


def test_tokens_verify_and_are_told_apart(edge_signer, issuing_ca, root_ca):
    key, certificate = edge_signer
    chain = [certificate, issuing_ca.info.certificate, root_ca.info.certificate]
    holder = ec.generate_private_key(ec.SECP256R1())
    credential = _credential(holder_jwk=holder_jwk(holder.public_key()))
    verifier = TokenVerifier([root_ca.info.certificate])
    token = sign_credential(credential, key, chain)
    header = jwt.get_unverified_header(token)
    assert header["x5t#S256"] == certificate_thumbprint(certificate)  # names its signer ...
    assert "x5c" not in header  # ... instead of carrying it
    assert len(token) < 1000
    with pytest.raises(PolicyViolationError, match=r"credential signer \S+ unknown at this asset"):
        verifier.credential(token, NOW)  # no bundle verified yet: the signer is not known here
    bundle = sign_bundle(_bundle(), key, chain)
    assert "x5c" in jwt.get_unverified_header(bundle)
    assert verifier.bundle(bundle, NOW) == _bundle()
    assert verifier.known_signers == ()  # verifying a bundle does not install it
    assert _install(verifier, bundle, NOW) == (certificate_thumbprint(certificate),)
    assert verifier.known_signers == (certificate_thumbprint(certificate),)
    verified = verifier.credential(token, NOW)
    assert verified.claims == credential
    assert verified.holder_key == holder.public_key()
    assert verifier.credential(token, NOW) is verified  # cached by its exact bytes
    with pytest.raises(PolicyViolationError, match="not valid at this time"):
        verifier.credential(token, NOW + timedelta(days=31))  # the cache re-checks the signer's validity
    with pytest.raises(PolicyViolationError, match="not valid at validation time"):
        TokenVerifier([root_ca.info.certificate], cache_size=0).bundle(bundle, NOW + timedelta(days=31))
    uncached = TokenVerifier([root_ca.info.certificate], cache_size=0)
    _install(uncached, bundle, NOW)
    with pytest.raises(PolicyViolationError, match="not valid at this time"):
        uncached.credential(token, NOW + timedelta(days=31))  # the signer's chain window, also uncached
    with pytest.raises(PolicyViolationError, match="not of type"):
        verifier.bundle(token, NOW)
    with pytest.raises(PolicyViolationError, match="not of type"):
        verifier.credential(bundle, NOW)
    with pytest.raises(ParseError):
        verifier.credential("not.a.token", NOW)
    header, payload, signature = bundle.split(".")
    with pytest.raises(PolicyViolationError, match="signature"):
        verifier.bundle(f"{header}.{payload}.{signature[:-6]}AAAAAA", NOW)


def _other_installation() -> tuple[ec.EllipticCurvePrivateKey, list[x509.Certificate]]:
    """The edge signer of another otward installation: its own root and issuing CA."""
    root = make_ca("other-root", path_length=None)
    issuing = make_ca("other-issuing", root)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = build_signer_certificate(
        subject=service_subject(issuing.info, "edge"),
        public_key=key.public_key(),
        issuer=issuing.info,
        serial_number=1 << 70,  # the same serial as ours: only the thumbprint tells them apart
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=30),
        extended_key_usage=(EDGE_SIGNING_OID,),
    ).sign(issuing.key, hashes.SHA256())
    return key, [certificate, issuing.info.certificate, root.info.certificate]


def test_credential_signed_by_another_installation_is_an_unknown_signer(edge_signer, issuing_ca, root_ca):
    key, certificate = edge_signer
    verifier = TokenVerifier([root_ca.info.certificate])
    _install(verifier, sign_bundle(_bundle(), key, [certificate, issuing_ca.info.certificate]), NOW)
    holder = ec.generate_private_key(ec.SECP256R1())
    claims = _credential(holder_jwk=holder_jwk(holder.public_key()))
    other_key, other_chain = _other_installation()
    foreign = sign_credential(claims, other_key, other_chain)
    thumbprint = certificate_thumbprint(other_chain[0])
    with pytest.raises(PolicyViolationError, match=f"credential signer {thumbprint} unknown at this asset"):
        verifier.credential(foreign, NOW)
    # and its bundles do not chain to our root, so they cannot teach the asset that signer either
    with pytest.raises(PolicyViolationError, match="signer chain does not verify"):
        verifier.bundle(sign_bundle(_bundle(), other_key, other_chain), NOW)
    assert verifier.known_signers == (certificate_thumbprint(certificate),)
    # naming our signer while signing with another key: the signature does not verify
    forged_header = {"typ": CREDENTIAL_TYPE, "x5t#S256": certificate_thumbprint(certificate)}
    forged = jwt.encode(claims.to_payload(), other_key, algorithm="ES256", headers=forged_header)
    with pytest.raises(PolicyViolationError, match="signature does not verify"):
        verifier.credential(forged, NOW)


def test_credential_names_its_signer_only_by_thumbprint(edge_signer, issuing_ca, root_ca):
    key, certificate = edge_signer
    chain = [certificate, issuing_ca.info.certificate]
    verifier = TokenVerifier([root_ca.info.certificate])
    _install(verifier, sign_bundle(_bundle(), key, chain), NOW)
    claims = _credential(holder_jwk=holder_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    for headers, problem in (
        ({"typ": CREDENTIAL_TYPE, "x5c": x5c}, "carries x5c"),
        (
            {"typ": CREDENTIAL_TYPE, "x5c": x5c, "x5t#S256": certificate_thumbprint(certificate)},
            "carries x5c",
        ),
        ({"typ": CREDENTIAL_TYPE}, "does not name its signer"),
        ({"typ": CREDENTIAL_TYPE, "x5t#S256": "abc"}, "does not name its signer"),
        ({"typ": CREDENTIAL_TYPE, "x5t#S256": ["x"]}, "does not name its signer"),
        ({"typ": CREDENTIAL_TYPE, "x5t#S256": certificate_thumbprint(certificate) + "\n"}, "does not name"),
    ):
        token = jwt.encode(claims.to_payload(), key, algorithm="ES256", headers=headers)
        with pytest.raises(PolicyViolationError, match=problem):
            verifier.credential(token, NOW)


def _second_signer(issuing_ca, serial_offset: int = 1) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Another edge signer of the same issuing CA, as after a rotation."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = build_signer_certificate(
        subject=service_subject(issuing_ca.info, "edge"),
        public_key=key.public_key(),
        issuer=issuing_ca.info,
        serial_number=(1 << 70) + serial_offset,
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=60),
        extended_key_usage=(EDGE_SIGNING_OID,),
    ).sign(issuing_ca.key, hashes.SHA256())
    return key, certificate


def _der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def test_after_a_rotation_the_bundle_says_which_earlier_signers_are_still_accepted(
    edge_signer, issuing_ca, root_ca
):
    """A bundle of the new signer that lists the old one keeps the old signer's credentials working; a
    bundle that does not list it (or lists it as revoked) ends them, also when they are cached."""
    key, certificate = edge_signer
    new_key, new_certificate = _second_signer(issuing_ca)
    intermediates = [issuing_ca.info.certificate]
    verifier = TokenVerifier([root_ca.info.certificate])
    claims = _credential(holder_jwk=holder_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    old_credential = sign_credential(claims, key, [certificate])
    new_credential = sign_credential(claims, new_key, [new_certificate])
    _install(verifier, sign_bundle(_bundle(), key, [certificate, *intermediates]), NOW)
    assert verifier.credential(old_credential, NOW).claims == claims
    with pytest.raises(PolicyViolationError, match="unknown at this asset"):
        verifier.credential(new_credential, NOW)

    listing_old = _bundle(version=4, signers=(_der_b64(certificate),))
    accepted = _install(verifier, sign_bundle(listing_old, new_key, [new_certificate, *intermediates]), NOW)
    assert accepted == (certificate_thumbprint(new_certificate), certificate_thumbprint(certificate))
    assert verifier.credential(new_credential, NOW).claims == claims
    assert verifier.credential(old_credential, NOW).claims == claims

    # the old signer's certificate has expired by then: it is not accepted any more, the bundle still is
    later = NOW + timedelta(days=45)
    assert _install(
        verifier, sign_bundle(listing_old, new_key, [new_certificate, *intermediates]), later
    ) == (certificate_thumbprint(new_certificate),)

    not_listing = _bundle(version=5)
    _install(verifier, sign_bundle(listing_old, new_key, [new_certificate, *intermediates]), NOW)
    assert verifier.credential(old_credential, NOW).claims == claims  # cached ...
    _install(verifier, sign_bundle(not_listing, new_key, [new_certificate, *intermediates]), NOW)
    with pytest.raises(PolicyViolationError, match="unknown at this asset"):
        verifier.credential(old_credential, NOW)  # ... and forgotten with its signer


def test_a_revoked_signer_signs_nothing_the_asset_accepts(edge_signer, issuing_ca, root_ca):
    key, certificate = edge_signer
    new_key, new_certificate = _second_signer(issuing_ca)
    intermediates = [issuing_ca.info.certificate]
    old = certificate_thumbprint(certificate)
    revoking = _bundle(version=4, signers=(_der_b64(certificate),), revoked_signers=frozenset({old}))
    verifier = TokenVerifier([root_ca.info.certificate])
    token = sign_bundle(revoking, new_key, [new_certificate, *intermediates])
    assert _install(verifier, token, NOW) == (certificate_thumbprint(new_certificate),)
    claims = _credential(holder_jwk=holder_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    with pytest.raises(PolicyViolationError, match="unknown at this asset"):
        verifier.credential(sign_credential(claims, key, [certificate]), NOW)
    # a later bundle made with the revoked key is refused when the held bundle names it revoked ...
    forged = sign_bundle(_bundle(version=9), key, [certificate, *intermediates])
    with pytest.raises(PolicyViolationError, match="revoked edge signer"):
        verifier.bundle(forged, NOW, refused_signers=revoking.revoked_signers)
    # ... and a bundle that names its own signer revoked is refused outright
    with pytest.raises(PolicyViolationError, match="revoked edge signer"):
        verifier.bundle(sign_bundle(revoking, key, [certificate, *intermediates]), NOW)


def test_earlier_signers_in_a_bundle_are_checked_like_its_own(edge_signer, issuing_ca, root_ca):
    """Listed signers must chain to the roots and carry the edge EKU; junk is skipped, not trusted."""
    key, certificate = edge_signer
    _, other_chain = _other_installation()
    not_edge = build_signer_certificate(
        subject=service_subject(issuing_ca.info, "audit"),
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        issuer=issuing_ca.info,
        serial_number=(1 << 70) + 7,
        not_valid_before=NOW - timedelta(days=1),
        not_valid_after=NOW + timedelta(days=30),
    ).sign(issuing_ca.key, hashes.SHA256())
    listed = (_der_b64(other_chain[0]), _der_b64(not_edge), "not base64!", base64.b64encode(b"junk").decode())
    verifier = TokenVerifier([root_ca.info.certificate])
    token = sign_bundle(_bundle(signers=listed), key, [certificate, issuing_ca.info.certificate])
    assert _install(verifier, token, NOW) == (certificate_thumbprint(certificate),)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_arbitrary_tokens_raise_only_otward_errors(root_ca, text):
    verifier = TokenVerifier([root_ca.info.certificate])
    for check in (verifier.bundle, verifier.credential):
        with pytest.raises(OtwardError):
            check(text, NOW)


@settings(max_examples=200, deadline=None)
@given(
    payload=st.dictionaries(
        st.sampled_from(
            ["iss", "sub", "ver", "iat", "exp", "fmt", "fail_open", "revoked", "slice", "jti", "nbf", "cnf"]
        ),
        st.one_of(
            st.none(),
            st.integers(),
            st.text(max_size=5),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
    )
)
def test_arbitrary_claims_raise_only_parse_errors(payload):
    for parse in (BundleClaims.from_payload, CredentialClaims.from_payload):
        try:
            parse(payload)
        except ParseError:
            pass
