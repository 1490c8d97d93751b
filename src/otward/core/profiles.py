"""Certificate profiles: what a certificate of each kind may and must contain.

A profile fixes key usages, extended key usages, validity, accepted key types
and which subject attributes and SAN types a requester may set. The built-in
profiles cover TLS, devices, OPC UA application instances and Modbus/TCP
Security roles; :func:`apply_overrides` lets a site's configuration tighten or
adjust them without code.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from otward.core.keys import KeyType
from otward.core.names import SUBJECT_ATTRIBUTES
from otward.errors import ConfigError

__all__ = [
    "BUILTIN_PROFILES",
    "DEFAULT_MAX_SANS",
    "KEY_USAGES",
    "SAN_KINDS",
    "Identity",
    "Profile",
    "apply_overrides",
]

KEY_USAGES = frozenset(
    {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
    }
)
SAN_KINDS = frozenset({"dns", "ip", "uri", "email"})
DEFAULT_MAX_SANS = 32
"""Subject alternative names a certificate may carry unless its profile says otherwise."""
_MAX_SANS_LIMIT = 1024

_ALL_KEYS = frozenset(KeyType)
_RSA_AND_EC = frozenset(k for k in KeyType if k.is_rsa or k.is_ec)
# what firmware signatures accept (core/firmware/envelope.py): RSA >= 2048, ECDSA P-256/P-384
_FIRMWARE_KEYS = frozenset(k for k in KeyType if k.is_rsa) | {KeyType.EC_P256, KeyType.EC_P384}


class Identity(enum.Enum):
    """What the profile's subject identifies, which selects extra naming rules."""

    GENERIC = "generic"
    TLS_SERVER = "tls-server"  # CN, if set, must be one of the DNS/IP SANs
    DEVICE = "device"  # CN is the device id; otward adds the device URI SAN
    OPCUA_APPLICATION = "opcua-application"  # exactly one URI SAN: the application URI
    MODBUS_ROLE = "modbus-role"  # a role is required and carried in the role extension


@dataclass(frozen=True)
class Profile:
    """Rules for one kind of end-entity certificate."""

    name: str
    description: str
    key_usage: frozenset[str]
    extended_key_usage: tuple[ObjectIdentifier, ...]
    max_validity_days: int
    default_validity_days: int
    key_types: frozenset[KeyType]
    subject_allowed: frozenset[str]
    subject_required: frozenset[str] = frozenset()
    san_allowed: frozenset[str] = frozenset()
    san_required_any: frozenset[str] = frozenset()  # at least one SAN of one of these kinds
    identity: Identity = Identity.GENERIC
    max_sans: int = DEFAULT_MAX_SANS  # subject alternative names in one certificate
    # SAN kinds a re-enrollment may change when its CSR carries ChangeSubjectName (RFC 7030
    # section 4.2.2), within san_allowed; the subject never changes on re-enrollment
    renewal_may_change: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        prefix = f"profiles.{self.name}"
        if not 1 <= self.default_validity_days <= self.max_validity_days:
            raise ConfigError(
                f"{prefix}.default_validity_days must be between 1 and max_validity_days "
                f"({self.max_validity_days})"
            )
        if self.max_validity_days > 3650:
            raise ConfigError(f"{prefix}.max_validity_days must not exceed 3650")
        if not self.key_types:
            raise ConfigError(f"{prefix}.key_types must not be empty")
        unknown = (self.subject_allowed | self.subject_required) - set(SUBJECT_ATTRIBUTES)
        if unknown:
            raise ConfigError(f"{prefix}.subject_allowed has unknown attributes: {sorted(unknown)}")
        if not self.subject_required <= self.subject_allowed:
            raise ConfigError(f"{prefix}.subject_required must be a subset of subject_allowed")
        if not (self.san_allowed | self.san_required_any) <= SAN_KINDS:
            raise ConfigError(f"{prefix}.san_allowed has unknown kinds (use {sorted(SAN_KINDS)})")
        if not self.san_required_any <= self.san_allowed:
            raise ConfigError(f"{prefix}.san_required_any must be a subset of san_allowed")
        if not self.renewal_may_change <= SAN_KINDS:
            raise ConfigError(f"{prefix}.renewal_may_change has unknown kinds (use {sorted(SAN_KINDS)})")
        if not 1 <= self.max_sans <= _MAX_SANS_LIMIT:
            raise ConfigError(f"{prefix}.max_sans must be between 1 and {_MAX_SANS_LIMIT}")
        if not self.key_usage <= KEY_USAGES:
            raise ConfigError(f"{prefix}.key_usage has unknown usages: {sorted(self.key_usage - KEY_USAGES)}")


_COMMON_SUBJECT = frozenset({"CN", "O", "OU", "C", "ST", "L"})

BUILTIN_PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            name="tls-server",
            description="TLS server (HTTPS, MQTT broker, gateway); DNS or IP SAN required",
            key_usage=frozenset({"digital_signature", "key_encipherment"}),
            extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
            max_validity_days=398,
            default_validity_days=365,
            key_types=_ALL_KEYS,
            subject_allowed=_COMMON_SUBJECT,
            san_allowed=frozenset({"dns", "ip"}),
            san_required_any=frozenset({"dns", "ip"}),
            identity=Identity.TLS_SERVER,
        ),
        Profile(
            name="tls-client",
            description="TLS client (operator station, service account)",
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            max_validity_days=398,
            default_validity_days=365,
            key_types=_ALL_KEYS,
            subject_allowed=_COMMON_SUBJECT,
            subject_required=frozenset({"CN"}),
            san_allowed=frozenset({"dns", "ip", "uri", "email"}),
        ),
        Profile(
            name="device",
            description="Device identity (PLC, sensor, gateway); CN is the device id",
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            max_validity_days=825,
            default_validity_days=365,
            key_types=_ALL_KEYS,
            subject_allowed=frozenset({"CN", "O", "OU", "serialNumber"}),
            subject_required=frozenset({"CN"}),
            san_allowed=frozenset({"dns", "ip"}),  # the device URI SAN is otward's to set
            renewal_may_change=frozenset({"dns", "ip"}),  # a device may move to a new address
            identity=Identity.DEVICE,
        ),
        Profile(
            name="opcua-application",
            description="OPC UA application instance certificate (Part 6, 6.2.2)",
            key_usage=frozenset(
                {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment"}
            ),
            extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            max_validity_days=1825,
            default_validity_days=730,
            key_types=_RSA_AND_EC,
            subject_allowed=_COMMON_SUBJECT | {"serialNumber"},
            subject_required=frozenset({"CN"}),
            san_allowed=frozenset({"uri", "dns", "ip"}),
            san_required_any=frozenset({"uri"}),
            identity=Identity.OPCUA_APPLICATION,
        ),
        Profile(
            name="modbus-role",
            description="Modbus/TCP Security client with a role (OID 1.3.6.1.4.1.50316.802.1)",
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            max_validity_days=398,
            default_validity_days=365,
            key_types=_ALL_KEYS,
            subject_allowed=_COMMON_SUBJECT,
            subject_required=frozenset({"CN"}),
            san_allowed=frozenset({"dns", "ip", "uri"}),
            identity=Identity.MODBUS_ROLE,
        ),
        Profile(
            name="firmware-signing",
            description="Firmware/code signer for 'otward firmware sign' (EKU codeSigning)",
            key_usage=frozenset({"digital_signature"}),
            extended_key_usage=(ExtendedKeyUsageOID.CODE_SIGNING,),
            max_validity_days=1825,
            default_validity_days=1095,
            key_types=_FIRMWARE_KEYS,
            subject_allowed=_COMMON_SUBJECT,
            subject_required=frozenset({"CN"}),
            san_allowed=frozenset({"uri", "email"}),
        ),
    )
}

# Fields a site configuration may change. Key usages, EKUs and identity rules stay in code:
# changing them changes what the certificate means.
_OVERRIDABLE = {
    "description",
    "max_validity_days",
    "default_validity_days",
    "key_types",
    "subject_allowed",
    "subject_required",
    "san_allowed",
    "san_required_any",
    "max_sans",
    "renewal_may_change",
}


def apply_overrides(
    base: Mapping[str, Profile], overrides: Mapping[str, Mapping[str, Any]]
) -> dict[str, Profile]:
    """Return the profiles with ``overrides`` (``{profile: {field: value}}``) applied.

    Raises :class:`ConfigError` naming the dotted key for an unknown profile,
    field or value.
    """
    result = dict(base)
    for name, fields in overrides.items():
        if name not in result:
            raise ConfigError(f"profiles.{name}: no such profile (known: {sorted(result)})")
        changes: dict[str, Any] = {}
        for key, value in fields.items():
            dotted = f"profiles.{name}.{key}"
            if key not in _OVERRIDABLE:
                raise ConfigError(f"{dotted} cannot be overridden (allowed: {sorted(_OVERRIDABLE)})")
            if key == "key_types":
                try:
                    changes[key] = frozenset(KeyType(str(v)) for v in value)
                except ValueError:
                    raise ConfigError(f"{dotted} has an unknown key type in {value!r}") from None
            elif key in {
                "subject_allowed",
                "subject_required",
                "san_allowed",
                "san_required_any",
                "renewal_may_change",
            }:
                if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
                    raise ConfigError(f"{dotted} must be a list")
                changes[key] = frozenset(str(v) for v in value)
            elif key in {"max_validity_days", "default_validity_days", "max_sans"}:
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ConfigError(f"{dotted} must be a positive integer")
                changes[key] = value
            else:
                changes[key] = str(value)
        result[name] = dataclasses.replace(result[name], **changes)
    return result
