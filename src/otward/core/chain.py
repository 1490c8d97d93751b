"""Certification paths from a certificate to a trust anchor, checked the way RFC 5280 §6 asks.

``cryptography.x509.verification`` applies the Web PKI's rules, which refuse the Ed25519 keys
otward supports for its CAs; so the relying parts inside otward (the audit trail's head signers,
the edge gatekeeper's bundle and credential signers) find and check their paths here. Each
signature is still verified by ``cryptography``; what this module adds is the walk: issuer names,
validity at the time asked for, basicConstraints cA and pathLenConstraint, keyUsage keyCertSign,
name constraints on DNS and IP names, and no unknown critical extension anywhere on the path.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from otward.core.names import dns_name_within

__all__ = [
    "MAX_PATH",
    "UNREADABLE_CERTIFICATE",
    "find_path",
    "has_extended_key_usage",
    "has_unknown_critical_extension",
    "names_host",
]

MAX_PATH = 6  # leaf, at most four CAs, anchor: deeper than any installation otward builds

# cryptography parses names, extensions and keys when they are first read and raises these there (a
# TypeError for an attribute of a type its OID does not allow): an untrusted certificate that raises
# one is unreadable, which a verifier refuses like any other certificate that does not verify.
UNREADABLE_CERTIFICATE = (ValueError, TypeError, x509.DuplicateExtension, UnsupportedAlgorithm)


def has_unknown_critical_extension(certificate: x509.Certificate) -> bool:
    """True when the certificate carries a critical extension this verifier does not process (RFC 5280
    §4.2: such a certificate must be rejected), or extensions that do not parse."""
    try:
        extensions = certificate.extensions
    except ValueError:
        return True
    return any(e.critical and isinstance(e.value, x509.UnrecognizedExtension) for e in extensions)


def names_host(certificate: x509.Certificate, host: str) -> bool:
    """True when a subjectAltName of ``certificate`` names ``host`` (RFC 6125): an IP address by an
    iPAddress entry, a host name by a dNSName compared without case, ``*.`` standing for exactly one
    left-most label. The subject CN is not consulted."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    wanted = host.lower().rstrip(".")
    for name in san.get_values_for_type(x509.DNSName):
        pattern = name.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def has_extended_key_usage(certificate: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    """True when the certificate's EKU lists ``usage`` (or anyExtendedKeyUsage), or it has no EKU."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except ValueError:
        return False
    return usage in usages or x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def find_path(
    leaf: x509.Certificate,
    candidates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate] | None:
    """A path ``[leaf, CA..., anchor]`` through CA certificates among ``candidates`` (untrusted) to one
    of ``anchors``, every certificate valid at ``at``; None when there is none.

    Depth first, so a forged CA that carries the right name is tried and left behind. The leaf's own
    purpose (EKU, keyUsage) is the caller's to check.
    """
    try:
        if has_unknown_critical_extension(leaf):
            return None
        path = _extend([leaf], candidates, anchors, at)
        if path is None or not _within_name_constraints(leaf, path[1:]):
            return None
    except UNREADABLE_CERTIFICATE:
        return None  # a certificate on the way that cannot be read chains nowhere
    return path


def _extend(
    path: list[x509.Certificate],
    candidates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate] | None:
    current = path[-1]
    if not _valid_at(current, at):
        return None
    for anchor in anchors:
        if anchor.subject == current.issuer and _valid_at(anchor, at) and _issued_by(current, anchor):
            return [*path, anchor]
    if len(path) >= MAX_PATH - 1:
        return None
    for ca in candidates:
        if (
            ca.subject == current.issuer
            and ca not in path
            and _may_issue(ca, len(path) - 1)
            and _issued_by(current, ca)
        ):
            found = _extend([*path, ca], candidates, anchors, at)
            if found is not None:
                return found
    return None


def _valid_at(certificate: x509.Certificate, at: datetime) -> bool:
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _may_issue(ca: x509.Certificate, cas_below: int) -> bool:
    """basicConstraints cA with a pathLen that allows ``cas_below`` CAs under it, keyCertSign, and no
    unknown critical extension (an intermediate taken from untrusted input)."""
    if has_unknown_critical_extension(ca):
        return False
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca or not usage.key_cert_sign:
        return False
    return constraints.path_length is None or constraints.path_length >= cas_below


def _within_name_constraints(leaf: x509.Certificate, issuers: Sequence[x509.Certificate]) -> bool:
    """The leaf's DNS and IP SANs within every issuer's permitted subtrees and outside its excluded
    ones; an issuer constraining other name forms than these fails closed."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    dns_names = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    addresses = san.get_values_for_type(x509.IPAddress)
    for issuer in issuers:
        try:
            constraints = issuer.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        for subtrees, permitted in (
            (constraints.permitted_subtrees, True),
            (constraints.excluded_subtrees, False),
        ):
            if subtrees is None:
                continue
            if any(not isinstance(s, x509.DNSName | x509.IPAddress) for s in subtrees):
                return False
            dns_trees = [s.value for s in subtrees if isinstance(s, x509.DNSName)]
            ip_trees = [s.value for s in subtrees if isinstance(s, x509.IPAddress)]
            for name in dns_names:
                inside = any(dns_name_within(name.removeprefix("*."), tree) for tree in dns_trees)
                if (permitted and dns_trees and not inside) or (not permitted and inside):
                    return False
            for address in addresses:
                inside = any(_in_network(address, tree) for tree in ip_trees)
                if (permitted and ip_trees and not inside) or (not permitted and inside):
                    return False
    return True


def _in_network(address: object, network: object) -> bool:
    return (
        isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
        and isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
        and address.version == network.version
        and address in network
    )
