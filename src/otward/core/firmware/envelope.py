"""The signed envelope: CMS SignedData (RFC 5652) with the manifest JSON as its content.

CMS is what firmware signing already speaks (RFC 4108 protects firmware packages with it; the Linux
kernel's module signatures and UEFI Authenticode are PKCS#7/CMS), so ``openssl cms -verify`` checks an
otward manifest and otward checks one that ``openssl cms -sign`` made. Signing goes through
``cryptography``'s PKCS#7 builder; ``cryptography`` has no CMS verifier, so the structure is decoded
with pyasn1 against the RFC 5652 module of ``pyasn1-alt-modules`` (no hand-written ASN.1) after
:func:`otward.core.der.validate_der` made sure the bytes are strict DER, and every signature is still
verified by ``cryptography``.

The algorithm policy is the one of issue 15: RSA of at least 2048 bits (PKCS#1 v1.5 or PSS) and ECDSA
on P-256 or P-384, with SHA-256, SHA-384 or SHA-512. Everything else (RSA-1024, SHA-1, MD5, Ed25519,
P-521, DSA) is refused when signing and when verifying, with rule ``firmware.algorithm.weak``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs7
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc4055, rfc5652

from otward.core.chain import UNREADABLE_CERTIFICATE
from otward.core.der import validate_der
from otward.errors import (
    IntegrityError,
    InvalidRequestError,
    ParseError,
    UnsupportedAlgorithmError,
)

__all__ = [
    "RsaPadding",
    "SignedContent",
    "hash_for_name",
    "open_signed_content",
    "sign_content",
    "validate_signing_key",
]

RsaPadding = Literal["pss", "pkcs1v15"]

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_HASH_NAMES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_RSA_ENCRYPTION: Final = "1.2.840.113549.1.1.1"
_RSA_PSS: Final = "1.2.840.113549.1.1.10"
_MGF1: Final = "1.2.840.113549.1.1.8"
_RSA_PKCS1: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
_ECDSA: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
_ID_DATA: Final = "1.2.840.113549.1.7.1"
_ID_SIGNED_DATA: Final = "1.2.840.113549.1.7.2"
_CONTENT_TYPE: Final = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST: Final = "1.2.840.113549.1.9.4"
_CURVES: Final = frozenset({"secp256r1", "secp384r1"})
_MAX_SALT: Final = 512  # bytes; RSA-4096 with SHA-512 allows at most 446
_WEAK = "firmware.algorithm.weak"
_UNREADABLE = "firmware.manifest.unreadable"
_INVALID = "firmware.signature.invalid"


@dataclass(frozen=True)
class SignedContent:
    """The content of a SignedData whose signature verified, with the signer's certificate, the
    other certificates it carried (untrusted until a path is found) and the algorithms used."""

    content: bytes
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    algorithm: str  # for evidence: "ECDSA P-256 with SHA-256", "RSA-3072 PSS with SHA-384"


def hash_for_name(name: str) -> hashes.HashAlgorithm:
    """``sha256``/``sha-256`` → SHA256(); SHA-1, MD5 and the rest are refused."""
    canonical = name.strip().lower().replace("-", "")
    if canonical not in _HASH_NAMES:
        raise UnsupportedAlgorithmError(
            f"hash {name!r} is not accepted for firmware signatures (sha256, sha384 or sha512)", rule=_WEAK
        )
    return _HASH_NAMES[canonical]()


def validate_signing_key(key: CertificatePublicKeyTypes) -> str:
    """None-or-raise for the signer key policy; returns a description (``RSA-2048``, ``ECDSA P-256``)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise UnsupportedAlgorithmError(
                f"RSA key of {key.key_size} bits is refused for firmware signatures (minimum 2048)",
                rule=_WEAK,
            )
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise UnsupportedAlgorithmError(
                f"elliptic curve {key.curve.name} is refused for firmware signatures (P-256 or P-384)",
                rule=_WEAK,
            )
        return f"ECDSA P-{key.curve.key_size}"
    raise UnsupportedAlgorithmError(
        f"{type(key).__name__.removeprefix('_').replace('PublicKey', '')} keys are refused for firmware "
        "signatures (RSA >= 2048 or ECDSA P-256/P-384)",
        rule=_WEAK,
    )


def sign_content(
    content: bytes,
    certificate: x509.Certificate,
    key: PrivateKeyTypes,
    chain: Sequence[x509.Certificate],
    hash_algorithm: hashes.HashAlgorithm,
    rsa_padding: RsaPadding = "pss",
) -> bytes:
    """A DER CMS SignedData holding ``content`` (attached, binary, with signed attributes), signed by
    ``key`` for ``certificate`` and carrying ``certificate`` and ``chain``."""
    public = key.public_key()
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        validate_signing_key(public)  # type: ignore[arg-type]  # raises with the refused type's name
        raise UnsupportedAlgorithmError("key type refused", rule=_WEAK)  # pragma: no cover - unreachable
    validate_signing_key(public)
    hash_for_name(hash_algorithm.name)
    if public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise InvalidRequestError(
            f"the signing key does not belong to the certificate {certificate.subject.rfc4514_string()}",
            rule="firmware.key-mismatch",
        )
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)  # noqa: S101 - checked above
    builder = pkcs7.PKCS7SignatureBuilder().set_data(content)
    if isinstance(key, rsa.RSAPrivateKey):
        pad: padding.PSS | padding.PKCS1v15 = (
            padding.PSS(mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.DIGEST_LENGTH)
            if rsa_padding == "pss"
            else padding.PKCS1v15()
        )
        builder = builder.add_signer(certificate, key, hash_algorithm, rsa_padding=pad)  # type: ignore[arg-type]
    else:
        builder = builder.add_signer(certificate, key, hash_algorithm)  # type: ignore[arg-type]
    for extra in chain:
        builder = builder.add_certificate(extra)
    return builder.sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCapabilities]
    )


def open_signed_content(data: bytes) -> SignedContent:
    """Decode a DER CMS SignedData, check its one signer's signature and the algorithm policy, and
    return the content. Raises ParseError (``firmware.manifest.unreadable``, or
    ``firmware.signature.missing`` for an unsigned manifest), UnsupportedAlgorithmError
    (``firmware.algorithm.weak``) or IntegrityError (``firmware.signature.invalid``)."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        raise ParseError(
            "the manifest is not signed (plain JSON, no CMS SignedData around it)",
            rule="firmware.signature.missing",
        )
    if stripped.startswith(b"-----BEGIN"):
        raise ParseError("the manifest must be DER CMS SignedData, not PEM", rule=_UNREADABLE)
    if not data:
        _unreadable("the manifest is empty")
    try:
        validate_der(data)
    except ParseError as exc:
        raise ParseError(f"the manifest is not strict DER ({exc.message})", rule=_UNREADABLE) from None
    try:
        info, rest = decoder.decode(data, asn1Spec=rfc5652.ContentInfo())
        if rest:
            _unreadable("bytes follow the CMS structure")
        if str(info["contentType"]) != _ID_SIGNED_DATA:
            raise ParseError(
                f"the manifest is CMS {info['contentType']}, not SignedData",
                rule="firmware.signature.missing",
            )
        signed, rest = decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
        if rest:
            _unreadable("bytes follow the SignedData")
    except PyAsn1Error as exc:
        raise ParseError(f"the manifest is not CMS SignedData ({exc})", rule=_UNREADABLE) from None
    signer_infos = signed["signerInfos"]
    if len(signer_infos) == 0:
        raise ParseError("the CMS SignedData carries no signature", rule="firmware.signature.missing")
    if len(signer_infos) != 1:
        _unreadable(f"the CMS SignedData carries {len(signer_infos)} signatures; exactly one is expected")
    encapsulated = signed["encapContentInfo"]
    if str(encapsulated["eContentType"]) != _ID_DATA:
        _unreadable(f"the signed content type is {encapsulated['eContentType']}, not id-data")
    if not encapsulated["eContent"].isValue:
        _unreadable("the signed content is detached; the manifest must be inside the SignedData")
    content = bytes(encapsulated["eContent"])
    certificates = _certificates(signed)
    signer_info = signer_infos[0]
    signer = _find_signer(signer_info["sid"], certificates)
    description = validate_signing_key(signer.public_key())
    digest_oid = str(signer_info["digestAlgorithm"]["algorithm"])
    if digest_oid not in _HASHES:
        raise UnsupportedAlgorithmError(
            f"digest algorithm {_name(digest_oid)} is refused (SHA-256, SHA-384 or SHA-512)", rule=_WEAK
        )
    digest = _HASHES[digest_oid]()
    attributes = signer_info["signedAttrs"]
    if not attributes.isValue or len(attributes) == 0:
        _unreadable("the signature has no signed attributes (contentType and messageDigest are required)")
    content_types = _attribute(attributes, _CONTENT_TYPE)
    message_digests = _attribute(attributes, _MESSAGE_DIGEST)
    if len(content_types) != 1 or len(message_digests) != 1:
        _unreadable("the signed attributes need exactly one contentType and one messageDigest")
    try:
        content_type, _ = decoder.decode(content_types[0], asn1Spec=univ.ObjectIdentifier())
        expected, _ = decoder.decode(message_digests[0], asn1Spec=univ.OctetString())
    except PyAsn1Error as exc:
        raise ParseError(f"a signed attribute does not parse ({exc})", rule=_UNREADABLE) from None
    if str(content_type) != _ID_DATA:
        _unreadable("the contentType attribute does not match the content")
    hasher = hashes.Hash(digest)
    hasher.update(content)
    if not hmac.compare_digest(hasher.finalize(), bytes(expected)):
        raise IntegrityError("the manifest does not match its signed digest (tampered)", rule=_INVALID)
    signed_attributes = bytearray(encoder.encode(attributes))
    signed_attributes[0] = 0x31  # [0] IMPLICIT on the wire; the signature covers the SET OF (RFC 5652 5.4)
    scheme = _verify(
        signer.public_key(),
        signer_info["signatureAlgorithm"],
        digest,
        bytes(signed_attributes),
        bytes(signer_info["signature"]),
    )
    others = tuple(c for c in certificates if c != signer)
    scheme = f"{description} {scheme}" if scheme else description
    return SignedContent(content, signer, others, f"{scheme} with SHA-{digest.digest_size * 8}")


def _verify(
    key: CertificatePublicKeyTypes,
    algorithm: rfc5652.SignatureAlgorithmIdentifier,
    digest: hashes.HashAlgorithm,
    data: bytes,
    signature: bytes,
) -> str:
    oid = str(algorithm["algorithm"])
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if oid not in _ECDSA:
                raise _refused(oid, "ECDSA")
            _same_hash(_ECDSA[oid](), digest)
            key.verify(signature, data, ec.ECDSA(digest))
            return ""
        assert isinstance(key, rsa.RSAPublicKey)  # noqa: S101 - validate_signing_key let only RSA/EC pass
        if oid == _RSA_PSS:
            pss = _pss_padding(algorithm, digest)
            key.verify(signature, data, pss, digest)
            return "PSS"
        if oid == _RSA_ENCRYPTION or oid in _RSA_PKCS1:
            if oid in _RSA_PKCS1:
                _same_hash(_RSA_PKCS1[oid](), digest)
            key.verify(signature, data, padding.PKCS1v15(), digest)
            return "PKCS#1 v1.5"
        raise _refused(oid, "RSA")
    except InvalidSignature:
        raise IntegrityError(
            "the manifest's signature does not verify with the signer's key", rule=_INVALID
        ) from None


def _pss_padding(
    algorithm: rfc5652.SignatureAlgorithmIdentifier, digest: hashes.HashAlgorithm
) -> padding.PSS:
    if not algorithm["parameters"].isValue:
        raise UnsupportedAlgorithmError("RSASSA-PSS without parameters means SHA-1; refused", rule=_WEAK)
    try:
        params, _ = decoder.decode(bytes(algorithm["parameters"]), asn1Spec=rfc4055.RSASSA_PSS_params())
        hash_oid = str(params["hashAlgorithm"]["algorithm"]) if params["hashAlgorithm"].isValue else "sha1"
        mgf = params["maskGenAlgorithm"]
        if not mgf.isValue or str(mgf["algorithm"]) != _MGF1:
            raise UnsupportedAlgorithmError("RSASSA-PSS must use MGF1 with SHA-2", rule=_WEAK)
        mgf_hash, _ = decoder.decode(bytes(mgf["parameters"]), asn1Spec=rfc5652.DigestAlgorithmIdentifier())
        salt = int(params["saltLength"])
    except PyAsn1Error as exc:
        raise ParseError(f"RSASSA-PSS parameters do not parse ({exc})", rule=_UNREADABLE) from None
    if hash_oid not in _HASHES or str(mgf_hash["algorithm"]) not in _HASHES:
        raise UnsupportedAlgorithmError("RSASSA-PSS with SHA-1 (or an unknown hash) is refused", rule=_WEAK)
    _same_hash(_HASHES[hash_oid](), digest)
    _same_hash(_HASHES[str(mgf_hash["algorithm"])](), digest)
    if not 0 <= salt <= _MAX_SALT:
        raise ParseError(f"RSASSA-PSS salt length {salt} is out of range", rule=_UNREADABLE)
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=salt)


def _same_hash(named: hashes.HashAlgorithm, digest: hashes.HashAlgorithm) -> None:
    if named.name != digest.name:
        raise UnsupportedAlgorithmError(
            f"the signature algorithm's hash ({named.name}) is not the digest algorithm ({digest.name})",
            rule=_WEAK,
        )


def _refused(oid: str, family: str) -> UnsupportedAlgorithmError:
    return UnsupportedAlgorithmError(
        f"signature algorithm {_name(oid)} is refused for a {family} key", rule=_WEAK
    )


_KNOWN_WEAK: Final = {
    "1.3.14.3.2.26": "SHA-1",
    "1.2.840.113549.2.5": "MD5",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.3.101.112": "Ed25519",
}


def _name(oid: str) -> str:
    return _KNOWN_WEAK.get(oid, oid)


def _attribute(attributes: rfc5652.SignedAttributes, oid: str) -> list[bytes]:
    values: list[bytes] = []
    for attribute in attributes:
        if str(attribute["attrType"]) == oid:
            values.extend(bytes(v) for v in attribute["attrValues"])
    return values


def _certificates(signed: rfc5652.SignedData) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    if not signed["certificates"].isValue:
        return certificates
    for choice in signed["certificates"]:
        if choice.getName() != "certificate":
            continue  # attribute certificates and other formats play no part here
        try:
            certificates.append(x509.load_der_x509_certificate(encoder.encode(choice["certificate"])))
        except (ValueError, UnsupportedAlgorithm, PyAsn1Error) as exc:
            raise ParseError(
                f"a certificate in the manifest does not parse ({exc})", rule=_UNREADABLE
            ) from None
    return certificates


def _find_signer(sid: rfc5652.SignerIdentifier, certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    kind = sid.getName()
    for certificate in certificates:
        try:
            if not _is_signer(kind, sid, certificate):
                continue
        except UNREADABLE_CERTIFICATE:
            continue  # a carried certificate that cannot be read is not the signer's
        try:
            _readable(certificate)
        except UNREADABLE_CERTIFICATE:
            raise ParseError("the signer's certificate does not parse", rule=_UNREADABLE) from None
        return certificate
    raise ParseError("the manifest does not carry its signer's certificate", rule=_UNREADABLE)


def _readable(certificate: x509.Certificate) -> None:
    """Parse what verification reads of the signer's certificate now (cryptography parses lazily), so
    an unreadable one is refused here rather than failing later with a foreign exception."""
    certificate.subject.rfc4514_string()
    certificate.public_key()
    for _ in certificate.extensions:
        pass


def _is_signer(kind: str, sid: rfc5652.SignerIdentifier, certificate: x509.Certificate) -> bool:
    if kind == "issuerAndSerialNumber":
        issuer = encoder.encode(sid["issuerAndSerialNumber"]["issuer"])
        return bool(
            int(sid["issuerAndSerialNumber"]["serialNumber"]) == certificate.serial_number
            and issuer == certificate.issuer.public_bytes()
        )
    if kind == "subjectKeyIdentifier":
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except x509.ExtensionNotFound:
            return False
        return hmac.compare_digest(ski, bytes(sid["subjectKeyIdentifier"]))
    return False


def _unreadable(message: str) -> NoReturn:
    raise ParseError(message, rule=_UNREADABLE)
