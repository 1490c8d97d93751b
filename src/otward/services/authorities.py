"""Creating CAs and their delegated OCSP responders, and loading them for signing."""

from __future__ import annotations

import builtins
import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from otward.core.audit import EventType, Outcome
from otward.core.authority import AuthorityInfo, PublicationUrls
from otward.core.ca_lifecycle import (
    RequestedCa,
    build_ca_csr,
    build_link_certificate,
    read_requested_ca,
    successor_name,
    successor_subject,
    validate_ca_certificate,
)
from otward.core.csr import validate_csr
from otward.core.identifiers import CA_NAME
from otward.core.issuance import (
    BACKDATE,
    build_ca_certificate,
    build_ocsp_responder_certificate,
    service_subject,
)
from otward.core.keys import KeyType, classify_public_key, signature_hash_for
from otward.core.ports import AuthorityStore, CertificateStore, KeyBackend
from otward.core.records import (
    AuthorityRecord,
    CertificateFilter,
    CertificateKind,
    CertificateRecord,
    PendingAuthorityRecord,
    certificate_record,
)
from otward.errors import (
    ConfigError,
    ConflictError,
    IntegrityError,
    InvalidRequestError,
    NotFoundError,
    PolicyViolationError,
)
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog

__all__ = ["AuthorityService", "LoadedAuthority", "sign"]

ROOT_VALIDITY = timedelta(days=20 * 365)
SUB_CA_VALIDITY = timedelta(days=10 * 365)
RESPONDER_VALIDITY = timedelta(days=365)
RESPONDER_RENEW_BEFORE = timedelta(days=30)


def sign(builder: x509.CertificateBuilder, key: CertificateIssuerPrivateKeyTypes) -> x509.Certificate:
    """Sign with the hash that matches the issuer key (never SHA-1)."""
    return builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]


@dataclass(frozen=True)
class LoadedAuthority:
    """A CA ready to sign: its certificate, key, responder and chain up to the root."""

    info: AuthorityInfo
    key: CertificateIssuerPrivateKeyTypes
    ocsp_certificate: x509.Certificate
    ocsp_key: CertificateIssuerPrivateKeyTypes
    chain: tuple[x509.Certificate, ...]  # this CA first, the root last (an external one included)
    parent: str | None
    is_root: bool = False  # self-signed here (a CA under an external root has no parent either)
    superseded_by: str | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def certificate(self) -> x509.Certificate:
        return self.info.certificate


class AuthorityService:
    def __init__(
        self,
        store: AuthorityStore,
        keys: KeyBackend,
        *,
        public_url: str,
        clock: Callable[[], datetime],
        new_serial: Callable[[], int],
        audit: AuditLog,
        certificates: CertificateStore | None = None,
    ) -> None:
        self._store = store
        self._certificates = certificates
        self._keys = keys
        self._audit = audit
        self._public_url = public_url
        self._clock = clock
        self._new_serial = new_serial
        self._loaded: dict[str, LoadedAuthority] = {}
        self._lock = threading.Lock()

    def urls(self, name: str) -> PublicationUrls:
        return PublicationUrls.for_ca(self._public_url, name)

    # --- loading -------------------------------------------------------------------------------

    def get(self, name: str) -> LoadedAuthority:
        """The CA ``name`` with its keys loaded (cached for the process)."""
        with self._lock:
            loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        record = self.record(name)
        certificate = x509.load_der_x509_certificate(record.certificate_der)
        parent_chain = (
            self.get(record.parent).chain
            if record.parent
            else tuple(x509.load_der_x509_certificate(d) for d in record.external_chain)
        )
        loaded = LoadedAuthority(
            info=AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name)),
            key=self._keys.load_key(record.key_ref),
            ocsp_certificate=x509.load_der_x509_certificate(record.ocsp_certificate_der),
            ocsp_key=self._keys.load_key(record.ocsp_key_ref),
            chain=(certificate, *parent_chain),
            parent=record.parent,
            is_root=record.is_root,
            superseded_by=record.superseded_by,
        )
        with self._lock:
            self._loaded[name] = loaded
        return loaded

    def prove_root_key(self) -> str:
        """Sign with the root CA's key and check the signature against its certificate: proof that
        whoever runs this holds the CA passphrase (or the HSM PIN), not only the data directory.
        Returns the root's name; an error (the key's own) when the key cannot be used."""
        roots = [r for r in self._store.list_authorities() if r.parent is None]
        if not roots:
            raise NotFoundError("no root CA to prove possession of", rule="ca")
        record = roots[0]
        certificate = x509.load_der_x509_certificate(record.certificate_der)
        key = self._keys.load_key(record.key_ref)
        probe = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "otward key possession")]))
            .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
        )
        if not probe.is_signature_valid or probe.public_key() != certificate.public_key():
            raise PolicyViolationError(
                f"the key of CA '{record.name}' does not match its certificate", rule="ca-key"
            )
        return record.name

    def record(self, name: str) -> AuthorityRecord:
        """The stored CA ``name``, read without touching its keys; NotFoundError names the known ones."""
        record = self._store.get_authority(name)
        if record is None:
            if self._store.get_pending_authority(name) is not None:
                raise PolicyViolationError(
                    f"CA '{name}' waits for its certificate from the parent outside otward; "
                    f"import it with: otward ca import-cert {name} --cert SIGNED.pem --chain CHAIN.pem",
                    rule="ca-pending",
                )
            known = ", ".join(a.name for a in self._store.list_authorities()) or "none"
            raise NotFoundError(f"CA '{name}' not found (known: {known})", rule="ca")
        return record

    def certificate_chain(self, name: str) -> list[x509.Certificate]:
        """Certificates from CA ``name`` up to its root, read without touching any key."""
        chain: list[x509.Certificate] = []
        current: str | None = name
        while current is not None:
            record = self._store.get_authority(current)
            if record is None:
                raise NotFoundError(f"CA '{current}' not found", rule="ca")
            chain.append(x509.load_der_x509_certificate(record.certificate_der))
            chain.extend(x509.load_der_x509_certificate(d) for d in record.external_chain)
            current = record.parent
        return chain

    def list(self) -> Sequence[AuthorityRecord]:
        return self._store.list_authorities()

    def forget(self) -> None:
        """Drop cached CAs (after another process changed them)."""
        with self._lock:
            self._loaded.clear()

    def forget_changed(self) -> builtins.list[str]:
        """Drop the cached CAs if another process or node changed one (a renewed CA certificate or OCSP
        responder, a rollover, an import, a CA gone); one read of the CA table, for the service's
        housekeeping. The names of the changed CAs."""
        stored = {record.name: record for record in self._store.list_authorities()}
        with self._lock:
            changed = [
                name
                for name, loaded in self._loaded.items()
                if (record := stored.get(name)) is None
                or loaded.certificate.public_bytes(Encoding.DER) != record.certificate_der
                or loaded.ocsp_certificate.public_bytes(Encoding.DER) != record.ocsp_certificate_der
                or loaded.superseded_by != record.superseded_by
            ]
        if changed:
            self.forget()  # children cache their parents' chains
        return changed

    def current_name(self, name: str) -> str:
        """The generation of CA ``name`` that issues now (``name`` itself unless rolled over)."""
        seen = {name}
        record = self.record(name)
        while record.superseded_by is not None:
            if record.superseded_by in seen:
                raise IntegrityError(f"CA '{name}' has a cycle of successors", rule="ca-superseded")
            seen.add(record.superseded_by)
            record = self.record(record.superseded_by)
        return record.name

    def generations(self, name: str) -> builtins.list[str]:
        """Every generation of CA ``name``'s line, the issuing one first, then older ones whose
        certificate has not expired (their leaves are still in use: trust files need them)."""
        records = {r.name: r for r in self._store.list_authorities()}
        current = self.current_name(name)
        predecessor = {r.superseded_by: r.name for r in records.values() if r.superseded_by}
        now = self._clock()
        line = [current]
        while (older := predecessor.get(line[-1])) is not None and older not in line:
            line.append(older)
        return [
            n
            for n in line
            if n == current
            or x509.load_der_x509_certificate(records[n].certificate_der).not_valid_after_utc > now
        ]

    def pending(self) -> Sequence[PendingAuthorityRecord]:
        """CAs whose key exists and whose certificate is being signed outside."""
        return self._store.list_pending_authorities()

    def is_pending(self, name: str) -> bool:
        return self._store.get_pending_authority(name) is not None

    # --- creation ------------------------------------------------------------------------------

    def _check_new_name(self, name: str) -> None:
        if not CA_NAME.is_valid(name):
            raise PolicyViolationError(
                f"CA name '{name}' must be 1-63 lower-case letters, digits or '-'", rule="ca-name"
            )
        if self._store.get_authority(name) is not None or self._store.get_pending_authority(name) is not None:
            raise ConflictError(f"CA '{name}' already exists", rule="ca-exists")

    def create_root(
        self, name: str, *, key_type: KeyType, organization: str, actor: Actor = SYSTEM_ACTOR
    ) -> LoadedAuthority:
        self._check_new_name(name)
        now = self._clock()
        key_ref = self._keys.create_key(key_type, f"ca-{name}")
        key = self._keys.load_key(key_ref)
        subject = _ca_subject(
            organization, f"{organization} Root CA" if name == "root" else f"{organization} {name}"
        )
        certificate = self._sign_ca_certificate(
            key,
            subject=subject,
            public_key=key.public_key(),
            not_after=now + ROOT_VALIDITY,
            path_length=None,
            issuer=None,
            now=now,
        )
        info = AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name))
        return self._store_new_ca(info, key_ref, key, parent=None, key_type=key_type, actor=actor)

    def create_subordinate(
        self,
        name: str,
        *,
        parent: str,
        key_type: KeyType,
        organization: str,
        path_length: int | None = 0,
        permitted_dns: Sequence[str] = (),
        permitted_ip: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        common_name: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> LoadedAuthority:
        self._check_new_name(name)
        issuer = self._signing_parent(parent)
        _check_path_length(issuer, path_length)
        # A sub-CA repeats its parent's constraints unless it narrows them itself.
        if issuer.info.permitted_dns and not permitted_dns:
            permitted_dns = issuer.info.permitted_dns
        if issuer.info.permitted_ip and not permitted_ip:
            permitted_ip = issuer.info.permitted_ip
        now = self._clock()
        not_after = min(now + SUB_CA_VALIDITY, issuer.certificate.not_valid_after_utc)
        key_ref = self._keys.create_key(key_type, f"ca-{name}")
        key = self._keys.load_key(key_ref)
        certificate = self._sign_ca_certificate(
            issuer.key,
            subject=_ca_subject(organization, common_name or f"{organization} {name} CA"),
            public_key=key.public_key(),
            not_after=not_after,
            path_length=path_length,
            issuer=issuer.info,
            permitted_dns=permitted_dns,
            permitted_ip=permitted_ip,
            now=now,
        )
        info = AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name))
        return self._store_new_ca(info, key_ref, key, parent=issuer.name, key_type=key_type, actor=actor)

    def _store_new_ca(
        self,
        info: AuthorityInfo,
        key_ref: str,
        key: CertificateIssuerPrivateKeyTypes,
        *,
        parent: str | None,
        key_type: KeyType,
        actor: Actor,
    ) -> LoadedAuthority:
        record, certificates, details = self._new_ca_records(
            info, key_ref, key, parent=parent, key_type=key_type
        )
        event = self._audit.event(actor, EventType.CA_CREATED, info.name, details=details)
        # The CA row, its own certificate, its responder's and the event go in together.
        self._store.add_authority(record, certificates, [event])
        return self.get(info.name)

    def _new_ca_records(
        self,
        info: AuthorityInfo,
        key_ref: str,
        key: CertificateIssuerPrivateKeyTypes,
        *,
        parent: str | None,
        key_type: KeyType,
        external_chain: Sequence[x509.Certificate] = (),
        store_own: bool = True,
    ) -> tuple[AuthorityRecord, builtins.list[CertificateRecord], dict[str, str]]:
        """The CA row, its certificate records (its own unless signed outside, and its new
        responder's) and the details of its audit event."""
        now = self._clock()
        ocsp_key_ref = self._keys.create_key(key_type, f"ocsp-{info.name}-{now:%Y%m%d%H%M%S}")
        ocsp_certificate = self._responder_certificate(info, key, ocsp_key_ref)
        own = certificate_record(
            info.certificate,
            ca=parent or info.name,
            profile="external-ca" if external_chain else "sub-ca" if parent else "root-ca",
            kind=CertificateKind.CA,
            now=now,
        )
        record = AuthorityRecord(
            name=info.name,
            parent=parent,
            certificate_der=own.der,
            key_ref=key_ref,
            ocsp_certificate_der=ocsp_certificate.public_bytes(Encoding.DER),
            ocsp_key_ref=ocsp_key_ref,
            created_at=now,
            external_chain=tuple(c.public_bytes(Encoding.DER) for c in external_chain),
        )
        responder = certificate_record(
            ocsp_certificate,
            ca=info.name,
            profile="ocsp-responder",
            kind=CertificateKind.OCSP_RESPONDER,
            now=now,
        )
        details = {"parent": parent or "", "serial": own.serial, "ocsp_responder": responder.serial}
        return record, [own, responder] if store_own else [responder], details

    def _responder_certificate(
        self, info: AuthorityInfo, ca_key: CertificateIssuerPrivateKeyTypes, ocsp_key_ref: str
    ) -> x509.Certificate:
        now = self._clock()
        ocsp_key = self._keys.load_key(ocsp_key_ref)
        classify_public_key(ocsp_key.public_key())
        subject = service_subject(info, f"OCSP responder for {info.name}")
        return sign(
            build_ocsp_responder_certificate(
                subject=subject,
                public_key=ocsp_key.public_key(),
                issuer=info,
                serial_number=self._new_serial(),
                not_valid_before=now - BACKDATE,
                not_valid_after=min(now + RESPONDER_VALIDITY, info.certificate.not_valid_after_utc),
            ),
            ca_key,
        )

    # --- lifecycle: external parents, renewal, rollover ------------------------------------------

    def revocation_of(self, name: str) -> tuple[str, CertificateRecord] | None:
        """The CA on ``name``'s chain (itself or a parent here) whose certificate is revoked, with
        that certificate's record; None when none is."""
        if self._certificates is None:
            return None
        current: str | None = name
        while current is not None:
            record = self.record(current)
            stored = self._certificates.get_certificate(
                x509.load_der_x509_certificate(record.certificate_der).serial_number
            )
            if stored is not None and stored.revoked_at is not None:
                return current, stored
            current = record.parent
        return None

    def check_can_sign(self, name: str) -> LoadedAuthority:
        """CA ``name`` loaded, refused with a clear error when it (or a parent) is revoked or it
        has expired: what issuance and sub-CA signing check first."""
        revoked = self.revocation_of(name)
        if revoked is not None:
            which, stored = revoked
            when = stored.revoked_at.strftime("%Y-%m-%d %H:%M UTC") if stored.revoked_at else "?"
            reason = stored.revocation_reason.value if stored.revocation_reason else "unspecified"
            where = f"CA '{name}'" if which == name else f"CA '{name}': its parent '{which}'"
            raise PolicyViolationError(
                f"{where} was revoked on {when} (reason {reason}) and issues nothing more",
                rule="ca-revoked",
            )
        loaded = self.get(name)
        expires = loaded.certificate.not_valid_after_utc
        if expires <= self._clock():
            raise PolicyViolationError(
                f"CA '{name}' expired on {expires:%Y-%m-%d %H:%M} UTC and issues nothing more",
                rule="validity-issuer",
            )
        return loaded

    def signing_authority(self, name: str) -> LoadedAuthority:
        """The generation of CA ``name`` that issues now, from the process's cache (the hot path of
        issuance: no database read). Refused when it has expired; a revoked CA is refused by the
        store inside the write (``issuer_serials``), and :meth:`check_can_sign` then explains it.
        Another process's rollover is seen after :meth:`forget_changed` (the service: each minute)."""
        loaded = self.get(name)
        seen = {name}
        while loaded.superseded_by is not None:
            if loaded.superseded_by in seen:
                raise IntegrityError(f"CA '{name}' has a cycle of successors", rule="ca-superseded")
            seen.add(loaded.superseded_by)
            loaded = self.get(loaded.superseded_by)
        expires = loaded.certificate.not_valid_after_utc
        if expires <= self._clock():
            raise PolicyViolationError(
                f"CA '{loaded.name}' expired on {expires:%Y-%m-%d %H:%M} UTC and issues nothing more",
                rule="validity-issuer",
            )
        return loaded

    def _sign_ca_certificate(
        self,
        signing_key: CertificateIssuerPrivateKeyTypes,
        *,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        now: datetime,
        not_after: datetime,
        path_length: int | None,
        issuer: AuthorityInfo | None,
        permitted_dns: Sequence[str] = (),
        permitted_ip: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
    ) -> x509.Certificate:
        """A root (``issuer`` None, signed with its own key) or subordinate CA certificate with a fresh
        serial number, backdated like every certificate otward makes: one place for create, sign-csr,
        renew and rollover."""
        return sign(
            build_ca_certificate(
                subject=subject,
                public_key=public_key,
                serial_number=self._new_serial(),
                not_valid_before=now - BACKDATE,
                not_valid_after=not_after,
                path_length=path_length,
                issuer=issuer,
                permitted_dns=permitted_dns,
                permitted_ip=permitted_ip,
            ),
            signing_key,
        )

    def _issuer_for(
        self, parent: str | None, own_key: CertificateIssuerPrivateKeyTypes, now: datetime
    ) -> tuple[AuthorityInfo | None, CertificateIssuerPrivateKeyTypes, str | None, datetime]:
        """Who signs a renewed or rolled-over CA certificate, and until when: a root signs itself for
        the root validity; a subordinate is signed by its parent's current generation, never beyond it.
        (issuer info, signing key, parent name, notAfter)."""
        if parent is None:
            return None, own_key, None, now + ROOT_VALIDITY
        issuer = self._signing_parent(parent)
        not_after = min(now + SUB_CA_VALIDITY, issuer.certificate.not_valid_after_utc)
        return issuer.info, issuer.key, issuer.name, not_after

    def _signing_parent(self, name: str) -> LoadedAuthority:
        """The generation of CA ``name`` that signs now (after a rollover, the newest)."""
        return self.check_can_sign(self.current_name(name))

    def create_pending(
        self,
        name: str,
        *,
        key_type: KeyType,
        organization: str,
        path_length: int | None = 0,
        permitted_dns: Sequence[str] = (),
        permitted_ip: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
        common_name: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> x509.CertificateSigningRequest:
        """Make CA ``name``'s key (in the configured backend) and a PKCS#10 request for its
        certificate, and record the CA as pending: it signs nothing until :meth:`import_certificate`."""
        self._check_new_name(name)
        requested = RequestedCa(path_length, tuple(permitted_dns), tuple(permitted_ip))
        subject = _ca_subject(organization, common_name or f"{organization} {name} CA")
        builder = build_ca_csr(subject, requested)  # checks before a key is made
        key_ref = self._keys.create_key(key_type, f"ca-{name}")
        key = self._keys.load_key(key_ref)
        csr = builder.sign(key, signature_hash_for(key))  # type: ignore[arg-type]
        now = self._clock()
        pending = PendingAuthorityRecord(
            name=name,
            key_ref=key_ref,
            csr_der=csr.public_bytes(Encoding.DER),
            path_length=path_length,
            created_at=now,
        )
        details = {"subject": subject.rfc4514_string(), "key_ref": key_ref, "path_length": str(path_length)}
        event = self._audit.event(actor, EventType.CA_CSR_WRITTEN, name, details=details)
        self._store.add_pending_authority(pending, [event])
        return csr

    def certificate_request(self, name: str) -> x509.CertificateSigningRequest:
        """A PKCS#10 request for CA ``name``'s key: the stored one of a pending CA, a new one (same
        subject, pathLen and name constraints) for an active CA whose parent is outside otward —
        its renewal goes through the root's operator too."""
        pending = self._store.get_pending_authority(name)
        if pending is not None:
            return x509.load_der_x509_csr(pending.csr_der)
        loaded = self.get(name)
        requested = RequestedCa(loaded.info.path_length, loaded.info.permitted_dns, loaded.info.permitted_ip)
        builder = build_ca_csr(loaded.certificate.subject, requested)
        return builder.sign(loaded.key, signature_hash_for(loaded.key))  # type: ignore[arg-type]

    def import_certificate(
        self,
        name: str,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        *,
        trust_anchors: Sequence[x509.Certificate] = (),
        actor: Actor = SYSTEM_ACTOR,
    ) -> LoadedAuthority:
        """Check ``certificate`` (signed outside for CA ``name``'s key) and make it the CA's
        certificate: a pending CA becomes active with its responder; an active CA under an
        external parent gets its renewed certificate. ``chain`` holds the issuers up to the root
        (the root included); with ``trust_anchors`` (DATA/root.pem of an installation whose root is
        outside) that root must be one of them."""
        now = self._clock()
        pending = self._store.get_pending_authority(name)
        existing = None if pending is not None else self.record(name)
        if existing is not None and existing.parent is not None:
            raise PolicyViolationError(
                f"CA '{name}' is signed by CA '{existing.parent}' of this installation; "
                f"renew it with otward ca renew {name}",
                rule="ca-not-external",
            )
        if existing is not None and existing.is_root:
            raise PolicyViolationError(f"CA '{name}' is a root of this installation", rule="ca-not-external")
        key_ref = pending.key_ref if pending is not None else existing.key_ref  # type: ignore[union-attr]
        key = self._keys.load_key(key_ref)
        requested = pending.path_length if pending is not None else self.get(name).info.path_length
        try:
            path = validate_ca_certificate(
                certificate,
                name=name,
                public_key=key.public_key(),
                requested_path_length=requested,
                chain=chain,
                now=now,
            )
            if trust_anchors and path[-1] not in trust_anchors:
                raise PolicyViolationError(
                    f"the chain ends at '{path[-1].subject.rfc4514_string()}', which is not the root "
                    "this installation trusts (root.pem)",
                    rule="ca-chain",
                )
            # Signed by a CA of this same installation (sign-csr): its record is stored already.
            known = (
                self._certificates.get_certificate(certificate.serial_number) if self._certificates else None
            )
            if known is not None and known.der != certificate.public_bytes(Encoding.DER):
                raise ConflictError(
                    f"a different certificate with serial {known.serial} is stored already", rule="ca-import"
                )
        except (PolicyViolationError, InvalidRequestError, ConflictError) as exc:
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.CA_IMPORTED,
                    name,
                    outcome=Outcome.FAILURE,
                    reason=exc.message,
                    details={"rule": exc.rule or ""},
                )
            )
            raise
        above = path[1:]
        info = AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name))
        details = {
            "serial": f"{certificate.serial_number:x}",
            "issuer": certificate.issuer.rfc4514_string(),
            "root": path[-1].subject.rfc4514_string(),
            "not_valid_after": certificate.not_valid_after_utc.isoformat(),
        }
        if pending is not None:
            key_type = classify_public_key(key.public_key())
            record, certificates, created = self._new_ca_records(
                info,
                key_ref,
                key,
                parent=None,
                key_type=key_type,
                external_chain=above,
                store_own=known is None,
            )
            event = self._audit.event(actor, EventType.CA_IMPORTED, name, details={**details, **created})
            self._store.activate_authority(record, certificates, [event])
        else:
            own = certificate_record(
                certificate, ca=name, profile="external-ca", kind=CertificateKind.CA, now=now
            )
            event = self._audit.event(
                actor, EventType.CA_RENEWED, name, details={**details, "external": "true"}
            )
            self._store.replace_certificate(
                name,
                own,
                [event],
                parent=None,
                external_chain=[c.public_bytes(Encoding.DER) for c in above],
                store_certificate=known is None,
            )
        self.forget()
        return self.get(name)

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        parent: str,
        path_length: int | None = None,
        days: int | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> x509.Certificate:
        """Sign another installation's CA request with CA ``parent`` (an offline root): the CSR's
        signature, key (RSA >= 2048, EC P-256 or larger, Ed25519) and hash (no SHA-1) are checked;
        pathLen is ``path_length``, else what the CSR asks, else 0; name constraints as the CSR asks
        (the parent's when it asks none). ``days`` that outlive the parent are refused; the default
        (10 years) is cut to the parent's notAfter."""
        subject = "(unreadable csr)"
        try:
            checked = validate_csr(csr)
            subject = checked.subject.rfc4514_string() or "(empty subject)"
            if not list(checked.subject):
                raise PolicyViolationError("a CA request needs a subject", rule="ca-subject")
            requested = read_requested_ca(csr)
            chosen = requested.path_length if path_length is None else path_length
            issuer = self._signing_parent(parent)
            _check_path_length(issuer, chosen)
            permitted_dns = requested.permitted_dns or issuer.info.permitted_dns
            permitted_ip = requested.permitted_ip or issuer.info.permitted_ip
            now = self._clock()
            parent_end = issuer.certificate.not_valid_after_utc
            if days is not None:
                if days < 1:
                    raise PolicyViolationError("validity must be at least 1 day", rule="validity")
                not_after = now + timedelta(days=days)
                if not_after > parent_end:
                    raise PolicyViolationError(
                        f"the CA certificate would be valid until {not_after:%Y-%m-%d} ({days} days), after "
                        f"CA '{issuer.name}' expires on {parent_end:%Y-%m-%d}",
                        rule="validity-issuer",
                    )
            else:
                not_after = min(now + SUB_CA_VALIDITY, parent_end)
            certificate = self._sign_ca_certificate(
                issuer.key,
                subject=checked.subject,
                public_key=csr.public_key(),
                not_after=not_after,
                path_length=chosen,
                issuer=issuer.info,
                permitted_dns=permitted_dns,
                permitted_ip=permitted_ip,
                now=now,
            )
        except (InvalidRequestError, PolicyViolationError) as exc:
            self._audit.record(
                self._audit.event(
                    actor,
                    EventType.CA_CSR_SIGNED,
                    subject,
                    outcome=Outcome.FAILURE,
                    reason=exc.message,
                    details={"parent": parent, "rule": exc.rule or ""},
                )
            )
            raise
        own = certificate_record(
            certificate, ca=issuer.name, profile="sub-ca", kind=CertificateKind.CA, now=now
        )
        details = {
            "parent": issuer.name,
            "serial": own.serial,
            "path_length": "none" if chosen is None else str(chosen),
            "not_valid_after": not_after.isoformat(),
        }
        event = self._audit.event(actor, EventType.CA_CSR_SIGNED, own.subject, details=details)
        self._certificates_required().add_certificate(
            own, [event], issuer_serials=[c.serial_number for c in issuer.chain[:-1]]
        )
        return certificate

    def _certificates_required(self) -> CertificateStore:
        if self._certificates is None:
            raise ConfigError("this operation needs the certificate store", rule="ca")
        return self._certificates

    def renew(self, name: str, *, actor: Actor = SYSTEM_ACTOR) -> LoadedAuthority:
        """Same key, same subject and constraints, new certificate: self-signed again for a root,
        from the parent's current generation for a sub-CA (up to the parent's notAfter). What the
        CA issued before stays valid: its issuer name and key do not change."""
        loaded = self.check_can_sign(name)
        record = self.record(name)
        if record.superseded_by is not None:
            raise PolicyViolationError(
                f"CA '{name}' was rolled over to '{record.superseded_by}'; renew that one",
                rule="ca-superseded",
            )
        if record.external_chain:
            raise PolicyViolationError(
                f"CA '{name}' is signed outside otward: write a request with otward ca renew {name} "
                "--csr-out FILE, have it signed, then otward ca import-cert",
                rule="ca-external",
            )
        now = self._clock()
        issuer_info, issuer_key, parent, not_after = self._issuer_for(record.parent, loaded.key, now)
        certificate = self._sign_ca_certificate(
            issuer_key,
            subject=loaded.certificate.subject,
            public_key=loaded.certificate.public_key(),
            not_after=not_after,
            path_length=loaded.info.path_length,
            issuer=issuer_info,
            permitted_dns=loaded.info.permitted_dns,
            permitted_ip=loaded.info.permitted_ip,
            now=now,
        )
        own = certificate_record(
            certificate,
            ca=parent or name,
            profile="sub-ca" if parent else "root-ca",
            kind=CertificateKind.CA,
            now=now,
        )
        details = {
            "serial": own.serial,
            "previous_serial": f"{loaded.certificate.serial_number:x}",
            "parent": parent or "",
            "not_valid_after": not_after.isoformat(),
        }
        event = self._audit.event(actor, EventType.CA_RENEWED, name, details=details)
        self._store.replace_certificate(name, own, [event], parent=parent)
        self.forget()
        return self.get(name)

    def rollover(
        self, name: str, *, key_type: KeyType | None = None, actor: Actor = SYSTEM_ACTOR
    ) -> tuple[LoadedAuthority, tuple[x509.Certificate, ...]]:
        """A new key and certificate under the next generation's name (``issuing-g2``), which issues
        from now on (:meth:`current_name`); the old generation stays for its CRL and OCSP until
        what it issued expires. A root's rollover also returns the link certificates
        (OldWithNew, NewWithOld; RFC 4210 4.4), stored as certificates of their issuers."""
        loaded = self.check_can_sign(name)
        record = self.record(name)
        if record.superseded_by is not None:
            raise PolicyViolationError(
                f"CA '{name}' was rolled over to '{record.superseded_by}' already", rule="ca-superseded"
            )
        if record.external_chain:
            raise PolicyViolationError(
                f"CA '{name}' is signed outside otward: create its successor with otward ca create "
                "NAME --external-parent and move owners to it",
                rule="ca-external",
            )
        new_name = successor_name(name)
        self._check_new_name(new_name)
        chosen_type = key_type or classify_public_key(loaded.certificate.public_key())
        now = self._clock()
        subject = successor_subject(loaded.certificate.subject, new_name)
        key_ref = self._keys.create_key(chosen_type, f"ca-{new_name}")
        key = self._keys.load_key(key_ref)
        links: tuple[x509.Certificate, ...] = ()
        issuer_info, issuer_key, parent, not_after = self._issuer_for(record.parent, key, now)
        certificate = self._sign_ca_certificate(
            issuer_key,
            subject=subject,
            public_key=key.public_key(),
            not_after=not_after,
            path_length=loaded.info.path_length,
            issuer=issuer_info,
            permitted_dns=loaded.info.permitted_dns,
            permitted_ip=loaded.info.permitted_ip,
            now=now,
        )
        info = AuthorityInfo(name=new_name, certificate=certificate, urls=self.urls(new_name))
        successor, certificates, details = self._new_ca_records(
            info, key_ref, key, parent=parent, key_type=chosen_type
        )
        if parent is None:
            old_end = loaded.certificate.not_valid_after_utc
            old_with_new = sign(
                build_link_certificate(
                    subject_certificate=certificate,
                    issuer_certificate=loaded.certificate,
                    serial_number=self._new_serial(),
                    not_valid_before=now - BACKDATE,
                    not_valid_after=old_end,
                ),
                loaded.key,
            )
            new_with_old = sign(
                build_link_certificate(
                    subject_certificate=loaded.certificate,
                    issuer_certificate=certificate,
                    serial_number=self._new_serial(),
                    not_valid_before=now - BACKDATE,
                    not_valid_after=old_end,
                ),
                key,
            )
            links = (old_with_new, new_with_old)
            certificates += [
                certificate_record(
                    old_with_new, ca=name, profile="link-old-with-new", kind=CertificateKind.CA, now=now
                ),
                certificate_record(
                    new_with_old, ca=new_name, profile="link-new-with-old", kind=CertificateKind.CA, now=now
                ),
            ]
            details["old_with_new"] = f"{old_with_new.serial_number:x}"
            details["new_with_old"] = f"{new_with_old.serial_number:x}"
        event = self._audit.event(
            actor, EventType.CA_ROLLED_OVER, name, details={**details, "successor": new_name}
        )
        self._store.add_successor(name, successor, certificates, [event])
        self.forget()
        return self.get(new_name), links

    def link_certificates(self) -> builtins.list[x509.Certificate]:
        """The root rollover link certificates (OldWithNew, NewWithOld) not expired or revoked."""
        if self._certificates is None:
            return []
        found: builtins.list[x509.Certificate] = []
        for profile in ("link-old-with-new", "link-new-with-old"):
            page, _ = self._certificates.list_certificates(
                CertificateFilter(profile=profile, revoked=False, expires_after=self._clock()),
                limit=100,
                offset=0,
            )
            found.extend(x509.load_der_x509_certificate(r.der) for r in page)
        return found

    def chain_of(self, certificate: x509.Certificate, name: str) -> builtins.list[x509.Certificate]:
        """The CA chain above ``certificate``, issued by a generation of CA ``name``: the generation
        whose subject is its issuer (the newest when renewals share it), up to the root."""
        for generation in self.generations(name):
            chain = self.certificate_chain(generation)
            if chain[0].subject == certificate.issuer:
                return chain
        return self.certificate_chain(name)

    def trust_bundle(self, names: Sequence[str]) -> builtins.list[x509.Certificate]:
        """The CA certificates a relying party needs for the certificates of ``names`` during a
        rollover overlap: every unexpired generation of each, with their chains up to the roots,
        each certificate once."""
        seen: dict[bytes, x509.Certificate] = {}
        for name in names:
            for generation in self.generations(name):
                for certificate in self.certificate_chain(generation):
                    seen.setdefault(certificate.fingerprint(hashes.SHA256()), certificate)
        return list(seen.values())

    def renew_ocsp_responder_if_due(self, name: str) -> bool:
        """Give CA ``name`` a fresh responder when the current one expires within 30 days (judged by
        the stored responder, which another node may have renewed already)."""
        self.forget_changed()
        loaded = self.get(name)
        now = self._clock()
        if loaded.ocsp_certificate.not_valid_after_utc - now > RESPONDER_RENEW_BEFORE:
            return False
        key_type = classify_public_key(loaded.ocsp_certificate.public_key())
        key_ref = self._keys.create_key(key_type, f"ocsp-{name}-{now:%Y%m%d%H%M%S}")
        certificate = self._responder_certificate(loaded.info, loaded.key, key_ref)
        record = certificate_record(
            certificate, ca=name, profile="ocsp-responder", kind=CertificateKind.OCSP_RESPONDER, now=now
        )
        event = self._audit.event(
            SYSTEM_ACTOR, EventType.OCSP_RESPONDER_RENEWED, name, details={"serial": record.serial}
        )
        self._store.replace_ocsp_responder(name, record, key_ref, [event])
        with self._lock:
            self._loaded.pop(name, None)
        return True


def _check_path_length(issuer: LoadedAuthority, path_length: int | None) -> None:
    """A CA under ``issuer`` may have at most the issuer's pathLen minus one (RFC 5280 4.2.1.9)."""
    parent_path_len = issuer.info.path_length
    if parent_path_len is not None:
        if parent_path_len < 1:
            raise PolicyViolationError(
                f"CA '{issuer.name}' has pathLenConstraint {parent_path_len} and cannot sign sub-CAs",
                rule="path-length",
            )
        if path_length is None or path_length > parent_path_len - 1:
            raise PolicyViolationError(
                f"path length must be at most {parent_path_len - 1} under CA '{issuer.name}'",
                rule="path-length",
            )
    if path_length is not None and path_length < 0:
        raise PolicyViolationError("path length must not be negative", rule="path-length")


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def _ca_subject(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
