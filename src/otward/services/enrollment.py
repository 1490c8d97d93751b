"""Owners and their enrollment tokens: who a device belongs to, and what lets it enroll.

An enrollment token is shown once, stored only as SHA-256, limited in time and
in uses, and bound to its owner, one profile and a device-id pattern. The EST
endpoint (issue #4) verifies a token with :meth:`EnrollmentTokens.verify` and
spends a use with the store's atomic ``use_enrollment_token``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

from otward.core.audit import EventType, Outcome
from otward.core.identifiers import OWNER
from otward.core.ports import EnrollmentTokenStore, OwnerStore
from otward.core.records import EnrollmentTokenRecord, OwnerRecord
from otward.errors import AuthenticationError, InvalidRequestError, NotFoundError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.authorities import AuthorityService
from otward.services.bearer import BearerFormat, secret_matches

__all__ = ["DEFAULT_OWNER_CA", "EnrollmentTokens", "Owners"]

DEFAULT_OWNER_CA = "issuing"
MAX_TTL = timedelta(days=30)
MAX_RENEWAL_GRACE_DAYS = 3 * 365  # a machine may sit in storage for years, not for ever
_FORMAT = BearerFormat("otwe")
_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,128}$")
# The same message for every token failure: a client learns nothing about which tokens exist.
_REFUSED = "invalid, expired, used-up or revoked enrollment token"


def _check_grace(days: int) -> None:
    if not 0 <= days <= MAX_RENEWAL_GRACE_DAYS:
        raise InvalidRequestError(
            f"renewal grace must be 0 to {MAX_RENEWAL_GRACE_DAYS} days", rule="renewal-grace"
        )


class Owners:
    def __init__(
        self,
        store: OwnerStore,
        authorities: AuthorityService,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._authorities = authorities
        self._clock = clock
        self._audit = audit
        self._issuing: dict[str, str] = {}

    def create(
        self,
        name: str,
        *,
        ca: str | None = None,
        allow_server_keygen: bool = False,
        renewal_grace_days: int = 0,
        actor: Actor = SYSTEM_ACTOR,
    ) -> OwnerRecord:
        """An owner whose devices are issued by ``ca`` (its own sub-CA, or ``issuing``)."""
        _check_grace(renewal_grace_days)
        if not OWNER.is_valid(name):
            raise PolicyViolationError(
                f"owner name '{name}' must be 1-64 lower-case letters, digits or ._-", rule="owner-name"
            )
        chosen = ca or DEFAULT_OWNER_CA
        authority = self._authorities.get(chosen)
        if authority.is_root:
            raise PolicyViolationError(f"CA '{chosen}' is a root; owners need an issuing CA", rule="ca-root")
        record = OwnerRecord(
            name=name,
            ca=chosen,
            created_at=self._clock(),
            allow_server_keygen=allow_server_keygen,
            renewal_grace_days=renewal_grace_days,
        )
        details = {
            "ca": chosen,
            "allow_server_keygen": str(allow_server_keygen).lower(),
            "renewal_grace_days": str(renewal_grace_days),
        }
        event = self._audit.event(actor, EventType.OWNER_CREATED, name, details=details)
        self._store.add_owner(record, [event])
        return record

    def update(
        self,
        name: str,
        *,
        allow_server_keygen: bool | None = None,
        renewal_grace_days: int | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> OwnerRecord:
        """Change what an owner's devices may do (server key generation, renewal after expiry)."""
        if renewal_grace_days is not None:
            _check_grace(renewal_grace_days)
        details = {}
        if allow_server_keygen is not None:
            details["allow_server_keygen"] = str(allow_server_keygen).lower()
        if renewal_grace_days is not None:
            details["renewal_grace_days"] = str(renewal_grace_days)
        event = self._audit.event(actor, EventType.OWNER_CHANGED, name, details=details)
        return self._store.update_owner(
            name,
            allow_server_keygen=allow_server_keygen,
            renewal_grace_days=renewal_grace_days,
            events=[event],
        )

    def get(self, name: str) -> OwnerRecord:
        record = self._store.get_owner(name)
        if record is None:
            raise NotFoundError(f"owner '{name}' not found", rule="owner")
        self._issuing[name] = record.ca
        return record

    def issuing_ca(self, name: str) -> str:
        """The CA of ``name``'s devices, remembered: an owner's CA never changes and owners are never
        deleted, so enrollment need not read it every time."""
        ca = self._issuing.get(name)
        return ca if ca is not None else self.get(name).ca

    def list(self) -> Sequence[OwnerRecord]:
        return self._store.list_owners()


class EnrollmentTokens:
    def __init__(
        self,
        store: EnrollmentTokenStore,
        owners: Owners,
        profiles: Callable[[str], object],
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
    ) -> None:
        self._store = store
        self._owners = owners
        self._profile = profiles  # raises for an unknown profile
        self._clock = clock
        self._audit = audit

    def create(
        self,
        owner: str,
        *,
        uses: int = 1,
        ttl: timedelta = timedelta(hours=1),
        device_id_pattern: str = "*",
        profile: str = "device",
        actor: Actor = SYSTEM_ACTOR,
    ) -> tuple[EnrollmentTokenRecord, str]:
        """Store a token and return it with its text, which is never shown again."""
        self._owners.get(owner)
        self._profile(profile)
        if not 1 <= uses <= 100_000:
            raise InvalidRequestError("uses must be between 1 and 100000", rule="token-uses")
        if not timedelta(minutes=1) <= ttl <= MAX_TTL:
            raise InvalidRequestError("ttl must be between 1 minute and 30 days", rule="token-ttl")
        if not _PATTERN.fullmatch(device_id_pattern):
            raise InvalidRequestError(
                f"device id pattern '{device_id_pattern}' may use letters, digits, ._- and the globs * ? [ ]",
                rule="token-pattern",
            )
        return self._store_new(owner, profile, device_id_pattern, uses, ttl, "enrollment", actor)

    def create_renewal(
        self, owner: str, device_id: str, profile: str, *, ttl: timedelta, actor: Actor
    ) -> tuple[EnrollmentTokenRecord, str]:
        """A single-use token that renews ``device_id`` only (earned by a passed ``renew`` challenge)."""
        return self._store_new(owner, profile, device_id, 1, ttl, "renewal", actor)

    def _store_new(
        self,
        owner: str,
        profile: str,
        pattern: str,
        uses: int,
        ttl: timedelta,
        kind: Literal["enrollment", "renewal"],
        actor: Actor,
    ) -> tuple[EnrollmentTokenRecord, str]:
        token = _FORMAT.new()
        token_id = token.token_id
        now = self._clock()
        record = EnrollmentTokenRecord(
            token_id=token_id,
            owner=owner,
            secret_hash=token.secret_hash,
            profile=profile,
            device_id_pattern=pattern,
            uses_allowed=uses,
            uses=0,
            expires_at=now + ttl,
            created_at=now,
            kind=kind,
        )
        details = {
            "owner": owner,
            "profile": profile,
            "uses": str(uses),
            "pattern": pattern,
            "expires_at": record.expires_at.isoformat(),
            "kind": kind,
        }
        event = self._audit.event(
            actor, EventType.ENROLL_TOKEN_CREATED, f"enroll_token:{token_id}", details=details
        )
        self._store.add_enrollment_token(record, [event])
        return record, token.text

    def list(self, owner: str | None = None) -> Sequence[EnrollmentTokenRecord]:
        return self._store.list_enrollment_tokens(owner)

    def find(
        self, *, owners: frozenset[str] | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[Sequence[EnrollmentTokenRecord], int]:
        """A page of enrollment tokens (not renewal tokens) of ``owners`` (None: all), newest first."""
        return self._store.find_enrollment_tokens(owners=owners, limit=limit, offset=offset)

    def get(self, token_id: str) -> EnrollmentTokenRecord:
        record = self._store.get_enrollment_token(token_id)
        if record is None:
            raise NotFoundError(f"enrollment token '{token_id}' not found", rule="enroll-token")
        return record

    def revoke(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> EnrollmentTokenRecord:
        event = self._audit.event(actor, EventType.ENROLL_TOKEN_REVOKED, f"enroll_token:{token_id}")
        return self._store.revoke_enrollment_token(token_id, self._clock(), [event])

    def authenticated(self, text: str) -> EnrollmentTokenRecord | None:
        """The record of the active token ``text``, else None; records nothing and spends nothing.

        For deciding whether a refused request came from a holder of a valid token (whose refusal
        is worth an audit event) before anything else about the request is known."""
        parsed = _FORMAT.parse(text)
        record = self._store.get_enrollment_token(parsed[0]) if parsed else None
        if not secret_matches(record.secret_hash if record else None, parsed[1] if parsed else None):
            return None
        assert record is not None  # noqa: S101 - a matching secret implies a stored record
        return record if record.state_at(self._clock()) == "active" else None

    def verify(
        self, text: str, *, device_id: str, profile: str | None = None, actor: Actor
    ) -> EnrollmentTokenRecord:
        """The token's record if ``text`` may enroll ``device_id`` under ``profile`` (default: the
        token's own) now.

        Unknown, wrong, expired, used-up and revoked tokens raise AuthenticationError (HTTP 401), a
        device id or profile the token does not cover raises PolicyViolationError (HTTP 403 at the
        EST endpoint); both are audited as ``enroll.refused``. Nothing is spent here.
        """
        record = self.authenticate(text, actor=actor, device_id=device_id)
        self.check_covers(record, device_id=device_id, profile=profile, actor=actor)
        return record

    def authenticate(
        self, text: str, *, actor: Actor, device_id: str | None = None, spent_ok: bool = False
    ) -> EnrollmentTokenRecord:
        """The record of ``text`` if it is a token that may enroll now; AuthenticationError (HTTP 401,
        audited as ``enroll.refused``) if it is unknown, wrong, expired, used up or revoked. Checked
        before anything the request carries is parsed, so a bad token is a 401 whatever comes with it.

        With ``spent_ok`` a used-up or expired token with the right secret passes too: it may still
        repeat an enrollment it made (:mod:`otward.services.est`), and :meth:`require_active`
        refuses it for anything else."""
        parsed = _FORMAT.parse(text)
        record = self._store.get_enrollment_token(parsed[0]) if parsed else None
        valid = secret_matches(record.secret_hash if record else None, parsed[1] if parsed else None)
        state = record.state_at(self._clock()) if record is not None else "unknown"
        subject = f"enroll_token:{parsed[0]}" if parsed else "(malformed token)"
        usable = ("active", "used", "expired") if spent_ok else ("active",)
        if record is None or not valid or state not in usable:
            reason = (
                "malformed token" if parsed is None else ("wrong secret" if record and not valid else state)
            )
            self._refuse(actor, subject, f"enrollment token refused: {reason}", device_id)
            raise AuthenticationError(_REFUSED, rule="enroll-token")
        return record

    def require_active(self, record: EnrollmentTokenRecord, *, actor: Actor, device_id: str) -> None:
        """AuthenticationError (HTTP 401, audited as :meth:`authenticate` does) unless the token
        ``record`` authenticated with ``spent_ok`` may still spend a use now."""
        state = record.state_at(self._clock())
        if state != "active":
            subject = f"enroll_token:{record.token_id}"
            self._refuse(actor, subject, f"enrollment token refused: {state}", device_id)
            raise AuthenticationError(_REFUSED, rule="enroll-token")

    def check_covers(
        self, record: EnrollmentTokenRecord, *, device_id: str, profile: str | None = None, actor: Actor
    ) -> None:
        """PolicyViolationError (HTTP 403 at the EST endpoint, audited) unless the authenticated token
        ``record`` covers ``device_id`` and ``profile`` (default: the token's own)."""
        subject = f"enroll_token:{record.token_id}"
        if profile is not None and profile != record.profile:
            message = f"the enrollment token is for profile '{record.profile}', not '{profile}'"
            self._refuse(actor, subject, message, device_id)
            raise PolicyViolationError(message, rule="enroll-token-profile")
        if not fnmatch.fnmatchcase(device_id, record.device_id_pattern):
            message = (
                f"device id '{device_id}' does not match the token's pattern '{record.device_id_pattern}'"
            )
            self._refuse(actor, subject, message, device_id)
            raise PolicyViolationError(message, rule="enroll-token-pattern")

    def _refuse(self, actor: Actor, subject: str, reason: str, device_id: str | None) -> None:
        self._audit.record(
            self._audit.event(
                actor,
                EventType.ENROLL_REFUSED,
                subject,
                outcome=Outcome.FAILURE,
                reason=reason,
                details={"device_id": device_id[:64]} if device_id is not None else None,
            )
        )
