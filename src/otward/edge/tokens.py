"""Policy bundles and access credentials as JWS compact tokens (RFC 7515), through PyJWT.

Both are signed by the edge signer with the algorithm its key calls for (ES256
for the default P-256 installation), with ``typ`` telling bundles and
credentials apart. A bundle carries the signer's certificate chain in ``x5c``
(RFC 7515 4.1.6), so an asset provisioned with nothing but otward's root can
check it. A credential only names its signer by the certificate's SHA-256
thumbprint, ``x5t#S256`` (RFC 7515 4.1.8): the asset resolves it to a signer
whose chain it verified with an installed bundle, which keeps the credential
small (about 0.8 kB instead of 2.7 kB) and cheap to decode. The bundle's payload
is canonical JSON (sorted keys, no spaces), so the same content always gives the
same signed bytes. A credential is a JWT whose ``cnf`` claim (RFC 7800) carries
the holder's public key as a JWK.

:class:`TokenVerifier` verifies both and caches what is safe to cache: a signer
chain by its exact certificates, the signers known from verified bundles by
thumbprint (the chain's validity window re-checked against the instant on every
use) and a verified credential by its exact bytes. Revocation and validity are
never cached: the exchange checks them on every request.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from otward.core.edge.formats import (
    BUNDLE_TYPE,
    CREDENTIAL_TYPE,
    BundleClaims,
    CredentialClaims,
    VerifiedSigner,
    canonical_json,
    certificate_thumbprint,
    verified_signer,
)
from otward.core.keys import classify_public_key
from otward.errors import ParseError, PolicyViolationError, UnsupportedAlgorithmError

__all__ = [
    "TokenVerifier",
    "VerifiedCredential",
    "holder_jwk",
    "holder_key",
    "sign_bundle",
    "sign_credential",
    "signing_algorithm",
    "unverified_bundle_timezone",
]

_JWS = jwt.api_jws.PyJWS()
_MAX_TOKEN = 1 << 22  # 4 MiB: a bundle for a large site, far above any credential
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url SHA-256, no padding (fullmatch)
_KNOWN_SIGNERS = 16  # signers remembered from verified bundles (rotations; other CAs of the same root)


def signing_algorithm(key: CertificatePublicKeyTypes | CertificateIssuerPrivateKeyTypes) -> str:
    """The JWS ``alg`` for a signer key: ES256/ES384 by curve, EdDSA, or PS256 for RSA."""
    private = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
    public = key.public_key() if isinstance(key, private) else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name == "secp256r1":
            return "ES256"
        if public.curve.name == "secp384r1":
            return "ES384"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(public, rsa.RSAPublicKey) and public.key_size >= 2048:
        return "PS256"
    raise UnsupportedAlgorithmError(f"no JWS algorithm for a {type(public).__name__} signer", rule="key-type")


def _x5c(chain: Sequence[x509.Certificate]) -> list[str]:
    """The chain without the self-signed root (the asset has that already), standard base64 DER."""
    return [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
        for c in chain
        if c.subject != c.issuer
    ]


def _sign(payload: bytes, headers: dict[str, Any], key: CertificateIssuerPrivateKeyTypes) -> str:
    return _JWS.encode(payload, key, algorithm=signing_algorithm(key), headers=headers)  # type: ignore[arg-type]


def sign_bundle(
    claims: BundleClaims, key: CertificateIssuerPrivateKeyTypes, chain: Sequence[x509.Certificate]
) -> str:
    """The bundle as a JWS over its canonical JSON payload, with the signer's chain in ``x5c``;
    ``chain`` starts with the signer's certificate."""
    headers = {"typ": BUNDLE_TYPE, "x5c": _x5c(chain)}
    return _sign(canonical_json(claims.to_payload()), headers, key)


def sign_credential(
    claims: CredentialClaims, key: CertificateIssuerPrivateKeyTypes, chain: Sequence[x509.Certificate]
) -> str:
    """The credential as a JWT (canonical JSON claims) signed by the edge signer ``chain[0]``, which it
    names by ``x5t#S256`` (no ``x5c``: the asset knows the signer from its bundle)."""
    if not chain:
        raise ValueError("the signer's certificate is needed")
    headers = {"typ": CREDENTIAL_TYPE, "x5t#S256": certificate_thumbprint(chain[0])}
    return _sign(canonical_json(claims.to_payload()), headers, key)


def holder_jwk(public_key: CertificatePublicKeyTypes) -> dict[str, Any]:
    """The holder's public key as a JWK (RFC 7517) for ``cnf``; weak or odd keys are refused."""
    classify_public_key(public_key)  # RSA < 2048, other curves, DSA ...: UnsupportedAlgorithmError
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    else:  # pragma: no cover - classify_public_key refused it already
        raise UnsupportedAlgorithmError("unsupported holder key", rule="key-type")
    return {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}


def holder_key(jwk: Mapping[str, object]) -> CertificatePublicKeyTypes:
    """The public key in a credential's ``cnf``; ParseError if it is not a key otward accepts."""
    kty = jwk.get("kty")
    data = json.dumps(dict(jwk))
    try:
        key: Any
        if kty == "EC":
            key = ECAlgorithm.from_jwk(data)
        elif kty == "OKP":
            key = OKPAlgorithm.from_jwk(data)
        elif kty == "RSA":
            key = RSAAlgorithm.from_jwk(data)
        else:
            raise ParseError(f"credential: unsupported holder key type {kty!r}", rule="credential-key")
    except (jwt.exceptions.InvalidKeyError, ValueError, TypeError) as exc:
        raise ParseError(f"credential: holder key is not usable ({exc})", rule="credential-key") from None
    if hasattr(key, "private_bytes"):
        raise ParseError("credential: holds a private key", rule="credential-key")
    public: CertificatePublicKeyTypes = key
    classify_public_key(public)
    return public


@dataclass(frozen=True)
class _Signer:
    verified: VerifiedSigner
    algorithm: str

    @property
    def key(self) -> CertificatePublicKeyTypes:
        return self.verified.key


@dataclass(frozen=True)
class VerifiedCredential:
    """A credential whose signature and signer chain verified, with the holder's key."""

    claims: CredentialClaims
    holder_key: CertificatePublicKeyTypes
    signer_not_before: datetime
    signer_not_after: datetime


class TokenVerifier:
    """Verifies bundles and credentials against the roots the asset was provisioned with.

    A bundle's signer is verified from its ``x5c`` chain; once the bundle's signature verified too, the
    signer is remembered by its ``x5t#S256`` thumbprint, and credentials naming that thumbprint are
    verified with it. A credential naming any other signer is refused: the asset does not know it.
    """

    def __init__(self, roots: Sequence[x509.Certificate], *, cache_size: int = 4096) -> None:
        if not roots:
            raise ValueError("at least one trusted root is needed")
        self._roots = list(roots)
        self._cache_size = cache_size
        self._signers: dict[tuple[bytes, ...], _Signer] = {}
        self._known: OrderedDict[str, _Signer] = OrderedDict()
        self._headers: dict[str, tuple[dict[str, Any], _Signer]] = {}
        self._credentials: OrderedDict[str, VerifiedCredential] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def known_signers(self) -> tuple[str, ...]:
        """The ``x5t#S256`` of the signers learnt from verified bundles, oldest first."""
        with self._lock:
            return tuple(self._known)

    def _chain_signer(self, header: Mapping[str, Any], at: datetime) -> _Signer:
        """A bundle's signer, from its ``x5c`` chain verified against the roots at ``at``."""
        x5c = header.get("x5c")
        if not isinstance(x5c, list) or not x5c or len(x5c) > 4 or not all(isinstance(c, str) for c in x5c):
            raise PolicyViolationError("token has no usable signer chain (x5c)", rule="signer-chain")
        try:
            ders = tuple(base64.b64decode(c, validate=True) for c in x5c)
        except (binascii.Error, ValueError):
            raise ParseError("token's x5c is not base64", rule="signer-chain") from None
        signer = self._signers.get(ders)
        if signer is None:
            try:
                chain = [x509.load_der_x509_certificate(der) for der in ders]
            except ValueError:
                raise ParseError(
                    "token's x5c holds something that is not a certificate", rule="signer-chain"
                ) from None
            verified = verified_signer(chain, self._roots, at)
            signer = _Signer(verified, signing_algorithm(verified.key))
            with self._lock:
                if len(self._signers) >= 64:
                    self._signers.clear()
                self._signers[ders] = signer
        return signer

    def _named_signer(self, header: Mapping[str, Any]) -> _Signer:
        """A credential's signer, named by ``x5t#S256`` and known from a verified bundle."""
        if "x5c" in header:
            raise PolicyViolationError(
                "credential carries x5c: credentials name their signer by x5t#S256 (re-issue it)",
                rule="signer-chain",
            )
        thumbprint = header.get("x5t#S256")
        if not isinstance(thumbprint, str) or not _THUMBPRINT.fullmatch(thumbprint):
            raise PolicyViolationError(
                "credential does not name its signer (x5t#S256, a base64url SHA-256)", rule="signer-chain"
            )
        with self._lock:
            signer = self._known.get(thumbprint)
        if signer is None:
            raise PolicyViolationError(
                f"credential signer {thumbprint} unknown at this asset: install a current bundle",
                rule="signer-unknown",
            )
        return signer

    def _remember(self, signer: _Signer) -> None:
        with self._lock:
            self._known[signer.verified.thumbprint] = signer
            self._known.move_to_end(signer.verified.thumbprint)
            while len(self._known) > _KNOWN_SIGNERS:
                self._known.popitem(last=False)

    def _verify(self, token: str, typ: str, at: datetime) -> tuple[Mapping[str, object], _Signer]:
        if len(token) > _MAX_TOKEN:
            raise ParseError("token too large", rule="token-size")
        # Tokens from one signer share their header segment byte for byte (PyJWT sorts the header), so
        # the parsed header and its signer are kept by that segment: this side parses a header once per
        # signer (PyJWT's decode below parses it once more, which for a credential's ~110-byte header
        # is a few µs; with x5c it was 2 kB of per-character base64url checks), and a bundle's x5c is
        # neither decoded nor verified again. Only a header whose signer verified (or was known) is kept.
        segment = token.split(".", 1)[0]
        cached = self._headers.get(segment)
        if cached is not None:
            header, signer = cached
            if header.get("typ") != typ:
                raise PolicyViolationError(f"token is not of type {typ}", rule="token-type")
        else:
            try:
                header = _JWS.get_unverified_header(token)
            except jwt.exceptions.DecodeError:
                raise ParseError("not a JWS compact token", rule="token-format") from None
            if header.get("crit") is not None:
                raise PolicyViolationError("token has critical header parameters", rule="token-format")
            if header.get("typ") != typ:
                raise PolicyViolationError(f"token is not of type {typ}", rule="token-type")
            signer = self._chain_signer(header, at) if typ == BUNDLE_TYPE else self._named_signer(header)
            with self._lock:
                if len(self._headers) >= 64:
                    self._headers.clear()
                self._headers[segment] = (header, signer)
        if not signer.verified.valid_at(at):
            raise PolicyViolationError("signer certificate is not valid at this time", rule="signer-chain")
        try:
            payload = _JWS.decode(token, signer.key, algorithms=[signer.algorithm])  # type: ignore[arg-type]
        except jwt.exceptions.InvalidSignatureError:
            raise PolicyViolationError("token signature does not verify", rule="token-signature") from None
        except jwt.exceptions.PyJWTError as exc:
            raise PolicyViolationError(f"token refused: {exc}", rule="token-signature") from None
        try:
            claims = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ParseError("token payload is not JSON", rule="token-format") from None
        if not isinstance(claims, dict):
            raise ParseError("token payload is not a JSON object", rule="token-format")
        return claims, signer

    def bundle(self, token: str, at: datetime) -> BundleClaims:
        """The claims of a bundle whose signature and chain verify at ``at`` (expiry is the caller's call:
        an expired bundle may still decide fail-open functions)."""
        payload, signer = self._verify(token.strip(), BUNDLE_TYPE, at)
        claims = BundleClaims.from_payload(payload)
        self._remember(signer)  # credentials naming this signer are verified with it from now on
        return claims

    def credential(self, token: str, at: datetime) -> VerifiedCredential:
        """A credential signed by a signer known from a verified bundle, valid (with its chain) at ``at``;
        cached by its exact text (never its validity)."""
        token = token.strip()
        with self._lock:
            cached = self._credentials.get(token)
            if cached is not None:
                self._credentials.move_to_end(token)
        if cached is not None:
            if not cached.signer_not_before <= at <= cached.signer_not_after:
                raise PolicyViolationError(
                    "signer certificate is not valid at this time", rule="signer-chain"
                )
            return cached
        payload, signer = self._verify(token, CREDENTIAL_TYPE, at)
        claims = CredentialClaims.from_payload(payload)
        verified = VerifiedCredential(
            claims, holder_key(claims.holder_jwk), signer.verified.not_before, signer.verified.not_after
        )
        with self._lock:
            self._credentials[token] = verified
            while len(self._credentials) > self._cache_size:
                self._credentials.popitem(last=False)
        return verified

    def forget_expired(self, at: datetime) -> None:
        """Drop cached credentials that expired before ``at`` (kept small on a long-running gatekeeper)."""
        with self._lock:
            for token in [t for t, v in self._credentials.items() if v.claims.expires_at < at]:
                del self._credentials[token]


def unverified_bundle_timezone(token: str) -> str | None:
    """The site time zone a bundle claims, read WITHOUT verification: only to interpret a local time
    given on the command line before the bundle is verified as of that time. Never for a decision."""
    try:
        payload = json.loads(_JWS.decode(token.strip(), options={"verify_signature": False}))
        zone = payload["slice"]["timezone"]
    except (jwt.exceptions.PyJWTError, ValueError, KeyError, TypeError):
        return None
    return zone if isinstance(zone, str) else None
