"""What a policy bundle and an access credential say, and what the holder signs.

Both are JWS compact tokens (RFC 7515) signed by otward's edge signer. A bundle
carries the signer's certificate chain in its ``x5c`` header; a credential only
names the signer by its certificate thumbprint (``x5t#S256``), and the asset
resolves it to a signer it verified with a bundle. The tokens themselves are made
and verified by PyJWT in :mod:`otward.edge.tokens`. This module holds the parts
that need no library: the claim sets (strictly parsed, so a token that verifies
but says something unexpected is refused), their validity at an instant, the
edge signer's extended key usage, the chain check against the provisioned root,
and the domain-separated message a holder signs to answer a nonce.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from otward.core import b64url
from otward.core.chain import UNREADABLE_CERTIFICATE, find_path
from otward.core.identifiers import CREDENTIAL_ID, EDGE_ID
from otward.errors import ParseError, PolicyViolationError

__all__ = [
    "ANSWER_DOMAIN",
    "BUNDLE_FORMAT",
    "BUNDLE_TYPE",
    "CREDENTIAL_TYPE",
    "EDGE_SIGNING_OID",
    "ISSUER",
    "BundleClaims",
    "CredentialClaims",
    "VerifiedSigner",
    "answer_message",
    "canonical_json",
    "certificate_thumbprint",
    "jwk_thumbprint",
    "validate_identifier",
    "verified_signer",
    "verify_signer_chain",
]

EDGE_SIGNING_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.6.1")
"""id-kp-otwardEdgeSigning: the EKU that lets a certificate sign bundles and credentials (and nothing
else does: an audit signer or a device certificate from the same CA is refused). The arc is the
documentation PEN of RFC 5612, as for otward's syslog SD-ID."""

ISSUER = "otward"
BUNDLE_TYPE = "otward-bundle+jwt"
CREDENTIAL_TYPE = "otward-credential+jwt"
BUNDLE_FORMAT = 1
ANSWER_DOMAIN = b"otward-edge-access-v1\n"

_BUNDLE_KEYS = frozenset(
    {"iss", "sub", "ver", "iat", "exp", "fmt", "fail_open", "revoked", "slice", "signers", "revoked_signers"}
)
_MAX_PREVIOUS_SIGNERS = 16
_CREDENTIAL_KEYS = frozenset({"iss", "sub", "jti", "iat", "nbf", "exp", "cnf"})


def validate_identifier(value: str, what: str) -> str:
    """Asset, function and person ids: short, printable, no separators (they go into the signed message)."""
    if not EDGE_ID.is_valid(value):
        raise ParseError(f"{what} {value!r} is not a valid identifier", rule=what.replace(" ", "-"))
    return value


def canonical_json(value: object) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes a bundle's signature covers (and its content hash)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """RFC 7638 SHA-256 thumbprint (base64url): the holder key's name in the central records."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    members = required.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ParseError("not a public JWK of type EC, OKP or RSA", rule="credential-key")
    return b64url.encode(hashlib.sha256(canonical_json({m: jwk[m] for m in members})).digest())


def certificate_thumbprint(certificate: x509.Certificate) -> str:
    """``x5t#S256`` (RFC 7515 4.1.8): base64url SHA-256 of the certificate's DER, no padding; how a
    credential names the edge signer that signed it."""
    return b64url.encode(certificate.fingerprint(hashes.SHA256()))


def answer_message(asset: str, function: str, nonce: bytes) -> bytes:
    """``otward-edge-access-v1\\n<asset>\\n<function>\\n<nonce>``: what the holder signs with its key.

    The domain prefix keeps the holder's key from being used to sign anything else
    that would verify here; asset and function are in the message so an answer made
    for one door or one machine function is useless at another. Identifiers cannot
    contain a newline, and the nonce comes last, so the encoding is unambiguous.
    """
    validate_identifier(asset, "asset")
    validate_identifier(function, "function")
    return ANSWER_DOMAIN + asset.encode() + b"\n" + function.encode() + b"\n" + nonce


# 9999-12-31T23:59:59Z, the last second a datetime holds: a later NumericDate raised OverflowError,
# OSError or ValueError (by platform) instead of a ParseError.
_MAX_NUMERIC_DATE = 253_402_300_799


def _timestamp(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp())


def _time(payload: Mapping[str, object], key: str, what: str) -> datetime:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_NUMERIC_DATE:
        raise ParseError(f"{what}: '{key}' must be a NumericDate", rule=f"{what}-claims")
    return datetime.fromtimestamp(value, UTC)


def _text(payload: Mapping[str, object], key: str, what: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise ParseError(f"{what}: '{key}' must be a non-empty string", rule=f"{what}-claims")
    return value


def _strings(payload: Mapping[str, object], key: str, what: str) -> tuple[str, ...]:
    value = payload.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ParseError(f"{what}: '{key}' must be a list of strings", rule=f"{what}-claims")
    return tuple(value)


def _exact_keys(payload: Mapping[str, object], expected: frozenset[str], what: str) -> None:
    keys = set(payload)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        raise ParseError(
            f"{what}: missing claims {missing}, unexpected claims {extra}", rule=f"{what}-claims"
        )


@dataclass(frozen=True)
class BundleClaims:
    """A policy bundle: the asset's slice, the revoked credentials, version, validity and fail modes."""

    asset: str
    version: int
    issued_at: datetime
    expires_at: datetime
    slice: Mapping[str, object]  # AccessSlice.to_dict()
    revoked: frozenset[str]
    fail_open: frozenset[str]  # functions still decided by the last bundle once it has expired
    # Earlier edge signers whose credentials the asset still accepts (base64 DER certificates, checked
    # like the bundle's own signer), and the x5t#S256 of revoked ones (nothing they signed is accepted).
    signers: tuple[str, ...] = ()
    revoked_signers: frozenset[str] = frozenset()

    def to_payload(self) -> dict[str, object]:
        return {
            "iss": ISSUER,
            "sub": self.asset,
            "ver": self.version,
            "fmt": BUNDLE_FORMAT,
            "iat": _timestamp(self.issued_at),
            "exp": _timestamp(self.expires_at),
            "fail_open": sorted(self.fail_open),
            "revoked": sorted(self.revoked),
            "slice": dict(self.slice),
            "signers": list(self.signers),
            "revoked_signers": sorted(self.revoked_signers),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, object]) -> BundleClaims:
        """Strict: every claim present, nothing extra, types right; ParseError otherwise."""
        what = "bundle"
        _exact_keys(payload, _BUNDLE_KEYS, what)
        if payload["iss"] != ISSUER or payload["fmt"] != BUNDLE_FORMAT:
            raise ParseError("bundle: not an otward bundle of format 1", rule="bundle-claims")
        version = payload["ver"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ParseError("bundle: 'ver' must be a positive integer", rule="bundle-claims")
        data = payload["slice"]
        if not isinstance(data, Mapping):
            raise ParseError("bundle: 'slice' must be an object", rule="bundle-claims")
        claims = cls(
            asset=validate_identifier(_text(payload, "sub", what), "asset"),
            version=version,
            issued_at=_time(payload, "iat", what),
            expires_at=_time(payload, "exp", what),
            slice=data,
            revoked=frozenset(_strings(payload, "revoked", what)),
            fail_open=frozenset(_strings(payload, "fail_open", what)),
            signers=_strings(payload, "signers", what),
            revoked_signers=frozenset(_strings(payload, "revoked_signers", what)),
        )
        if len(claims.signers) > _MAX_PREVIOUS_SIGNERS or len(claims.revoked_signers) > _MAX_PREVIOUS_SIGNERS:
            raise ParseError(
                f"bundle: more than {_MAX_PREVIOUS_SIGNERS} earlier signers", rule="bundle-claims"
            )
        if claims.expires_at <= claims.issued_at:
            raise ParseError("bundle: expires before it was issued", rule="bundle-claims")
        return claims

    def content_hash(self) -> bytes:
        """SHA-256 of what decides (slice, revocations, fail modes, accepted and revoked signers): the
        same content is not reissued."""
        content = {
            "slice": dict(self.slice),
            "revoked": sorted(self.revoked),
            "fail_open": sorted(self.fail_open),
            "signers": list(self.signers),
            "revoked_signers": sorted(self.revoked_signers),
        }
        return hashlib.sha256(canonical_json(content)).digest()

    def is_expired(self, at: datetime) -> bool:
        return at >= self.expires_at


@dataclass(frozen=True)
class CredentialClaims:
    """An access credential: the holder's public key (RFC 7800 ``cnf``/``jwk``) bound to a person."""

    credential_id: str
    person: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    holder_jwk: Mapping[str, object]

    def to_payload(self) -> dict[str, object]:
        return {
            "iss": ISSUER,
            "sub": self.person,
            "jti": self.credential_id,
            "iat": _timestamp(self.issued_at),
            "nbf": _timestamp(self.not_before),
            "exp": _timestamp(self.expires_at),
            "cnf": {"jwk": dict(self.holder_jwk)},
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, object]) -> CredentialClaims:
        """Strict: every claim present, nothing extra, types right; ParseError otherwise."""
        what = "credential"
        _exact_keys(payload, _CREDENTIAL_KEYS, what)
        if payload["iss"] != ISSUER:
            raise ParseError("credential: not issued by otward", rule="credential-claims")
        cnf = payload["cnf"]
        if not isinstance(cnf, Mapping) or set(cnf) != {"jwk"} or not isinstance(cnf["jwk"], Mapping):
            raise ParseError("credential: 'cnf' must hold exactly a 'jwk'", rule="credential-claims")
        jwk: Mapping[str, object] = cnf["jwk"]
        credential_id = _text(payload, "jti", what)
        if not CREDENTIAL_ID.is_valid(credential_id):
            raise ParseError("credential: 'jti' is not a credential id", rule="credential-claims")
        claims = cls(
            credential_id=credential_id,
            person=validate_identifier(_text(payload, "sub", what), "person"),
            issued_at=_time(payload, "iat", what),
            not_before=_time(payload, "nbf", what),
            expires_at=_time(payload, "exp", what),
            holder_jwk=jwk,
        )
        if claims.expires_at <= claims.not_before:
            raise ParseError("credential: expires before it becomes valid", rule="credential-claims")
        return claims

    def validity_problem(self, at: datetime, skew: timedelta) -> str | None:
        """Why the credential is not valid at ``at`` (``skew`` tolerated both ways), or None."""
        if at + skew < self.not_before or at + skew < self.issued_at:
            return f"credential not yet valid (valid from {self.not_before:%Y-%m-%dT%H:%M:%SZ})"
        if at - skew >= self.expires_at:
            return f"credential expired at {self.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        return None


def _validate_edge_signer_usage(certificate: x509.Certificate) -> None:
    """An end-entity certificate with keyUsage digitalSignature and the edge-signer EKU."""
    try:
        extensions = certificate.extensions
        eku = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        eku = None
    if eku is None or EDGE_SIGNING_OID not in eku:
        raise PolicyViolationError(
            "signer chain does not verify: certificate is not an otward edge signer"
            " (id-kp-otwardEdgeSigning missing)",
            rule="signer-chain",
        )
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if (constraints is not None and constraints.ca) or usage is None or not usage.digital_signature:
        raise PolicyViolationError(
            "signer chain does not verify: the signer must be an end entity with digitalSignature",
            rule="signer-chain",
        )


@dataclass(frozen=True)
class VerifiedSigner:
    """An edge signer whose chain verified up to a provisioned root: its key, its ``x5t#S256``, and the
    window in which the whole chain (signer, issuing CA, root) is valid; re-checked on every use."""

    key: CertificatePublicKeyTypes
    thumbprint: str
    not_before: datetime
    not_after: datetime

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at <= self.not_after


def verified_signer(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], at: datetime
) -> VerifiedSigner:
    """The edge signer ``chain[0]`` if it carries the edge-signer EKU and chains (through ``chain[1:]``)
    to one of ``roots``, every certificate valid at ``at``; PolicyViolationError otherwise.

    The path is found by :func:`otward.core.chain.find_path` (``cryptography``'s verifier applies Web
    PKI rules that refuse the Ed25519 CAs otward supports)."""
    if not chain:
        raise PolicyViolationError("no signer certificate in the token (x5c)", rule="signer-chain")
    # A chain from a token is untrusted until it verified: one that cannot be read is refused.
    try:
        return _verified_signer(chain, roots, at)
    except UNREADABLE_CERTIFICATE as exc:
        raise PolicyViolationError(
            f"signer chain does not verify: a certificate cannot be read ({exc})", rule="signer-chain"
        ) from None


def _verified_signer(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], at: datetime
) -> VerifiedSigner:
    _validate_edge_signer_usage(chain[0])
    leaf = chain[0]
    if not leaf.not_valid_before_utc <= at <= leaf.not_valid_after_utc:
        raise PolicyViolationError(
            f"signer chain does not verify: the signer certificate is not valid at validation time"
            f" {at:%Y-%m-%dT%H:%M:%SZ} (valid {leaf.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ}"
            f" to {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})",
            rule="signer-chain",
        )
    path = find_path(chain[0], list(chain[1:4]), roots, at)
    if path is None:
        raise PolicyViolationError(
            f"signer chain does not verify to a provisioned root at {at:%Y-%m-%dT%H:%M:%SZ}",
            rule="signer-chain",
        )
    return VerifiedSigner(
        key=chain[0].public_key(),
        thumbprint=certificate_thumbprint(chain[0]),
        not_before=max(c.not_valid_before_utc for c in path),
        not_after=min(c.not_valid_after_utc for c in path),
    )


def verify_signer_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], at: datetime
) -> CertificatePublicKeyTypes:
    """The signer's public key if ``chain[0]`` is an edge signer that chains (through ``chain[1:]``)
    to one of ``roots`` and is valid at ``at``; PolicyViolationError otherwise."""
    return verified_signer(chain, roots, at).key
