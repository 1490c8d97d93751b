"""Who a verified client certificate names: identity, Modbus role and revocation keys.

The role is read from the DER of the peer certificate because Python's ``getpeercert()``
does not show custom extensions (NOTES: the Modbus/TCP Security role extension).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from otward.core.extensions import MODBUS_ROLE_OID, decode_modbus_role
from otward.core.identity import DeviceName, device_name
from otward.errors import OtwardError
from otward.gateway.revocation import chain_keys

__all__ = ["IdentityCache", "PeerIdentity", "ca_chains", "peer_identity"]


@dataclass(frozen=True)
class PeerIdentity:
    """What the gateway knows of a verified client certificate."""

    common_name: str | None
    uris: tuple[str, ...]
    serial_number: int
    role: str | None
    role_error: str | None
    chain: tuple[tuple[bytes, int], ...]
    device: DeviceName | None = None  # set when the certificate is an enrolled device's

    @property
    def name(self) -> str:
        if self.device is not None:
            return self.device.uri
        return self.common_name or (self.uris[0] if self.uris else f"serial:{self.serial_number:x}")

    def matches(self, allowed: frozenset[str]) -> bool:
        """True when an allow-list entry names this peer. A device is named only by its device URI
        (``urn:otward:device:<owner>:<id>``), never by its CN: a device enrolled with the CN
        ``hmi-operator`` is not the operator station an administrator certified under that name."""
        if self.device is not None:
            return self.device.uri in allowed
        return (self.common_name is not None and self.common_name in allowed) or any(
            uri in allowed for uri in self.uris
        )


@functools.lru_cache(maxsize=256)
def _role(value: bytes) -> tuple[str | None, str | None]:
    """(role, error) of a role extension value; cached because a site has a handful of roles."""
    try:
        return decode_modbus_role(value), None
    except OtwardError as exc:
        return None, exc.message


def peer_identity(
    der: bytes,
    trusted: list[x509.Certificate],
    ca_chains: Mapping[bytes, tuple[tuple[bytes, int], ...]] | None = None,
) -> PeerIdentity:
    """Identity, role and revocation keys from the DER of a verified peer certificate.

    The role is read from the DER because ``getpeercert()`` does not show custom
    extensions; a role that is not a DER UTF8String is recorded as an error, never guessed.
    ``ca_chains`` (from :func:`ca_chains`) saves walking the trust list per connection.
    """
    certificate = x509.load_der_x509_certificate(der)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    common_name = str(names[0].value) if names else None
    uris: tuple[str, ...] = ()
    role: str | None = None
    role_error: str | None = None
    for extension in certificate.extensions:
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName):
            uris = tuple(value.get_values_for_type(x509.UniformResourceIdentifier))
        elif extension.oid == MODBUS_ROLE_OID and isinstance(value, x509.UnrecognizedExtension):
            role, role_error = _role(value.value)
    if ca_chains is None:
        chain = chain_keys(certificate, trusted)
    else:
        issuer = certificate.issuer.public_bytes()
        chain = ((issuer, certificate.serial_number), *ca_chains.get(issuer, ()))
    return PeerIdentity(
        common_name=common_name,
        uris=uris,
        serial_number=certificate.serial_number,
        role=role,
        role_error=role_error,
        chain=chain,
        device=device_name(certificate),
    )


def ca_chains(trusted: list[x509.Certificate]) -> dict[bytes, tuple[tuple[bytes, int], ...]]:
    """For each trusted CA (by subject DER), the revocation keys of it and the CAs above it."""
    result: dict[bytes, tuple[tuple[bytes, int], ...]] = {}
    for certificate in trusted:
        subject = certificate.subject.public_bytes()
        if certificate.subject == certificate.issuer:
            result.setdefault(subject, ())
        else:
            result[subject] = chain_keys(certificate, trusted)
    return result


class IdentityCache:
    """Parsed peer certificates by DER: devices reconnect with the same certificate.

    Only the parse is cached (a certificate never changes); revocation, the
    allow-list and the policy are checked again on every connection.
    """

    def __init__(self, trusted: list[x509.Certificate], size: int = 4096) -> None:
        self.trusted = trusted
        self.chains = ca_chains(trusted)
        self.size = size
        self._entries: OrderedDict[bytes, PeerIdentity] = OrderedDict()

    def get(self, der: bytes) -> PeerIdentity:
        peer = self._entries.get(der)
        if peer is None:
            peer = peer_identity(der, self.trusted, self.chains)
            self._entries[der] = peer
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(der)
        return peer
