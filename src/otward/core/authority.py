"""What issuance needs to know about an issuing authority, as plain values."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

__all__ = ["AuthorityInfo", "PublicationUrls", "issuing_ca_name"]

# The end of a caIssuers URL otward writes (the public URL may have a path of its own).
_CA_ISSUERS_PATH = re.compile(r"/ca/([a-z0-9][a-z0-9-]{0,62})\.crt\Z")


@dataclass(frozen=True)
class PublicationUrls:
    """Where relying parties fetch status for certificates of one CA (RFC 5280 CDP, AIA)."""

    crl: str
    ocsp: str
    ca_issuers: str

    @classmethod
    def for_ca(cls, base_url: str, ca_name: str) -> PublicationUrls:
        """The URLs otward serves for ``ca_name`` under ``base_url`` (plain HTTP, as clients expect)."""
        base = base_url.rstrip("/")
        return cls(
            crl=f"{base}/crl/{ca_name}.crl", ocsp=f"{base}/ocsp", ca_issuers=f"{base}/ca/{ca_name}.crt"
        )


@dataclass(frozen=True)
class AuthorityInfo:
    """An issuing CA: its name, certificate and the constraints it imposes on what it signs."""

    name: str
    certificate: x509.Certificate
    urls: PublicationUrls

    @property
    def path_length(self) -> int | None:
        return self.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length

    @property
    def permitted_dns(self) -> tuple[str, ...]:
        """dNSName permitted subtrees of the CA's name constraints (empty when unconstrained)."""
        try:
            nc = self.certificate.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return ()
        return tuple(n.value for n in (nc.permitted_subtrees or ()) if isinstance(n, x509.DNSName))

    @property
    def permitted_ip(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """iPAddress permitted subtrees of the CA's name constraints (empty when unconstrained)."""
        try:
            nc = self.certificate.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return ()
        return tuple(
            n.value
            for n in (nc.permitted_subtrees or ())
            if isinstance(n, x509.IPAddress)
            and isinstance(n.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
        )


def issuing_ca_name(certificate: x509.Certificate) -> str | None:
    """The name of the otward CA that issued ``certificate``, read from the caIssuers URL it carries
    (``<public_url>/ca/<name>.crt``, :meth:`PublicationUrls.for_ca`); None when it carries none.

    A hint where to look, not a proof: whatever is fetched by that name must still chain to a
    trusted root (the device agent fetches the CA's chain from its pinned server, ``/cacerts``)."""
    try:
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return None
    for description in access:
        if description.access_method != x509.oid.AuthorityInformationAccessOID.CA_ISSUERS:
            continue
        location = description.access_location
        if not isinstance(location, x509.UniformResourceIdentifier):
            continue
        found = _CA_ISSUERS_PATH.search(urlsplit(location.value).path)
        if found:
            return found.group(1)
    return None
