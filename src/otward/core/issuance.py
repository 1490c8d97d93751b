"""Issuance as a pipeline: a checked CSR and a profile become a certificate plan, then a builder.

Each rule is a small function that validates the request or returns an adjusted
plan. A profile selects its rules; a new policy is a new rule, not a new branch
in a long function. Time and serial numbers are arguments: the core never reads
the clock or draws random numbers.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID, ObjectIdentifier

from otward.core.authority import AuthorityInfo
from otward.core.csr import CheckedRequest
from otward.core.extensions import key_identifier, modbus_role_extension, validate_role_name
from otward.core.identifiers import DEVICE_ID, OWNER
from otward.core.identity import device_uri
from otward.core.keys import KeyType
from otward.core.names import (
    SUBJECT_UPPER_BOUNDS,
    SubjectAltNames,
    build_san_extension,
    dns_name_within,
    is_valid_dns_name,
    subject_attribute_names,
    validate_uri,
)
from otward.core.profiles import Identity, Profile
from otward.core.renewal import Renewal
from otward.errors import InvalidRequestError, PolicyViolationError

__all__ = [
    "BACKDATE",
    "MAX_OU",
    "CertificatePlan",
    "IssuanceRequest",
    "build_ca_certificate",
    "build_certificate",
    "build_ocsp_responder_certificate",
    "build_signer_certificate",
    "ca_key_usage",
    "issuer_extensions",
    "keep_renewed_names",
    "plan_certificate",
    "rules_for",
    "service_subject",
    "validate_key_type",
    "validate_serial_number",
]

BACKDATE = timedelta(seconds=60)
"""notBefore lies this far before issuance, for devices whose clocks run slightly behind."""

MAX_OU = 4
"""How many OU attributes a subject may hold (every other attribute: one)."""

# What OpenSSL treats as a host name in a CN when checking name constraints (x509/v3_ncons.c).
_HOST_LIKE_CN = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[a-z0-9.-]{1,253}$")


@dataclass(frozen=True)
class IssuanceRequest:
    """Everything a decision about one certificate depends on."""

    checked: CheckedRequest
    profile: Profile
    issuer: AuthorityInfo
    now: datetime
    validity_days: int | None = None
    role: str | None = None
    owner: str | None = None
    renewal: Renewal | None = None  # the certificate a re-enrollment renews, and the change asked


@dataclass(frozen=True)
class CertificatePlan:
    """The content of the certificate to be signed, before serial and signature."""

    subject: x509.Name
    sans: SubjectAltNames
    not_valid_before: datetime
    not_valid_after: datetime
    key_usage: frozenset[str]
    extended_key_usage: tuple[ObjectIdentifier, ...]
    extra_extensions: tuple[x509.ExtensionType, ...] = ()


Rule = Callable[[IssuanceRequest, CertificatePlan], CertificatePlan]


def _common_name(subject: x509.Name) -> str | None:
    values = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) > 1:
        raise PolicyViolationError("subject has more than one CN", rule="subject-cn")
    return str(values[0].value) if values else None


# --- rules that validate -------------------------------------------------------------------------


def validate_key_type(key_type: KeyType, profile: Profile) -> None:
    """PolicyViolationError unless ``profile`` issues for keys of ``key_type``."""
    if key_type not in profile.key_types:
        allowed = ", ".join(sorted(k.value for k in profile.key_types))
        raise PolicyViolationError(
            f"key type '{key_type.value}' not allowed by profile '{profile.name}' (allowed: {allowed})",
            rule="key-type",
        )


def _sets(sans: SubjectAltNames) -> dict[str, frozenset[str]]:
    """The names of ``sans`` by kind, as sets: order and repeats do not make another name."""
    return {
        "dns": frozenset(sans.dns),
        "ip": frozenset(str(a) for a in sans.ip),
        "uri": frozenset(sans.uri),
        "email": frozenset(sans.email),
        **{kind: frozenset({kind}) for kind in sans.other},
    }


def keep_renewed_names(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    """RFC 7030 section 4.2.2: a re-enrollment keeps the Subject and SubjectAltName of the certificate
    it renews, unless its CSR carries ChangeSubjectName and the profile allows the change.

    A CSR without SAN gets the renewed certificate's SAN. The URIs otward put in the renewed
    certificate itself (the ``urn:otward:`` device URI) may be repeated or left out: the profile's
    own rule sets them again. Any other name in otward's namespace is a change, and is refused
    here or by ``check_san_syntax``. The subject never changes: the CN is the device id, the rest
    is what the device was enrolled as."""
    renewal = req.renewal
    if renewal is None:
        return plan
    if plan.subject != renewal.subject:
        asked = " although the CSR carries ChangeSubjectName" if renewal.change else ""
        raise PolicyViolationError(
            f"the CSR's subject '{plan.subject.rfc4514_string()[:256]}' differs from the renewed "
            f"certificate's '{renewal.subject.rfc4514_string()[:256]}'; re-enrollment keeps the subject"
            f"{asked}",
            rule="est-subject",
        )
    # otward's own URIs are otward's to set again: the CSR may repeat them or leave them out
    own = {u for u in renewal.sans.uri if u.lower().startswith("urn:otward:")}
    kept = dataclasses.replace(renewal.sans, uri=tuple(u for u in renewal.sans.uri if u not in own))
    requested = renewal.sans if plan.sans.is_empty else plan.sans
    requested = dataclasses.replace(requested, uri=tuple(u for u in requested.uri if u not in own))
    before, after = _sets(kept), _sets(requested)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        if renewal.change is None or not renewal.change.subject_alt:
            raise PolicyViolationError(
                f"the CSR's SubjectAltName differs from the renewed certificate's ({', '.join(changed)}); "
                "re-enrollment keeps it unless the CSR carries ChangeSubjectName with subjectAlt",
                rule="est-san",
            )
        refused = [k for k in changed if k not in req.profile.renewal_may_change]
        if refused:
            raise PolicyViolationError(
                f"profile '{req.profile.name}' does not let a re-enrollment change its "
                f"{', '.join(refused)} names",
                rule="est-san",
            )
    return dataclasses.replace(plan, sans=requested)


def check_key_type(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    validate_key_type(req.checked.key_type, req.profile)
    return plan


def check_subject(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    names = subject_attribute_names(plan.subject)
    for name in names:
        if name not in req.profile.subject_allowed:
            raise PolicyViolationError(
                f"subject attribute '{name}' not allowed by profile '{req.profile.name}'",
                rule="subject-attribute",
            )
    for name in sorted(req.profile.subject_required):
        if name not in names:
            raise PolicyViolationError(
                f"subject attribute '{name}' is required by profile '{req.profile.name}'",
                rule="subject-required",
            )
    for attr, name in zip(plan.subject, names, strict=True):
        value = attr.value
        if not isinstance(value, str) or not value.strip() or len(value) > SUBJECT_UPPER_BOUNDS[name]:
            raise PolicyViolationError(
                f"subject {name} must be 1-{SUBJECT_UPPER_BOUNDS[name]} characters of text",
                rule="subject-length",
            )
    _common_name(plan.subject)
    return plan


def check_subject_repeats(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    """Each subject attribute at most once, OU at most :data:`MAX_OU` times: a name that means one thing."""
    counts = Counter(subject_attribute_names(plan.subject))
    for name, count in sorted(counts.items()):
        limit = MAX_OU if name == "OU" else 1
        if count > limit:
            raise PolicyViolationError(
                f"subject has {count} {name} attributes; at most {limit} allowed", rule="subject-repeated"
            )
    return plan


def check_san_count(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    count = len(plan.sans.dns) + len(plan.sans.ip) + len(plan.sans.uri) + len(plan.sans.email)
    if count > req.profile.max_sans:
        raise PolicyViolationError(
            f"{count} subject alternative names; profile '{req.profile.name}' allows at most "
            f"{req.profile.max_sans}",
            rule="san-count",
        )
    return plan


def check_san_kinds(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    for kind in sorted(plan.sans.kinds()):
        if kind not in req.profile.san_allowed:
            raise PolicyViolationError(
                f"{kind} SAN not allowed by profile '{req.profile.name}'", rule="san-type"
            )
    if req.profile.san_required_any and not (plan.sans.kinds() & req.profile.san_required_any):
        kinds = " or ".join(sorted(req.profile.san_required_any))
        raise PolicyViolationError(
            f"profile '{req.profile.name}' requires a {kinds} SAN", rule="san-required"
        )
    if plan.sans.is_empty and not list(plan.subject):
        raise PolicyViolationError("certificate would have neither subject nor SAN", rule="subject-empty")
    return plan


def check_san_syntax(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    for dns in plan.sans.dns:
        if not is_valid_dns_name(dns):
            raise PolicyViolationError(f"dns name '{dns}' is not a valid host name", rule="san-dns")
    for uri in plan.sans.uri:
        validate_uri(uri)
        if uri.lower().startswith("urn:otward:"):
            raise PolicyViolationError(
                f"uri '{uri}' is in otward's own namespace and cannot be requested", rule="san-uri"
            )
    for email in plan.sans.email:
        if not _EMAIL.fullmatch(email):
            raise PolicyViolationError(f"email '{email}' is not a valid mailbox", rule="san-email")
    return plan


def check_name_constraints(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    """Refuse names outside the issuing CA's permitted DNS and IP subtrees instead of issuing a useless cert.

    Like OpenSSL, a certificate without DNS SANs has a host-name-like CN checked too
    (a CN such as ``hmi.plant-b.example``, ``plc-0042.line-2`` or ``10.20.30.40``).
    """
    permitted_ip = req.issuer.permitted_ip
    if permitted_ip:
        for address in plan.sans.ip:
            if not any(address.version == net.version and address in net for net in permitted_ip):
                raise PolicyViolationError(
                    f"ip address '{address}' is outside the name constraints of CA '{req.issuer.name}' "
                    f"(permitted: {', '.join(str(n) for n in permitted_ip)})",
                    rule="name-constraints",
                )
    permitted = req.issuer.permitted_dns
    if not permitted:
        return plan
    names = list(plan.sans.dns)
    cn = _common_name(plan.subject)
    if not names and cn is not None and _HOST_LIKE_CN.fullmatch(cn):
        names.append(cn.lower())
    for dns in names:
        if not any(dns_name_within(dns.removeprefix("*."), p) for p in permitted):
            raise PolicyViolationError(
                f"dns name '{dns}' is outside the name constraints of CA '{req.issuer.name}' "
                f"(permitted: {', '.join(permitted)})",
                rule="name-constraints",
            )
    return plan


def set_validity(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    profile = req.profile
    days = req.validity_days
    if days is not None and (days < 1 or days > profile.max_validity_days):
        raise PolicyViolationError(
            f"validity of {days} days exceeds the maximum of profile '{profile.name}' "
            f"({profile.max_validity_days} days)"
            if days > 0
            else "validity must be at least 1 day",
            rule="validity",
        )
    not_after = req.now + timedelta(days=days or profile.default_validity_days)
    ca_not_after = req.issuer.certificate.not_valid_after_utc
    if ca_not_after <= req.now:
        raise PolicyViolationError(
            f"CA '{req.issuer.name}' has expired ({ca_not_after:%Y-%m-%d %H:%M} UTC)", rule="validity-issuer"
        )
    if not_after > ca_not_after:
        # Refused, never cut short silently: a certificate outliving its CA cannot be verified for
        # its last days, and a cut one surprises its holder. Renew or roll the CA over instead.
        asked = (
            f"{days} days" if days is not None else f"profile default of {profile.default_validity_days} days"
        )
        raise PolicyViolationError(
            f"the certificate would be valid until {not_after:%Y-%m-%d %H:%M} UTC ({asked}), after "
            f"CA '{req.issuer.name}' expires on {ca_not_after:%Y-%m-%d %H:%M} UTC; renew or roll "
            f"over the CA (otward ca renew|rollover {req.issuer.name}) or ask for a shorter validity",
            rule="validity-issuer",
        )
    not_before = req.now - BACKDATE
    return dataclasses.replace(plan, not_valid_before=not_before, not_valid_after=not_after)


def check_role_absent(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    if req.role is not None:
        raise InvalidRequestError(
            f"a role is only accepted by profile 'modbus-role', not '{req.profile.name}'", rule="role"
        )
    return plan


def adapt_key_usage(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    """keyEncipherment and dataEncipherment exist only for RSA keys (RFC 5480, RFC 8410).

    An EC key in a profile that enciphers data (OPC UA) does key agreement instead.
    """
    usage = set(plan.key_usage)
    if not req.checked.key_type.is_rsa:
        enciphers = "data_encipherment" in usage
        usage -= {"key_encipherment", "data_encipherment"}
        if enciphers and req.checked.key_type.is_ec:
            usage.add("key_agreement")
    elif req.checked.key_type.is_rsa:
        usage.discard("key_agreement")
    return dataclasses.replace(plan, key_usage=frozenset(usage))


# --- rules per identity ---------------------------------------------------------------------------


def check_tls_server_cn(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    cn = _common_name(plan.subject)
    if cn is not None and cn.lower() not in plan.sans.dns and cn not in {str(i) for i in plan.sans.ip}:
        raise PolicyViolationError(f"CN '{cn}' must also be a DNS or IP SAN", rule="subject-cn-in-san")
    return plan


def add_device_identity(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    device_id = _common_name(plan.subject) or ""
    if not DEVICE_ID.is_valid(device_id):
        raise PolicyViolationError(
            f"device id (CN) '{device_id}' must be 1-64 letters, digits or ._-", rule="device-id"
        )
    owner = req.owner
    if owner is None:
        raise InvalidRequestError(f"profile '{req.profile.name}' needs an owner", rule="device-owner")
    if not OWNER.is_valid(owner):
        raise PolicyViolationError(
            f"owner '{owner}' must be 1-64 lower-case letters, digits or ._-", rule="device-owner"
        )
    sans = dataclasses.replace(plan.sans, uri=(device_uri(owner, device_id),))
    return dataclasses.replace(plan, sans=sans)


def check_opcua_application(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    if len(plan.sans.uri) != 1:
        raise PolicyViolationError(
            "an OPC UA application certificate needs exactly one URI SAN (the application URI)",
            rule="opcua-application-uri",
        )
    if not (plan.sans.dns or plan.sans.ip):
        raise PolicyViolationError(
            "an OPC UA application certificate needs the host's DNS name or IP address as SAN",
            rule="opcua-host-name",
        )
    return plan


def add_modbus_role(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    if not req.role:
        raise InvalidRequestError("profile 'modbus-role' requires a role", rule="role")
    validate_role_name(req.role)
    return dataclasses.replace(
        plan, extra_extensions=(*plan.extra_extensions, modbus_role_extension(req.role))
    )


def check_owner_unused(req: IssuanceRequest, plan: CertificatePlan) -> CertificatePlan:
    if req.owner is not None:
        raise InvalidRequestError(
            f"an owner is only accepted by profile 'device', not '{req.profile.name}'", rule="owner"
        )
    return plan


_IDENTITY_RULES: dict[Identity, tuple[Rule, ...]] = {
    Identity.GENERIC: (check_role_absent, check_owner_unused),
    Identity.TLS_SERVER: (check_role_absent, check_owner_unused, check_tls_server_cn),
    Identity.DEVICE: (check_role_absent, add_device_identity),
    Identity.OPCUA_APPLICATION: (check_role_absent, check_owner_unused, check_opcua_application),
    Identity.MODBUS_ROLE: (check_owner_unused, add_modbus_role),
}


def rules_for(profile: Profile) -> tuple[Rule, ...]:
    """The ordered rules for ``profile``: checks on the request first, then additions."""
    return (
        keep_renewed_names,
        check_key_type,
        check_subject,
        check_subject_repeats,
        check_san_count,
        check_san_kinds,
        check_san_syntax,
        *_IDENTITY_RULES[profile.identity],
        check_name_constraints,
        set_validity,
        adapt_key_usage,
    )


def plan_certificate(req: IssuanceRequest) -> CertificatePlan:
    """Run the profile's rules over the request; raises the first rule's error."""
    plan = CertificatePlan(
        subject=req.checked.subject,
        sans=req.checked.sans,
        not_valid_before=req.now,
        not_valid_after=req.now,
        key_usage=req.profile.key_usage,
        extended_key_usage=req.profile.extended_key_usage,
    )
    for rule in rules_for(req.profile):
        plan = rule(req, plan)
    return plan


def validate_serial_number(serial_number: int) -> None:
    """RFC 5280 4.1.2.2: positive, at most 20 octets; otward also wants at least 64 bits of entropy."""
    if serial_number <= 0 or serial_number.bit_length() > 159:
        raise InvalidRequestError("serial number must be positive and fit in 20 octets", rule="serial")
    if serial_number.bit_length() < 64:
        raise InvalidRequestError("serial number must carry at least 64 random bits", rule="serial")


def _key_usage_extension(usage: frozenset[str], *, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature="digital_signature" in usage,
        content_commitment="content_commitment" in usage,
        key_encipherment="key_encipherment" in usage,
        data_encipherment="data_encipherment" in usage,
        key_agreement="key_agreement" in usage,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def issuer_extensions(issuer: AuthorityInfo) -> list[tuple[x509.ExtensionType, bool]]:
    """AKI, CRL distribution point and AIA (OCSP + caIssuers): what every certificate of a CA carries."""
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    urls = issuer.urls
    return [
        (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False),
        (
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(urls.crl)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            False,
        ),
        (
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp)
                    ),
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(urls.ca_issuers),
                    ),
                ]
            ),
            False,
        ),
    ]


def build_certificate(
    plan: CertificatePlan,
    public_key: CertificatePublicKeyTypes,
    issuer: AuthorityInfo,
    serial_number: int,
) -> x509.CertificateBuilder:
    """An unsigned end-entity certificate for ``plan``; the caller signs it with the issuer's key."""
    validate_serial_number(serial_number)
    builder = (
        x509.CertificateBuilder()
        .subject_name(plan.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(plan.not_valid_before)
        .not_valid_after(plan.not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage_extension(plan.key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
    )
    if plan.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(plan.extended_key_usage)), critical=False)
    if not plan.sans.is_empty:
        # RFC 5280 4.2.1.6: critical when the subject is empty.
        builder = builder.add_extension(build_san_extension(plan.sans), critical=not list(plan.subject))
    for ext, critical in issuer_extensions(issuer):
        builder = builder.add_extension(ext, critical=critical)
    for extra in plan.extra_extensions:
        builder = builder.add_extension(extra, critical=False)
    return builder


def ca_key_usage() -> x509.KeyUsage:
    """keyCertSign and cRLSign: all a CA key does (digitalSignature would let it sign OCSP itself)."""
    return _key_usage_extension(frozenset(), ca=True)


def build_ca_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial_number: int,
    not_valid_before: datetime,
    not_valid_after: datetime,
    path_length: int | None,
    issuer: AuthorityInfo | None,
    permitted_dns: Sequence[str] = (),
    permitted_ip: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> x509.CertificateBuilder:
    """A root (``issuer`` None, self-signed) or subordinate CA certificate."""
    validate_serial_number(serial_number)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
    )
    if permitted_dns or permitted_ip:
        for name in permitted_dns:
            if not is_valid_dns_name(name.lower().lstrip(".")):
                raise PolicyViolationError(
                    f"permitted dns '{name}' is not a valid domain", rule="name-constraints"
                )
        subtrees: list[x509.GeneralName] = [x509.DNSName(n.lower().lstrip(".")) for n in permitted_dns]
        subtrees += [x509.IPAddress(net) for net in permitted_ip]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None), critical=True
        )
    if issuer is not None:
        for ext, critical in issuer_extensions(issuer):
            builder = builder.add_extension(ext, critical=critical)
    return builder


def build_ocsp_responder_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: AuthorityInfo,
    serial_number: int,
    not_valid_before: datetime,
    not_valid_after: datetime,
) -> x509.CertificateBuilder:
    """A delegated OCSP responder (RFC 6960 4.2.2.2): id-kp-OCSPSigning and id-pkix-ocsp-nocheck."""
    validate_serial_number(serial_number)
    ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage_extension(frozenset({"digital_signature"})), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )


def service_subject(issuer: AuthorityInfo, common_name: str) -> x509.Name:
    """Subject of a certificate otward issues to itself (responder, signer): the CA's O, then CN."""
    org = issuer.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return x509.Name(
        [
            *([x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(org[0].value))] if org else []),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def build_signer_certificate(
    *,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer: AuthorityInfo,
    serial_number: int,
    not_valid_before: datetime,
    not_valid_after: datetime,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (),
) -> x509.CertificateBuilder:
    """A signer of otward's own records (audit heads, tree heads): digitalSignature and
    nonRepudiation, with the issuer's AKI, CRL and AIA links so that it can be checked offline.
    No EKU unless ``extended_key_usage`` names one (the edge signer's, which relying assets require)."""
    validate_serial_number(serial_number)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(serial_number)
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage_extension(frozenset({"digital_signature", "content_commitment"})), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
    )
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False)
    for extension, critical in issuer_extensions(issuer):
        builder = builder.add_extension(extension, critical=critical)
    return builder
