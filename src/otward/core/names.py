"""Subject and subject-alternative-name values as plain, comparable data.

Profiles reason about names with these value objects instead of raw
``cryptography`` general names, so rules stay small and testable.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from otward.core.der import Tlv, decode_oid, validate_der
from otward.errors import InvalidRequestError, ParseError, PolicyViolationError

__all__ = [
    "MAX_URI_LENGTH",
    "SUBJECT_ATTRIBUTES",
    "SUBJECT_UPPER_BOUNDS",
    "SubjectAltNames",
    "build_san_extension",
    "dns_name_within",
    "is_valid_dns_name",
    "parse_san_extension",
    "subject_attribute_names",
    "validate_subject_der",
    "validate_uri",
]

# Short names used in profiles and messages, mapped to their OIDs.
SUBJECT_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
_OID_TO_SHORT = {oid: short for short, oid in SUBJECT_ATTRIBUTES.items()}
_DOTTED_TO_SHORT = {oid.dotted_string: short for short, oid in SUBJECT_ATTRIBUTES.items()}

SUBJECT_UPPER_BOUNDS: dict[str, int] = {
    "CN": 64,  # ub-common-name
    "O": 64,  # ub-organization-name
    "OU": 64,  # ub-organizational-unit-name
    "C": 2,  # CountryName: exactly two letters (ISO 3166)
    "ST": 128,  # ub-state-name
    "L": 128,  # ub-locality-name
    "serialNumber": 64,  # ub-serial-number
}
"""RFC 5280 Appendix A.1: the most characters each subject attribute may hold."""

MAX_URI_LENGTH = 1024
"""Longest URI SAN otward issues (RFC 5280 sets no bound; OPC UA application URIs are far shorter)."""

_UTF8_STRING, _PRINTABLE_STRING = 12, 19
_STRING_TYPES = {
    12: "UTF8String",
    19: "PrintableString",
    20: "TeletexString",
    22: "IA5String",
    28: "UniversalString",
    30: "BMPString",
    4: "OCTET STRING",
}
_PRINTABLE_ONLY = frozenset({"C", "serialNumber"})  # X520countryName, X520SerialNumber
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
# Control, surrogate and line/paragraph separator characters, and the bidirectional embeddings,
# overrides and isolates that make a name display as something else.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class SubjectAltNames:
    """The SAN entries of a request or certificate, grouped by type."""

    dns: tuple[str, ...] = ()
    ip: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = ()
    uri: tuple[str, ...] = ()
    email: tuple[str, ...] = ()
    other: tuple[str, ...] = field(default=())  # names of types otward never issues

    @property
    def is_empty(self) -> bool:
        return not (self.dns or self.ip or self.uri or self.email or self.other)

    def kinds(self) -> frozenset[str]:
        """The SAN types present, by the names profiles use (dns, ip, uri, email, ...)."""
        present = {
            name
            for name, values in (("dns", self.dns), ("ip", self.ip), ("uri", self.uri), ("email", self.email))
            if values
        }
        return frozenset(present | set(self.other))


def parse_san_extension(ext: x509.SubjectAlternativeName) -> SubjectAltNames:
    """Group a SAN extension's names; names of other types are kept by type name."""
    other = []
    for name in ext:
        if not isinstance(
            name, x509.DNSName | x509.IPAddress | x509.UniformResourceIdentifier | x509.RFC822Name
        ):
            other.append(type(name).__name__)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for value in ext.get_values_for_type(x509.IPAddress):
        if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise InvalidRequestError("IP address SAN must be an address, not a network", rule="san-ip")
        ips.append(value)
    return SubjectAltNames(
        dns=tuple(v.lower() for v in ext.get_values_for_type(x509.DNSName)),
        ip=tuple(ips),
        uri=tuple(ext.get_values_for_type(x509.UniformResourceIdentifier)),
        email=tuple(ext.get_values_for_type(x509.RFC822Name)),
        other=tuple(sorted(set(other))),
    )


def build_san_extension(sans: SubjectAltNames) -> x509.SubjectAlternativeName:
    """The SAN extension value for ``sans`` (types otward does not issue are dropped)."""
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in sans.dns]
    names += [x509.IPAddress(i) for i in sans.ip]
    names += [x509.UniformResourceIdentifier(u) for u in sans.uri]
    names += [x509.RFC822Name(e) for e in sans.email]
    return x509.SubjectAlternativeName(names)


def subject_attribute_names(subject: x509.Name) -> list[str]:
    """Short names of the attributes in ``subject`` (OID dotted string when unknown)."""
    return [_OID_TO_SHORT.get(attr.oid, attr.oid.dotted_string) for attr in subject]


def is_valid_dns_name(name: str) -> bool:
    """True for a lower-case LDH host name (RFC 1123), optionally with one leading ``*.`` label."""
    if not name or len(name) > 253 or name != name.lower():
        return False
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            return False
    return all(_DNS_LABEL.fullmatch(label) for label in labels)


def dns_name_within(name: str, permitted: str) -> bool:
    """RFC 5280 dNSName constraint: ``name`` equals ``permitted`` or is below it."""
    permitted = permitted.lower().lstrip(".")
    name = name.lower()
    return name == permitted or name.endswith("." + permitted)


def validate_uri(uri: str) -> None:
    """Raise unless ``uri`` is an absolute URI (scheme and, for ``urn``, a namespace)."""
    parts = urlsplit(uri)
    if not parts.scheme or not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9+.-]*", parts.scheme):
        raise PolicyViolationError(f"uri '{uri}' is not an absolute URI", rule="san-uri")
    if len(uri) > MAX_URI_LENGTH:
        raise PolicyViolationError(f"uri is longer than {MAX_URI_LENGTH} characters", rule="san-uri")
    if any(ch.isspace() for ch in uri) or not uri.isascii() or not uri.isprintable():
        raise PolicyViolationError(f"uri '{uri}' contains spaces or non-ASCII characters", rule="san-uri")
    if parts.scheme.lower() == "urn" and ":" not in parts.path:
        raise PolicyViolationError(f"urn '{uri}' lacks a namespace", rule="san-uri")
    if parts.scheme.lower() != "urn" and not parts.netloc and not parts.path:
        raise PolicyViolationError(f"uri '{uri}' is empty after its scheme", rule="san-uri")


def _subject_error(message: str, rule: str) -> PolicyViolationError:
    return PolicyViolationError(message, rule=rule)


def _attribute_value(short: str, value: Tlv) -> str:
    """The text of one attribute value after RFC 5280's string-type rules for its attribute."""
    kind = (value.tag_class, value.number, value.constructed)
    allowed = (_PRINTABLE_STRING,) if short in _PRINTABLE_ONLY else (_PRINTABLE_STRING, _UTF8_STRING)
    if kind[0] != 0 or kind[2] or kind[1] not in allowed:
        name = _STRING_TYPES.get(value.number, f"tag {value.number}") if kind[0] == 0 else "a tagged value"
        wanted = " or ".join(_STRING_TYPES[n] for n in allowed)
        raise _subject_error(
            f"subject {short} is encoded as {name}; RFC 5280 allows {wanted} here", "subject-string-type"
        )
    try:
        text = value.content.decode("utf-8" if value.number == _UTF8_STRING else "ascii")
    except UnicodeDecodeError:
        raise ParseError(
            f"subject {short} is not valid {_STRING_TYPES[value.number]}", rule="subject-string-type"
        ) from None
    if value.number == _PRINTABLE_STRING and not _PRINTABLE.fullmatch(text):
        raise _subject_error(
            f"subject {short} has characters a PrintableString cannot hold", "subject-string-type"
        )
    return text


def _validate_text(short: str, text: str) -> None:
    bad = next(
        (c for c in text if unicodedata.category(c) in _FORBIDDEN_CATEGORIES or c in _BIDI_CONTROLS), None
    )
    if bad is not None:
        raise _subject_error(
            f"subject {short} contains the control character U+{ord(bad):04X}", "subject-characters"
        )
    if not text.strip():
        raise _subject_error(f"subject {short} is empty", "subject-value")
    bound = SUBJECT_UPPER_BOUNDS[short]
    if len(text) > bound:
        raise _subject_error(
            f"subject {short} has {len(text)} characters; RFC 5280 allows at most {bound}", "subject-length"
        )
    if short == "C" and not re.fullmatch(r"[A-Z]{2}", text):
        raise _subject_error("subject C must be a two-letter country code", "subject-value")


def validate_subject_der(der: bytes) -> None:
    """Raise unless the DER ``Name`` follows RFC 5280's rules for the attributes otward knows.

    Each RDN holds one attribute; known attributes are PrintableString or UTF8String (C and
    serialNumber PrintableString only), within the upper bounds of RFC 5280 Appendix A, without
    control characters. Which attributes a certificate may carry, and how often, is the profile's
    call (:mod:`otward.core.issuance`).
    """
    try:
        name = validate_der(der)
    except ParseError as exc:
        raise ParseError(f"the subject is not DER ({exc.message})", rule="csr-der") from None
    if (name.tag_class, name.number, name.constructed) != (0, 16, True):
        raise ParseError("subject is not a Name", rule="csr-format")
    for rdn in name.children():
        members = rdn.children()
        if (rdn.tag_class, rdn.number) != (0, 17) or len(members) != 1:
            raise _subject_error(
                "a subject RDN must hold exactly one attribute (no multi-valued RDNs)", "subject-rdn"
            )
        parts = members[0].children()
        if len(parts) != 2:
            raise ParseError("subject attribute is not a type and a value", rule="csr-format")
        short = _DOTTED_TO_SHORT.get(decode_oid(parts[0]))
        if short is None:
            continue  # an attribute otward does not know: no profile allows it
        _validate_text(short, _attribute_value(short, parts[1]))
