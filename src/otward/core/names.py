"""Subject and subject-alternative-name values as plain, comparable data.

Profiles reason about names with these value objects instead of raw
``cryptography`` general names, so rules stay small and testable.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from otward.errors import InvalidRequestError, PolicyViolationError

__all__ = [
    "SUBJECT_ATTRIBUTES",
    "SubjectAltNames",
    "build_san_extension",
    "dns_name_within",
    "is_valid_dns_name",
    "parse_san_extension",
    "subject_attribute_names",
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
    if any(ch.isspace() for ch in uri) or not uri.isascii():
        raise PolicyViolationError(f"uri '{uri}' contains spaces or non-ASCII characters", rule="san-uri")
    if parts.scheme.lower() == "urn" and ":" not in parts.path:
        raise PolicyViolationError(f"urn '{uri}' lacks a namespace", rule="san-uri")
    if parts.scheme.lower() != "urn" and not parts.netloc and not parts.path:
        raise PolicyViolationError(f"uri '{uri}' is empty after its scheme", rule="san-uri")
