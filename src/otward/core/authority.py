"""What issuance needs to know about an issuing authority, as plain values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509

__all__ = ["AuthorityInfo", "PublicationUrls"]


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
