"""Device enrollment as EST (RFC 7030) defines it, independent of HTTP.

- ``enroll``: a new device, authenticated by an enrollment token of its owner (or by a
  renewal token a passed attestation earned); the device id is the CSR's CN.
- ``reenroll``: an enrolled device, authenticated by its current certificate, which the
  TLS layer verified; the CSR keeps the certificate's subject and SubjectAltName (RFC 7030
  section 4.2.2).
- ``server_keygen``: as ``enroll``, but the server makes the key, for devices that cannot
  (only for owners that allow it), of the CSR's key type and size within the token's profile;
  the key is returned once and never stored.

In every case the certificate, the token use and the registry update are committed in one
transaction before the certificate is returned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from otward.adapters.keys import generate_private_key
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.csr import CheckedRequest, checked_subject, load_csr, validate_csr
from otward.core.identifiers import DEVICE_ID
from otward.core.issuance import validate_key_type
from otward.core.keys import signature_hash_for, spki_pin
from otward.core.ports import CertificateStore, DeviceStore
from otward.core.profiles import Identity
from otward.core.records import (
    CertificateRecord,
    DeviceEnrollment,
    DeviceStatus,
    EnrollmentRetry,
    EnrollmentTokenRecord,
)
from otward.core.renewal import Renewal, renewal_of
from otward.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OtwardError,
    PolicyViolationError,
)
from otward.services.audit import Actor, AuditLog
from otward.services.authorities import AuthorityService
from otward.services.devices import superseded_event
from otward.services.enrollment import EnrollmentTokens, Owners
from otward.services.issuance import DEFAULT_CA, IssuanceService, IssuedCertificate

__all__ = ["ENROLLMENT_RETRY_WINDOW", "EstService", "ServerGeneratedKey"]

ENROLLMENT_RETRY_WINDOW = timedelta(minutes=10)
"""How long after a token enrollment the same request gets the same certificate again (a server-keygen
request: a new key) without spending a use; see docs/enrollment.md, *When the client fails*."""


@dataclass(frozen=True)
class ServerGeneratedKey:
    issued: IssuedCertificate
    private_key: CertificateIssuerPrivateKeyTypes  # of the CSR's key type and size


class EstService:
    def __init__(
        self,
        certificates: CertificateStore,
        devices: DeviceStore,
        authorities: AuthorityService,
        issuance: IssuanceService,
        owners: Owners,
        tokens: EnrollmentTokens,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
    ) -> None:
        self._certificates = certificates
        self._devices = devices
        self._authorities = authorities
        self._issuance = issuance
        self._owners = owners
        self._tokens = tokens
        self._clock = clock
        self._audit = audit

    def ca_certificates(self, label: str | None) -> tuple[x509.Certificate, ...]:
        """The chain a device needs (``/cacerts``): the labelled CA (default ``issuing``) up to its root."""
        name = label or DEFAULT_CA
        try:
            chain = self._authorities.get(self._authorities.current_name(name)).chain
            # During a rollover overlap: the older generations still in use, and a root's link
            # certificates (RFC 7030 4.1.3, Root CA Key Update), after the current chain.
            extra = [*self._authorities.trust_bundle([name]), *self._authorities.link_certificates()]
        except NotFoundError:
            raise NotFoundError(f"no CA '{name}' to enroll with", rule="est-label") from None
        return tuple(dict.fromkeys([*chain, *extra]))

    def enroll(self, csr: bytes, token: str, *, label: str | None, actor: Actor) -> IssuedCertificate:
        """Enroll with an enrollment (or renewal) token; the same request again within
        :data:`ENROLLMENT_RETRY_WINDOW` gets the same certificate and spends no use (a client that
        failed after the server issued: a lost answer, a chain it could not check)."""
        record, device_id, requested = self._authorized(csr, token, actor)
        ca = self._owners.issuing_ca(record.owner)
        self._check_label(record.owner, ca, label, device_id, actor)
        retry = self._retry(record, device_id, requested, server_keygen=False)
        # a read first: a first enrollment (the common case) takes no lock for a repeat it is not
        repeated = (
            self._repeat(retry, record, actor)
            if retry and self._devices.enrollment_to_repeat(retry)
            else None
        )
        if repeated is not None:
            return repeated
        self._tokens.require_active(record, actor=actor, device_id=device_id)
        return self._issue(
            csr,
            device_id,
            record.owner,
            ca,
            record.profile,
            actor,
            token_record=record,
            request_key_pin=retry.request_key_pin if retry else None,
            # a repeated request that raced the first: the store decided for the first, so repeat it
            fallback=(lambda: self._repeat(retry, record, actor)) if retry else None,
        )

    def server_keygen(self, csr: bytes, token: str, *, label: str | None, actor: Actor) -> ServerGeneratedKey:
        """As :meth:`enroll`, but the server makes the key and returns it once (it is never stored).
        The same request again (token, device id, and the key the request is signed with) within
        :data:`ENROLLMENT_RETRY_WINDOW`, while the device never used its certificate, gets a **new**
        key and certificate, spends no use, and revokes (superseded) the certificate whose key was
        lost: the old key cannot be sent again, and a certificate for a lost key must not stay valid."""
        record, device_id, requested = self._authorized(csr, token, actor)
        owner = self._owners.get(record.owner)
        self._check_label(owner.name, owner.ca, label, device_id, actor)
        if not owner.allow_server_keygen:
            message = f"owner '{owner.name}' does not allow server-side key generation"
            raise self._refused(actor, device_id, PolicyViolationError(message, rule="server-keygen"))
        checked = self._checked_keygen_request(csr, record.profile, owner.ca, actor)
        retry = self._retry(record, device_id, requested, server_keygen=True)
        lost = self._devices.enrollment_to_repeat(retry) if retry else None
        if lost is None:
            self._tokens.require_active(record, actor=actor, device_id=device_id)
        key = generate_private_key(checked.key_type)
        builder = x509.CertificateSigningRequestBuilder().subject_name(checked.subject)
        for extension in checked.csr.extensions:
            if isinstance(extension.value, x509.SubjectAlternativeName):
                builder = builder.add_extension(extension.value, critical=extension.critical)
        own_csr = builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]
        issued = self._issue(
            own_csr,
            device_id,
            owner.name,
            owner.ca,
            record.profile,
            actor,
            token_record=record,
            request_key_pin=retry.request_key_pin if retry else None,
            # the certificate found now, and no other, is replaced: of two retries at once one wins
            retry_of=dataclasses.replace(retry, serial=lost.serial) if retry and lost else None,
        )
        return ServerGeneratedKey(issued, key)

    def reenroll(
        self, csr: bytes, client_certificate: bytes, *, label: str | None, actor: Actor
    ) -> IssuedCertificate:
        """Renew with the certificate the TLS layer verified (``client_certificate``, DER).

        The certificate must be one otward issued to a registered device, unexpired and unrevoked
        (the TLS layer checks the chain and dates, not revocation), and the CSR must keep its subject
        and SubjectAltName unless it asks to change them as RFC 7030 section 4.2.2 says
        (:func:`otward.core.issuance.keep_renewed_names`).
        """
        presented = x509.load_der_x509_certificate(client_certificate)
        stored = self._certificates.get_certificate(presented.serial_number)
        now = self._clock()
        subject = presented.subject.rfc4514_string()[:256]
        if stored is None or stored.der != client_certificate or stored.status_at(now) != "valid":
            state = "unknown" if stored is None or stored.der != client_certificate else stored.status_at(now)
            message = f"the client certificate cannot re-enroll: it is {state}"
            raise self._refused(actor, subject, AuthenticationError(message, rule="est-client-certificate"))
        if stored.device_id is None:
            message = "the client certificate does not belong to a registered device"
            raise self._refused(actor, subject, PolicyViolationError(message, rule="est-not-a-device"))
        device = self._devices.get_device(stored.device_id)
        if device is None or device.status is not DeviceStatus.ACTIVE:
            status = device.status.value if device else "unknown"
            message = f"device '{stored.device_id}' is {status} and cannot re-enroll"
            raise self._refused(actor, stored.device_id, PolicyViolationError(message, rule="device-status"))
        if device.current_serial != stored.serial:
            repeated = self._repeat_renewal(csr, stored, device.device_id, actor)
            if repeated is not None:
                return repeated
            message = (
                f"certificate {stored.serial} is no longer the current certificate of device"
                f" '{device.device_id}'; only the current certificate renews"
            )
            raise self._refused(actor, device.device_id, PolicyViolationError(message, rule="est-superseded"))
        try:
            requested = load_csr(csr)
            checked_subject(requested)
            renewal = renewal_of(presented, requested)
        except (InvalidRequestError, PolicyViolationError) as exc:
            raise self._refused(actor, device.device_id, exc) from None
        ca = self._owners.issuing_ca(device.owner)
        self._check_label(device.owner, ca, label, device.device_id, actor)
        return self._issue(
            csr,
            device.device_id,
            device.owner,
            ca,
            device.profile,
            actor,
            renewing=stored.serial,
            renewal=renewal,
        )

    def enroll_claimed(
        self,
        csr: bytes,
        device_id: str,
        owner: str,
        profile: str,
        *,
        label: str | None,
        factory: dict[str, str],
        actor: Actor,
    ) -> IssuedCertificate:
        """Enroll a new device that a factory identity authenticated and its owner's claim covers
        (:class:`otward.services.zerotouch.ZeroTouch` checked both); ``factory`` goes into the
        ``enroll.succeeded`` event (method ``idevid``)."""
        ca = self._owners.issuing_ca(owner)
        self._check_label(owner, ca, label, device_id, actor)
        return self._issue(csr, device_id, owner, ca, profile, actor, factory=factory)

    @staticmethod
    def device_id_of(csr: x509.CertificateSigningRequest) -> str:
        """The device id a CSR asks for (its subject CN); raises when it is not a valid one."""
        return _device_id(csr)

    def csr_attributes(self) -> tuple[x509.ObjectIdentifier, ...]:
        """What otward wants in a CSR (``/csrattrs``): ECDSA with SHA-256 (a P-256 key)."""
        return (x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256,)

    def refuse_input(self, token: str | None, error: OtwardError, *, actor: Actor) -> OtwardError:
        """Record ``error`` (a request body refused before the token was looked at) as
        ``enroll.refused`` with its rule if ``token`` authenticates, and return it for raising.

        A request without a valid token records nothing here: it is refused for its input either
        way, and failed authentication is counted and audited where tokens are verified."""
        record = self._tokens.authenticated(token) if token else None
        if record is not None:
            self._refused(actor, f"enroll_token:{record.token_id}", error, token=record.token_id)
        return error

    # --- shared steps ---------------------------------------------------------------------------

    def _authorized(
        self, csr: bytes, token: str, actor: Actor
    ) -> tuple[EnrollmentTokenRecord, str, x509.CertificateSigningRequest]:
        """The token first (a bad one is a 401 whatever the CSR holds, and counts as a failure), then
        the device id from the CSR (a refusal is audited), then whether the token covers it.

        A used-up or expired token passes here: it may repeat its enrollment. Whoever goes on to
        issue calls ``require_active`` first."""
        record = self._tokens.authenticate(token, actor=actor, spent_ok=True)
        try:
            requested = load_csr(csr)
            device_id = _device_id(requested)
        except (InvalidRequestError, PolicyViolationError) as exc:
            raise self.refuse_input(token, exc, actor=actor) from None
        self._tokens.check_covers(record, device_id=device_id, actor=actor)
        return record, device_id, requested

    def _retry(
        self,
        record: EnrollmentTokenRecord,
        device_id: str,
        requested: x509.CertificateSigningRequest,
        *,
        server_keygen: bool,
    ) -> EnrollmentRetry | None:
        """What this request would repeat; None for a CSR whose signature does not prove its key
        (issuance then refuses it for that)."""
        try:
            checked = validate_csr(requested)
        except (InvalidRequestError, PolicyViolationError):
            return None
        return EnrollmentRetry(
            device_id=device_id,
            token_id=record.token_id,
            request_key_pin=spki_pin(checked.csr.public_key()),
            since=self._clock() - ENROLLMENT_RETRY_WINDOW,
            server_keygen=server_keygen,
        )

    def _repeat(
        self, retry: EnrollmentRetry, token: EnrollmentTokenRecord, actor: Actor
    ) -> IssuedCertificate | None:
        """The certificate ``retry`` asks for again, recorded as ``enroll.succeeded`` (method
        ``retry``) in the store's transaction; None when the request repeats nothing."""

        def event_for(certificate: CertificateRecord) -> AuditEvent:
            details = {
                "owner": token.owner,
                "serial": certificate.serial,
                "profile": certificate.profile,
                "token": token.token_id,
                "method": "retry",
            }
            return self._audit.event(actor, EventType.ENROLL_SUCCEEDED, retry.device_id, details=details)

        found = self._devices.repeat_enrollment(retry, event_for)
        if found is None:
            return None
        certificate = x509.load_der_x509_certificate(found.der)
        return IssuedCertificate(found, certificate, self._authorities.get(found.ca).chain)

    def _repeat_renewal(
        self, csr: bytes, presented: CertificateRecord, device_id: str, actor: Actor
    ) -> IssuedCertificate | None:
        """The device's current certificate again, when this renewal repeats the one that issued it:
        the answer was lost, so the device presents its previous (superseded, still unrevoked)
        certificate with a CSR for the key of the current one. Recorded as ``enroll.succeeded``
        (method ``renewal-retry``); None when the request repeats nothing."""
        try:
            key = validate_csr(load_csr(csr)).csr.public_key()
        except (InvalidRequestError, PolicyViolationError):
            return None
        retry = EnrollmentRetry(
            device_id=device_id,
            token_id=None,
            request_key_pin=spki_pin(key),
            since=self._clock(),
            renewed_from=presented.serial,
        )

        def event_for(certificate: CertificateRecord) -> AuditEvent:
            details = {
                "serial": certificate.serial,
                "profile": certificate.profile,
                "renewed": presented.serial,
                "method": "renewal-retry",
            }
            return self._audit.event(actor, EventType.ENROLL_SUCCEEDED, device_id, details=details)

        found = self._devices.repeat_enrollment(retry, event_for)
        if found is None:
            return None
        certificate = x509.load_der_x509_certificate(found.der)
        return IssuedCertificate(found, certificate, self._authorities.get(found.ca).chain)

    def _checked_keygen_request(self, csr: bytes, profile: str, ca: str, actor: Actor) -> CheckedRequest:
        """The checked CSR of a server-keygen request, whose key type and size the server-made key
        takes (a client such as libest reads only the kind of key it asked with), refused (audited as
        ``cert.refused``) before any key is made when otward or the token's profile does not issue
        for that type."""
        try:
            checked = validate_csr(load_csr(csr))
            validate_key_type(checked.key_type, self._issuance.profile(profile))
        except (InvalidRequestError, PolicyViolationError) as exc:
            self._issuance.record_refusal(actor, csr, profile, ca, exc)
            raise
        return checked

    def _check_label(self, owner: str, ca: str, label: str | None, device_id: str, actor: Actor) -> None:
        if label is not None and label != ca:
            message = f"devices of owner '{owner}' enroll with CA '{ca}', not '{label}'"
            raise self._refused(actor, device_id, PolicyViolationError(message, rule="est-label"))

    def _issue(
        self,
        csr: bytes | x509.CertificateSigningRequest,
        device_id: str,
        owner: str,
        ca: str,
        profile: str,
        actor: Actor,
        *,
        token_record: EnrollmentTokenRecord | None = None,
        renewing: str | None = None,
        renewal: Renewal | None = None,
        request_key_pin: str | None = None,
        retry_of: EnrollmentRetry | None = None,
        fallback: Callable[[], IssuedCertificate | None] | None = None,
        factory: dict[str, str] | None = None,
    ) -> IssuedCertificate:
        pem = csr.public_bytes(Encoding.PEM) if isinstance(csr, x509.CertificateSigningRequest) else csr
        device_profile = self._issuance.profile(profile).identity is Identity.DEVICE
        try:
            signed = self._issuance.sign(
                pem,
                profile=profile,
                ca=ca,
                owner=owner if device_profile else None,
                device_id=device_id,
                renewal=renewal,
                actor=actor,
            )
        except (InvalidRequestError, PolicyViolationError) as exc:
            self._issuance.record_refusal(actor, pem, profile, ca, exc)
            raise
        renewal_token = token_record is not None and token_record.kind == "renewal"
        enrollment = DeviceEnrollment(
            device_id=device_id,
            owner=owner,
            profile=profile,
            now=self._clock(),
            token_id=token_record.token_id if token_record and retry_of is None else None,
            existing_only=renewing is not None or renewal_token or retry_of is not None,
            new_device_only=renewing is None and not renewal_token and retry_of is None,
            renewing_serial=renewing,
            superseded_event=superseded_event(self._audit, actor, device_id),
            request_key_pin=request_key_pin,
            retry_of=retry_of,
        )
        details = {"owner": owner, "serial": signed.issued.serial, "profile": profile}
        if token_record is not None:
            details["token"] = token_record.token_id
            details["method"] = "renewal-token" if renewal_token else "token"
            if retry_of is not None:  # a new key: the one made before was lost
                details["method"] = "retry-serverkeygen"
                details["previous_serial"] = retry_of.serial or ""
        elif factory is not None:  # a first enrollment authenticated by a factory identity (IDevID)
            details.update(factory, method="idevid")
        else:
            details["method"] = "reenroll"
            details["previous_serial"] = renewing or ""
        succeeded = self._audit.event(actor, EventType.ENROLL_SUCCEEDED, device_id, details=details)
        try:
            self._devices.enroll_device(
                signed.issued.record,
                enrollment,
                [signed.event, succeeded],
                issuer_serials=signed.issuer_serials,
            )
        except (AuthenticationError, ConflictError, PolicyViolationError, NotFoundError) as exc:
            repeated = (
                fallback() if fallback and isinstance(exc, AuthenticationError | ConflictError) else None
            )
            if repeated is not None:
                return repeated
            raise self._refused(actor, device_id, exc) from None
        return signed.issued

    def _refused(self, actor: Actor, subject: str, error: OtwardError, **details: str) -> OtwardError:
        self._audit.record(
            self._audit.event(
                actor,
                EventType.ENROLL_REFUSED,
                subject[:256],
                outcome=Outcome.FAILURE,
                reason=error.message,
                details={"rule": error.rule or "", **details},
            )
        )
        return error


def _device_id(csr: x509.CertificateSigningRequest) -> str:
    """The CSR's subject CN, which EST makes the device id (read once the subject passed RFC 5280's
    rules: a CN in another string type is refused, not decoded)."""
    names = checked_subject(csr).get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise InvalidRequestError(
            "the CSR's subject must hold exactly one CN: the device id", rule="device-id"
        )
    value = names[0].value
    device_id = value if isinstance(value, str) else value.decode(errors="replace")
    if not DEVICE_ID.is_valid(device_id):
        raise InvalidRequestError(
            f"device id (CN) '{device_id[:64]}' must be 1-64 letters, digits or ._-", rule="device-id"
        )
    return device_id
