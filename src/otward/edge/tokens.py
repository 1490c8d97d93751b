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
chain by its exact certificates, the signers the installed bundle names by
thumbprint (the chain's validity window re-checked against the instant on every
use) and a verified credential by its exact bytes. Revocation and validity are
never cached: the exchange checks them on every request.

Which signers a credential may come from is the installed bundle's word: its own
signer and the earlier edge signers it lists (a rotated signer's credentials keep
working until they expire); an edge signer the bundle lists as revoked signs
nothing the asset accepts, neither credentials nor later bundles.
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
from jwt.utils import base64url_decode

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
    "MAX_CREDENTIAL",
    "MAX_TOKEN",
    "TokenVerifier",
    "VerifiedBundle",
    "VerifiedCredential",
    "bundle_signer_thumbprint",
    "holder_jwk",
    "holder_key",
    "sign_bundle",
    "sign_credential",
    "signing_algorithm",
    "unverified_bundle_timezone",
    "validate_credential_form",
]

_JWS = jwt.api_jws.PyJWS()
MAX_TOKEN = 1 << 22  # 4 MiB: a bundle for a large site, far above any credential
_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url SHA-256, no padding (fullmatch)
MAX_CREDENTIAL = 8192  # a credential is about 0.6 kB (1 kB with an RSA holder key); 4096 pending at most
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")  # a compact JWS (fullmatch)
_ALGORITHMS = frozenset({"ES256", "ES384", "ES512", "EdDSA", "PS256"})  # what signing_algorithm gives


def signing_algorithm(key: CertificatePublicKeyTypes | CertificateIssuerPrivateKeyTypes) -> str:
    """The JWS ``alg`` for a signer key: ES256/ES384/ES512 by curve, EdDSA, or PS256 for RSA."""
    private = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
    public = key.public_key() if isinstance(key, private) else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name == "secp256r1":
            return "ES256"
        if public.curve.name == "secp384r1":
            return "ES384"
        if public.curve.name == "secp521r1":
            return "ES512"
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
    data: dict[str, Any] = dict(jwk)  # PyJWT takes the dict as it is (a JSON text it would parse again)
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
    intermediates: tuple[x509.Certificate, ...]  # the chain above the signer, as the bundle carried it

    @property
    def key(self) -> CertificatePublicKeyTypes:
        return self.verified.key


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature and signer chain verified, with that signer (for installing it)."""

    claims: BundleClaims
    signer: _Signer


@dataclass(frozen=True)
class VerifiedCredential:
    """A credential whose signature and signer chain verified, with the holder's key."""

    claims: CredentialClaims
    holder_key: CertificatePublicKeyTypes
    signer_not_before: datetime
    signer_not_after: datetime
    signer: str  # the signer's x5t#S256


class TokenVerifier:
    """Verifies bundles and credentials against the roots the asset was provisioned with.

    A bundle's signer is verified from its ``x5c`` chain. Once the caller installs a bundle
    (:meth:`trust_bundle_signers`), credentials naming its signer's ``x5t#S256``, or one of the earlier
    signers it lists, are verified with that signer; a credential naming any other signer is refused:
    the asset does not know it.
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
        """The ``x5t#S256`` of the signers credentials are accepted from, the installed bundle's first."""
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
            except (ValueError, x509.InvalidVersion):  # InvalidVersion is not a ValueError
                raise ParseError(
                    "token's x5c holds something that is not a certificate", rule="signer-chain"
                ) from None
            verified = verified_signer(chain, self._roots, at)
            signer = _Signer(verified, signing_algorithm(verified.key), tuple(chain[1:]))
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

    def _verify(self, token: str, typ: str, at: datetime) -> tuple[Mapping[str, object], _Signer]:
        if len(token) > MAX_TOKEN:
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
            header = _unverified_header(token)
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
        except (ValueError, RecursionError):  # UnicodeDecodeError and JSON errors are ValueErrors
            raise ParseError("token payload is not JSON", rule="token-format") from None
        if not isinstance(claims, dict):
            raise ParseError("token payload is not a JSON object", rule="token-format")
        return claims, signer

    def verify_bundle(
        self, token: str, at: datetime, *, refused_signers: frozenset[str] = frozenset()
    ) -> VerifiedBundle:
        """A bundle whose signature and chain verify at ``at`` (expiry is the caller's call: an expired
        bundle may still decide fail-open functions). Refused if its signer is among
        ``refused_signers`` (the revoked signers of the bundle held) or the revoked signers it lists."""
        payload, signer = self._verify(token.strip(), BUNDLE_TYPE, at)
        claims = BundleClaims.from_payload(payload)
        thumbprint = signer.verified.thumbprint
        if thumbprint in refused_signers or thumbprint in claims.revoked_signers:
            raise PolicyViolationError(
                f"bundle signed by revoked edge signer {thumbprint}", rule="signer-revoked"
            )
        return VerifiedBundle(claims, signer)

    def bundle(
        self, token: str, at: datetime, *, refused_signers: frozenset[str] = frozenset()
    ) -> BundleClaims:
        """The claims of a bundle that :meth:`verify_bundle` accepts."""
        return self.verify_bundle(token, at, refused_signers=refused_signers).claims

    def trust_bundle_signers(self, bundle: VerifiedBundle, at: datetime) -> tuple[str, ...]:
        """Accept credentials from the signers ``bundle`` (being installed) names, instead of those
        accepted so far: its own signer and each earlier signer it lists whose certificate still
        chains to the roots at ``at`` (through the bundle's own intermediates) and is not listed as
        revoked. Cached credentials of signers no longer accepted are forgotten. Returns the accepted
        signers' thumbprints, the bundle's own first."""
        claims, signer = bundle.claims, bundle.signer
        trusted: OrderedDict[str, _Signer] = OrderedDict([(signer.verified.thumbprint, signer)])
        for encoded in claims.signers:
            try:
                certificate = x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
                verified = verified_signer([certificate, *signer.intermediates], self._roots, at)
            except (binascii.Error, ValueError, x509.InvalidVersion, PolicyViolationError):
                continue  # expired since, or under another CA: its credentials are not accepted
            if verified.thumbprint not in claims.revoked_signers:
                trusted.setdefault(
                    verified.thumbprint,
                    _Signer(verified, signing_algorithm(verified.key), signer.intermediates),
                )
        with self._lock:
            self._known = trusted
            self._headers = {k: v for k, v in self._headers.items() if v[1].verified.thumbprint in trusted}
            for cached in [t for t, v in self._credentials.items() if v.signer not in trusted]:
                del self._credentials[cached]
        return tuple(trusted)

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
            claims,
            holder_key(claims.holder_jwk),
            signer.verified.not_before,
            signer.verified.not_after,
            signer.verified.thumbprint,
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


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, decoded from its first segment alone. PyJWT's
    ``get_unverified_header`` decodes (and checks character by character) the whole token, about
    15 ms for a 390 KiB bundle; the signature check decodes it strictly once more anyway."""
    if token.count(".") != 2:
        raise ParseError("not a JWS compact token", rule="token-format")
    try:
        header = json.loads(base64url_decode(token.split(".", 1)[0]))
    except (binascii.Error, ValueError, RecursionError):  # UnicodeDecodeError and JSON errors are ValueErrors
        raise ParseError("not a JWS compact token", rule="token-format") from None
    if not isinstance(header, dict):
        raise ParseError("the JWS header is not a JSON object", rule="token-format")
    return header


def validate_credential_form(token: str) -> None:
    """ParseError unless ``token`` has the form of a credential: a compact JWS of at most
    :data:`MAX_CREDENTIAL` characters whose header says ``typ`` credential, an algorithm otward
    signs with and the signer's ``x5t#S256``, and whose payload is a JSON object. Nothing is
    verified (the answer does that); this only keeps junk from costing anything, such as a nonce."""
    if len(token) > MAX_CREDENTIAL:
        raise ParseError(
            f"credential too large (at most {MAX_CREDENTIAL} characters)", rule="credential-format"
        )
    if not _COMPACT.fullmatch(token):
        raise ParseError("credential is not a compact JWT", rule="credential-format")
    try:
        header = _unverified_header(token)
    except ParseError as exc:
        raise ParseError(f"credential: {exc.message}", rule="credential-format") from None
    algorithm = header.get("alg")
    if (
        header.get("typ") != CREDENTIAL_TYPE
        or not isinstance(algorithm, str)  # a list or an object is not hashable: not "in" a set
        or algorithm not in _ALGORITHMS
        or not isinstance(header.get("x5t#S256"), str)
        or not _THUMBPRINT.fullmatch(header["x5t#S256"])
        or "crit" in header
    ):
        raise ParseError(
            "credential header is not an otward credential's (typ, alg, x5t#S256)", rule="credential-format"
        )
    try:
        payload = json.loads(base64url_decode(token.split(".")[1]))
    except (binascii.Error, ValueError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        raise ParseError("credential payload is not a JSON object", rule="credential-format")


def bundle_signer_thumbprint(token: str) -> str | None:
    """The ``x5t#S256`` of the first certificate in a bundle's ``x5c``, read WITHOUT verification: for
    the issuing side to notice that a stored bundle was signed by an earlier signer. Never for trust."""
    try:
        x5c = _unverified_header(token.strip())["x5c"]
        certificate = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
    except (ParseError, binascii.Error, ValueError, TypeError, IndexError, KeyError):
        return None
    return certificate_thumbprint(certificate)


def unverified_bundle_timezone(token: str) -> str | None:
    """The site time zone a bundle claims, read WITHOUT verification: only to interpret a local time
    given on the command line before the bundle is verified as of that time. Never for a decision."""
    try:
        payload = json.loads(_JWS.decode(token.strip(), options={"verify_signature": False}))
        zone = payload["slice"]["timezone"]
    except (jwt.exceptions.PyJWTError, ValueError, KeyError, TypeError):
        return None
    return zone if isinstance(zone, str) else None
