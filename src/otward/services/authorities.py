"""Creating CAs and their delegated OCSP responders, and loading them for signing."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from otward.core.audit import EventType
from otward.core.authority import AuthorityInfo, PublicationUrls
from otward.core.identifiers import CA_NAME
from otward.core.issuance import (
    BACKDATE,
    build_ca_certificate,
    build_ocsp_responder_certificate,
    service_subject,
)
from otward.core.keys import KeyType, classify_public_key, signature_hash_for
from otward.core.ports import AuthorityStore, KeyBackend
from otward.core.records import AuthorityRecord, CertificateKind, certificate_record
from otward.errors import ConflictError, NotFoundError, PolicyViolationError
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
    chain: tuple[x509.Certificate, ...]  # this CA first, the root last
    parent: str | None

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
    ) -> None:
        self._store = store
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
        parent_chain = self.get(record.parent).chain if record.parent else ()
        loaded = LoadedAuthority(
            info=AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name)),
            key=self._keys.load_key(record.key_ref),
            ocsp_certificate=x509.load_der_x509_certificate(record.ocsp_certificate_der),
            ocsp_key=self._keys.load_key(record.ocsp_key_ref),
            chain=(certificate, *parent_chain),
            parent=record.parent,
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
            current = record.parent
        return chain

    def list(self) -> Sequence[AuthorityRecord]:
        return self._store.list_authorities()

    def forget(self) -> None:
        """Drop cached CAs (after another process changed them)."""
        with self._lock:
            self._loaded.clear()

    # --- creation ------------------------------------------------------------------------------

    def _check_new_name(self, name: str) -> None:
        if not CA_NAME.is_valid(name):
            raise PolicyViolationError(
                f"CA name '{name}' must be 1-63 lower-case letters, digits or '-'", rule="ca-name"
            )
        if self._store.get_authority(name) is not None:
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
        certificate = sign(
            build_ca_certificate(
                subject=subject,
                public_key=key.public_key(),
                serial_number=self._new_serial(),
                not_valid_before=now - BACKDATE,
                not_valid_after=now + ROOT_VALIDITY,
                path_length=None,
                issuer=None,
            ),
            key,
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
        issuer = self.get(parent)
        parent_path_len = issuer.info.path_length
        if parent_path_len is not None:
            if parent_path_len < 1:
                raise PolicyViolationError(
                    f"CA '{parent}' has pathLenConstraint {parent_path_len} and cannot sign sub-CAs",
                    rule="path-length",
                )
            if path_length is None or path_length > parent_path_len - 1:
                raise PolicyViolationError(
                    f"path length must be at most {parent_path_len - 1} under CA '{parent}'",
                    rule="path-length",
                )
        if path_length is not None and path_length < 0:
            raise PolicyViolationError("path length must not be negative", rule="path-length")
        # A sub-CA repeats its parent's constraints unless it narrows them itself.
        if issuer.info.permitted_dns and not permitted_dns:
            permitted_dns = issuer.info.permitted_dns
        if issuer.info.permitted_ip and not permitted_ip:
            permitted_ip = issuer.info.permitted_ip
        now = self._clock()
        not_after = min(now + SUB_CA_VALIDITY, issuer.certificate.not_valid_after_utc)
        key_ref = self._keys.create_key(key_type, f"ca-{name}")
        key = self._keys.load_key(key_ref)
        certificate = sign(
            build_ca_certificate(
                subject=_ca_subject(organization, common_name or f"{organization} {name} CA"),
                public_key=key.public_key(),
                serial_number=self._new_serial(),
                not_valid_before=now - BACKDATE,
                not_valid_after=not_after,
                path_length=path_length,
                issuer=issuer.info,
                permitted_dns=permitted_dns,
                permitted_ip=permitted_ip,
            ),
            issuer.key,
        )
        info = AuthorityInfo(name=name, certificate=certificate, urls=self.urls(name))
        return self._store_new_ca(info, key_ref, key, parent=parent, key_type=key_type, actor=actor)

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
        now = self._clock()
        ocsp_key_ref = self._keys.create_key(key_type, f"ocsp-{info.name}-{now:%Y%m%d%H%M%S}")
        ocsp_certificate = self._responder_certificate(info, key, ocsp_key_ref)
        own = certificate_record(
            info.certificate,
            ca=parent or info.name,
            profile="sub-ca" if parent else "root-ca",
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
        )
        responder = certificate_record(
            ocsp_certificate,
            ca=info.name,
            profile="ocsp-responder",
            kind=CertificateKind.OCSP_RESPONDER,
            now=now,
        )
        details = {"parent": parent or "", "serial": own.serial, "ocsp_responder": responder.serial}
        event = self._audit.event(actor, EventType.CA_CREATED, info.name, details=details)
        # The CA row, its own certificate, its responder's and the event go in together.
        self._store.add_authority(record, [own, responder], [event])
        return self.get(info.name)

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

    def renew_ocsp_responder_if_due(self, name: str) -> bool:
        """Give CA ``name`` a fresh responder when the current one expires within 30 days."""
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


def _ca_subject(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
