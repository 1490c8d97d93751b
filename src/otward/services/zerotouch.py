"""Zero-touch onboarding (IEEE 802.1AR IDevID -> LDevID, RFC 7030 section 3.3.2).

An administrator registers a manufacturer's IDevID CA (``otward manufacturer add``); an owner claims
the units it bought by (manufacturer, serial) (``otward device claim``); a claimed unit then enrolls
itself with the certificate in its crypto chip as the TLS client certificate of ``simpleenroll``
and gets its LDevID from its owner's CA. No token is typed into any device.

A manufacturer's CA is trusted for that one request only: the TLS layer lets its certificates
through the handshake (the same trust store as otward's CAs), and every other reader of a client
certificate requires a certificate otward issued (``simplereenroll`` compares the stored DER).
This module re-verifies the IDevID itself against the manufacturers registered *now*, so a removed
manufacturer is refused at once even while a worker's TLS store still holds its CA.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.db.manufacturers import SqlManufacturerStore
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.csr import load_csr, validate_csr
from otward.core.identifiers import DEVICE_ID, OWNER
from otward.core.idevid import (
    ClaimRecord,
    FactoryIdentity,
    ManufacturerRecord,
    RefusalRule,
    identify,
    load_manufacturer_certificates,
    matches_public_key,
    validate_crl,
    validate_possession,
    validate_serial,
)
from otward.core.profiles import Identity
from otward.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OtwardError,
    PolicyViolationError,
)
from otward.services.audit import Actor, AuditLog
from otward.services.authorities import AuthorityService
from otward.services.enrollment import Owners
from otward.services.est import EstService
from otward.services.issuance import IssuanceService, IssuedCertificate

__all__ = ["CRL_REFRESH_BEFORE", "ClaimEntry", "ZeroTouch"]

CRL_REFRESH_BEFORE = timedelta(hours=1)
"""A manufacturer CRL fetched from its URL is fetched again this long before its nextUpdate."""
_HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
DEFAULT_PROFILE = "device"


@dataclass(frozen=True)
class ClaimEntry:
    """One line of a delivery note: the unit, and what its LDevID will carry."""

    serial: str
    model: str | None = None
    public_key_sha256: str | None = None
    device_id: str | None = None


class ZeroTouch:
    def __init__(
        self,
        store: SqlManufacturerStore,
        authorities: AuthorityService,
        owners: Owners,
        issuance: IssuanceService,
        est: EstService,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        fetch: Callable[[str], bytes],
    ) -> None:
        self._store = store
        self._authorities = authorities
        self._owners = owners
        self._issuance = issuance
        self._est = est
        self._clock = clock
        self._audit = audit
        self._fetch = fetch

    # --- manufacturers ---------------------------------------------------------------------------

    def add_manufacturer(
        self, name: str, ca_pem: bytes, *, crl_url: str | None, crl: bytes | None, actor: Actor
    ) -> ManufacturerRecord:
        """Register a manufacturer's IDevID CA (or chain). Refused when a certificate in it is one of
        otward's own CAs or another manufacturer's (a key trusted for two purposes), or when the CRL
        given (or fetched from ``crl_url``) is not signed by it."""
        if not OWNER.is_valid(name):
            raise InvalidRequestError(
                f"manufacturer name '{name[:64]}' must be 1-64 lower-case letters, digits or ._-",
                rule="manufacturer-name",
            )
        if crl_url is not None and not crl_url.startswith(("http://", "https://")):
            raise InvalidRequestError("the CRL URL must be http:// or https://", rule="manufacturer-crl")
        certificates = load_manufacturer_certificates(ca_pem)
        self._refuse_shared_keys(certificates)
        if crl is None and crl_url is not None:
            crl = self._fetch(crl_url)
        if crl is not None:
            crl = validate_crl(crl, certificates).public_bytes(Encoding.DER)
        record = ManufacturerRecord(
            name=name,
            ca_certificates=certificates,
            created_at=self._clock(),
            crl_url=crl_url,
            crl=crl,
            crl_required=crl is not None or crl_url is not None,
        )
        details = {
            "ca": ", ".join(c.subject.rfc4514_string()[:128] for c in certificates),
            "crl_url": crl_url or "",
            "crl": "yes" if crl is not None else "no",
        }
        event = self._audit.event(actor, EventType.MANUFACTURER_ADDED, name, details=details)
        self._store.add_manufacturer(record, [event])
        return record

    def _refuse_shared_keys(self, certificates: Sequence[x509.Certificate]) -> None:
        own = {a.name: self._authorities.get(a.name).certificate for a in self._authorities.list()}
        others = {m.name: m.ca_certificates for m in self._store.list_manufacturers()}
        for certificate in certificates:
            key = certificate.public_key()
            for name, ca in own.items():
                if ca.public_key() == key or ca.subject == certificate.subject:
                    raise PolicyViolationError(
                        f"'{certificate.subject.rfc4514_string()[:128]}' is otward's CA '{name}' (or has its"
                        " name or key): a manufacturer CA must be the manufacturer's own",
                        rule="manufacturer-ca",
                    )
            for name, cas in others.items():
                if any(c.public_key() == key for c in cas):
                    raise PolicyViolationError(
                        f"'{certificate.subject.rfc4514_string()[:128]}' is already registered for"
                        f" manufacturer '{name}'",
                        rule="manufacturer-ca",
                    )

    def list_manufacturers(self) -> list[ManufacturerRecord]:
        return self._store.list_manufacturers()

    def manufacturer_names(self) -> set[str]:
        return self._store.manufacturer_names()

    def get_manufacturer(self, name: str) -> ManufacturerRecord:
        record = self._store.get_manufacturer(name)
        if record is None:
            raise NotFoundError(f"manufacturer '{name}' not found", rule="manufacturer")
        return record

    def remove_manufacturer(self, name: str, *, actor: Actor) -> None:
        """Stop trusting a manufacturer (refused while any of its units is claimed). Enrollment
        refuses its IDevIDs at once; the workers' TLS stores drop its CA at their next restart."""
        event = self._audit.event(actor, EventType.MANUFACTURER_REMOVED, name)
        self._store.remove_manufacturer(name, [event])

    def update_crl(self, name: str, crl: bytes | None, *, actor: Actor) -> x509.CertificateRevocationList:
        """Load the manufacturer's CRL from ``crl`` or, when None, from its CRL URL."""
        record = self.get_manufacturer(name)
        if crl is None:
            if record.crl_url is None:
                raise InvalidRequestError(
                    f"manufacturer '{name}' has no CRL URL; give the CRL file", rule="manufacturer-crl"
                )
            crl = self._fetch(record.crl_url)
        checked = validate_crl(crl, record.ca_certificates)
        if record.crl is not None:
            current = x509.load_der_x509_crl(record.crl)
            if checked.last_update_utc < current.last_update_utc:
                raise PolicyViolationError(
                    "the CRL is older than the one loaded before; a CRL never goes back",
                    rule="manufacturer-crl",
                )
        details = {"this_update": checked.last_update_utc.isoformat(), "revoked": str(len(checked))}
        event = self._audit.event(actor, EventType.MANUFACTURER_CRL, name, details=details)
        self._store.set_crl(name, checked.public_bytes(Encoding.DER), [event])
        return checked

    def refresh_crls(self, actor: Actor) -> list[str]:
        """Fetch again the CRLs of manufacturers with a CRL URL that are missing or due within
        :data:`CRL_REFRESH_BEFORE`; the names refreshed. One that fails stays as it was (and, once
        past its nextUpdate, makes enrollment refuse: fail closed)."""
        refreshed = []
        failed: OtwardError | None = None
        due = self._clock() + CRL_REFRESH_BEFORE
        for record in self._store.list_manufacturers():
            if record.crl_url is None:
                continue
            if record.crl is not None:
                next_update = x509.load_der_x509_crl(record.crl).next_update_utc
                if next_update is not None and next_update > due:
                    continue
            try:
                self.update_crl(record.name, None, actor=actor)
            except OtwardError as exc:  # the others are still fetched
                failed = failed or exc
                continue
            refreshed.append(record.name)
        if failed is not None:
            raise failed
        return refreshed

    # --- claims ----------------------------------------------------------------------------------

    def claim(
        self,
        owner: str,
        manufacturer: str,
        entries: Sequence[ClaimEntry],
        *,
        profile: str | None,
        actor: Actor,
    ) -> list[ClaimRecord]:
        """Claim units for ``owner``: all or none. A unit another owner claimed is refused (audited)
        until that owner releases it."""
        self._owners.get(owner)
        self.get_manufacturer(manufacturer)
        if profile is not None and self._issuance.profile(profile).identity is not Identity.DEVICE:
            raise PolicyViolationError(f"profile '{profile}' is not a device profile", rule="claim-profile")
        if not entries:
            raise InvalidRequestError("no serial numbers to claim", rule="claim-serial")
        now = self._clock()
        claims = []
        for entry in entries:
            validate_serial(entry.serial)
            if entry.public_key_sha256 is not None and not _HEX_SHA256.fullmatch(entry.public_key_sha256):
                raise InvalidRequestError(
                    f"the public-key hash of serial '{entry.serial}' must be 64 hex digits (SHA-256)",
                    rule="claim-public-key",
                )
            if entry.device_id is not None and not DEVICE_ID.is_valid(entry.device_id):
                raise InvalidRequestError(
                    f"device id '{entry.device_id[:64]}' must be 1-64 letters, digits or ._-",
                    rule="device-id",
                )
            claims.append(
                ClaimRecord(
                    manufacturer=manufacturer,
                    serial=entry.serial,
                    owner=owner,
                    claimed_at=now,
                    model=entry.model,
                    public_key_sha256=entry.public_key_sha256.lower() if entry.public_key_sha256 else None,
                    profile=profile,
                    device_id=entry.device_id,
                )
            )
        events = [
            self._audit.event(
                actor,
                EventType.DEVICE_CLAIMED,
                f"{manufacturer}:{c.serial}",
                details={"owner": owner, "device_id": c.device_id or "", "profile": profile or ""},
            )
            for c in claims
        ]
        try:
            self._store.claim(claims, events)
        except OtwardError as exc:
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.DEVICE_CLAIMED,
                    manufacturer,
                    outcome=Outcome.FAILURE,
                    reason=exc.message,
                    details={"owner": owner, "rule": exc.rule or ""},
                )
            )
            raise
        return claims

    def release(self, owner: str, manufacturer: str, serials: Sequence[str], *, actor: Actor) -> None:
        """Give up the owner's claims, all or none; another owner may then claim the units."""
        events = [
            self._audit.event(
                actor, EventType.DEVICE_RELEASED, f"{manufacturer}:{s}", details={"owner": owner}
            )
            for s in serials
        ]
        self._store.release(owner, manufacturer, serials, events)

    def list_claims(self, *, owner: str | None = None, manufacturer: str | None = None) -> list[ClaimRecord]:
        return self._store.list_claims(owner=owner, manufacturer=manufacturer)

    # --- enrollment ------------------------------------------------------------------------------

    def is_otward_issued(self, certificate_der: bytes) -> bool:
        """True when one of otward's CAs issued the certificate (a device's LDevID or an administrator
        certified client): such a certificate is never a factory identity."""
        certificate = x509.load_der_x509_certificate(certificate_der)
        for authority in self._authorities.list():
            ca = self._authorities.get(authority.name).certificate
            if ca.subject == certificate.issuer:
                return True
        return False

    def enroll(
        self,
        csr: bytes,
        client_certificate: bytes,
        *,
        tls_version: str | None,
        tls_unique: bytes | None,
        label: str | None,
        actor: Actor,
    ) -> IssuedCertificate:
        """Enroll a claimed unit authenticated by its IDevID (``client_certificate``, DER, from the TLS
        handshake); each refusal is audited as ``enroll.refused`` with its rule."""
        presented = x509.load_der_x509_certificate(client_certificate)
        subject = f"idevid:{presented.serial_number:x}"
        try:
            identity = identify(presented, self._store.list_manufacturers(), self._clock())
        except AuthenticationError as exc:
            seen = {
                "idevid_issuer": presented.issuer.rfc4514_string()[:256],
                "idevid_serial": f"{presented.serial_number:x}",
            }
            raise self._refused(actor, subject, exc, **seen) from None
        subject = f"idevid:{identity.manufacturer}:{identity.serial}"
        factory = {
            "manufacturer": identity.manufacturer,
            "hardware_serial": identity.serial,
            "idevid_issuer": identity.issuer,
            "idevid_serial": identity.certificate_serial,
            "idevid_fingerprint": identity.fingerprint,
        }
        claim = self._store.get_claim(identity.manufacturer, identity.serial)
        if claim is None:
            message = f"{identity.manufacturer} serial '{identity.serial}' is not claimed by any owner"
            raise self._refused(
                actor, subject, PolicyViolationError(message, rule=RefusalRule.UNCLAIMED.value), **factory
            )
        factory["owner"] = claim.owner
        if not matches_public_key(claim.public_key_sha256, identity):
            message = (
                f"the IDevID's public key does not match the hash on {identity.manufacturer} serial"
                f" '{identity.serial}''s claim (the voucher): not the unit that was delivered"
            )
            raise self._refused(
                actor, subject, PolicyViolationError(message, rule=RefusalRule.PUBLIC_KEY.value), **factory
            )
        if claim.enrolled_at is not None:
            message = (
                f"{identity.manufacturer} serial '{identity.serial}' already enrolled as device"
                f" '{claim.enrolled_device_id}': it renews with its LDevID (simplereenroll)"
            )
            raise self._refused(
                actor, subject, PolicyViolationError(message, rule=RefusalRule.ENROLLED.value), **factory
            )
        try:
            request = validate_csr(load_csr(csr)).csr
            factory["proof"] = validate_possession(
                request, presented, tls_version=tls_version, tls_unique=tls_unique
            )
            device_id = self._est.device_id_of(request)
            if claim.device_id is not None and device_id != claim.device_id:
                message = f"the claim gives device id '{claim.device_id}'; the CSR's CN is '{device_id}'"
                raise PolicyViolationError(message, rule="idevid-device-id")
        except (InvalidRequestError, PolicyViolationError, AuthenticationError) as exc:
            raise self._refused(actor, subject, exc, **factory) from None
        if not self._store.reserve_enrollment(
            identity.manufacturer, identity.serial, claim.owner, self._clock()
        ):
            message = f"{identity.manufacturer} serial '{identity.serial}' is enrolling or enrolled already"
            raise self._refused(
                actor, subject, PolicyViolationError(message, rule=RefusalRule.ENROLLED.value), **factory
            )
        try:
            issued = self._est.enroll_claimed(
                csr,
                device_id,
                claim.owner,
                claim.profile or DEFAULT_PROFILE,
                label=label,
                factory=factory,
                actor=actor,
            )
        except BaseException:
            self._store.cancel_enrollment(identity.manufacturer, identity.serial)
            raise
        self._store.record_enrollment(identity, claim.owner, device_id, issued.record.serial, self._clock())
        return issued

    def identity_of(self, client_certificate: bytes) -> FactoryIdentity:
        """The factory identity of a certificate, checked as enrollment checks it (for ``show``)."""
        return identify(
            x509.load_der_x509_certificate(client_certificate),
            self._store.list_manufacturers(),
            self._clock(),
        )

    def _refused(self, actor: Actor, subject: str, error: OtwardError, **details: str) -> OtwardError:
        event: AuditEvent = self._audit.event(
            actor,
            EventType.ENROLL_REFUSED,
            subject[:256],
            outcome=Outcome.FAILURE,
            reason=error.message,
            details={"rule": error.rule or "", "method": "idevid", **details},
        )
        self._audit.record(event)
        return error
