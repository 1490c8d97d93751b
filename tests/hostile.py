"""Hostile CSRs built from raw DER, for inputs that ``cryptography``'s builders refuse to make.

Each request is signed with a real P-256 key (ecdsa-with-SHA256), so it passes the signature
check and reaches the checks on its content. Tag numbers are ASN.1 universal tags.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "BMP_STRING",
    "IA5_STRING",
    "OCTET_STRING",
    "OID_C",
    "OID_CN",
    "OID_L",
    "OID_O",
    "OID_OU",
    "PRINTABLE_STRING",
    "TELETEX_STRING",
    "UNIVERSAL_STRING",
    "UTF8_STRING",
    "attribute",
    "hostile_csr",
    "tlv",
]

OCTET_STRING, UTF8_STRING, PRINTABLE_STRING, TELETEX_STRING = 0x04, 0x0C, 0x13, 0x14
IA5_STRING, UNIVERSAL_STRING, BMP_STRING = 0x16, 0x1C, 0x1E
OID_CN, OID_O, OID_OU, OID_C, OID_L = "2.5.4.3", "2.5.4.10", "2.5.4.11", "2.5.4.6", "2.5.4.7"
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"


def tlv(tag: int, content: bytes, *, long_form: bool = False) -> bytes:
    """One TLV; ``long_form`` writes the length in a needless long form (BER, not DER)."""
    size = len(content)
    if size < 0x80 and not long_form:
        return bytes([tag, size]) + content
    octets = size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def attribute(kind: str, value: str | bytes, tag: int = UTF8_STRING) -> bytes:
    """An AttributeTypeAndValue; a str value is encoded as the string type's alphabet needs."""
    if isinstance(value, str):
        codec = {BMP_STRING: "utf-16-be", UNIVERSAL_STRING: "utf-32-be"}.get(tag, "utf-8")
        value = value.encode(codec)
    return tlv(0x30, oid(kind) + tlv(tag, value))


def _sorted_set(members: Sequence[bytes]) -> bytes:
    return tlv(0x31, b"".join(sorted(members)))


def hostile_csr(
    key: ec.EllipticCurvePrivateKey | None = None,
    *,
    rdns: Sequence[Sequence[bytes] | bytes] = (),
    extensions: Sequence[tuple[str, bytes]] = (),
    der_subject: bytes | None = None,
) -> bytes:
    """A DER CSR: each entry of ``rdns`` is one attribute (or a list: a multi-valued RDN),
    ``extensions`` are (OID, extnValue) pairs requested non-critical, ``der_subject`` replaces the
    whole subject encoding."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = der_subject
    if subject is None:
        subject = tlv(0x30, b"".join(_sorted_set(r if isinstance(r, list | tuple) else [r]) for r in rdns))
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attributes = b""
    if extensions:
        requested = tlv(0x30, b"".join(tlv(0x30, oid(o) + tlv(0x04, value)) for o, value in extensions))
        attributes = tlv(0x30, oid(_EXTENSION_REQUEST) + tlv(0x31, requested))
    info = tlv(0x30, bytes.fromhex("020100") + subject + spki + tlv(0xA0, attributes))
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, info + _ECDSA_SHA256 + tlv(0x03, b"\x00" + signature))
