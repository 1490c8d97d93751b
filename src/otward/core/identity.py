"""Who a client certificate names, in one namespace per kind of identity.

otward issues two kinds of client identities from the same CAs: devices, enrolled by
themselves with an owner's token, and clients an administrator certified (operator
stations, service accounts, Modbus roles, OPC UA applications). A relying party must never
take one for the other. Two rules keep them apart:

* a device certificate carries ``urn:otward:device:<owner>:<device-id>`` in its SAN, which
  only otward sets (a CSR asking for any ``urn:otward:`` URI is refused), so a verifier that
  reads the certificate knows a device when it sees one (:func:`device_name`);
* the CN — all that CN-based relying parties such as Mosquitto's ``use_identity_as_username``
  see — belongs to one namespace for good: the first certificate issued with a CN claims it
  for its kind, and a certificate of the other kind with that CN is refused
  (:func:`client_name`; the claim is made in the transaction that stores the certificate).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEVICE_URI_PREFIX",
    "ClientName",
    "DeviceName",
    "Namespace",
    "client_name",
    "device_name",
    "device_uri",
]

DEVICE_URI_PREFIX = "urn:otward:device:"


def device_uri(owner: str, device_id: str) -> str:
    """The URI SAN that names a device and its owner: ``urn:otward:device:<owner>:<device-id>``."""
    return f"{DEVICE_URI_PREFIX}{owner}:{device_id}"


class Namespace(enum.Enum):
    """The kinds of client identity whose names must never collide."""

    DEVICE = "device"  # enrolled by the device (EST, pre-provisioning): the CN is the device id
    CLIENT = "client"  # certified by an administrator: operator stations, roles, OPC UA applications


@dataclass(frozen=True)
class DeviceName:
    owner: str
    device_id: str

    @property
    def uri(self) -> str:
        return device_uri(self.owner, self.device_id)


@dataclass(frozen=True)
class ClientName:
    """The CN a client certificate authenticates with, and the namespace it belongs to."""

    namespace: Namespace
    name: str

    @property
    def key(self) -> str:
        """What two names are compared by: case-folded, since relying parties differ in case handling."""
        return self.name.casefold()


def device_name(certificate: x509.Certificate) -> DeviceName | None:
    """The device a certificate names by its otward device URI (owner and id), or None.

    A certificate with more than one device URI, or whose CN is not the device id, names none.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [
        u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(DEVICE_URI_PREFIX)
    ]
    if len(uris) != 1:
        return None
    owner, _, device_id = uris[0][len(DEVICE_URI_PREFIX) :].partition(":")
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not owner or not device_id or len(common_names) != 1 or common_names[0].value != device_id:
        return None
    return DeviceName(owner=owner, device_id=device_id)


def _authenticates_clients(certificate: x509.Certificate) -> bool:
    """True when a TLS server would accept the certificate as a client's: clientAuth or no EKU."""
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def client_name(certificate: x509.Certificate) -> ClientName | None:
    """The CN an end-entity certificate authenticates a TLS client with, in its namespace; None for a
    certificate that cannot authenticate a client or has no (single, textual) CN."""
    if not _authenticates_clients(certificate):
        return None
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(common_names) != 1 or not isinstance(common_names[0].value, str):
        return None
    namespace = Namespace.DEVICE if device_name(certificate) is not None else Namespace.CLIENT
    return ClientName(namespace=namespace, name=common_names[0].value)
