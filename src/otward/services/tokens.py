"""API tokens: random secrets shown once, stored only as SHA-256, compared in constant time; each
with a scope (what it may do, :mod:`otward.core.authz`) and an optional expiry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from otward.core.audit import EventType, Outcome
from otward.core.authz import Permission, Scope, is_permitted
from otward.core.ports import TokenStore
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError, InvalidRequestError, PermissionDeniedError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.bearer import BearerFormat, secret_matches

__all__ = ["TokenService"]

_FORMAT = BearerFormat("otw")


class TokenService:
    def __init__(self, store: TokenStore, *, clock: Callable[[], datetime], audit: AuditLog) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def create(
        self,
        name: str,
        actor: Actor = SYSTEM_ACTOR,
        *,
        scope: Scope = Scope.ADMIN,
        ttl: timedelta | None = None,
    ) -> tuple[TokenRecord, str]:
        """Store a new token of ``scope`` (valid for ``ttl``, or until revoked) and return it with its
        text, which is never shown again."""
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidRequestError("a token's lifetime must be positive", rule="token-ttl")
        now = self._clock()
        token = _FORMAT.new()
        record = TokenRecord(
            token_id=token.token_id,
            name=name,
            secret_hash=token.secret_hash,
            created_at=now,
            scope=scope,
            expires_at=now + ttl if ttl is not None else None,
        )
        details = {"name": name, "scope": scope.value}
        if record.expires_at is not None:
            details["expires_at"] = record.expires_at.isoformat()
        event = self._audit.event(actor, EventType.TOKEN_CREATED, f"token:{token.token_id}", details=details)
        self._store.add_token(record, [event])
        return record, token.text

    def authenticate(self, text: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """The token record for ``text``; AuthenticationError (recorded as ``auth.failed``, repeated
        failures of a source aggregated) if it is malformed, unknown, wrong, revoked or expired."""
        parsed = _FORMAT.parse(text)
        record = self._store.get_token(parsed[0]) if parsed else None
        valid = secret_matches(record.secret_hash if record else None, parsed[1] if parsed else None)
        expired = record is not None and record.expires_at is not None and record.expires_at <= self._clock()
        if parsed is None or record is None or not valid or record.revoked_at is not None or expired:
            subject = f"token:{parsed[0]}" if parsed else "(malformed token)"
            reason = (
                "malformed API token"
                if parsed is None
                else "expired API token"
                if valid and expired and record is not None and record.revoked_at is None
                else "invalid or revoked API token"
            )
            failure = self._audit.event(
                actor, EventType.AUTH_FAILED, subject, outcome=Outcome.FAILURE, reason=reason
            )
            self._audit.record_failure(failure)  # aggregated per source (docs/audit.md)
            raise AuthenticationError(reason, rule="token")
        return record

    def authorize(self, token: TokenRecord, permission: Permission, actor: Actor) -> None:
        """Refuse (PermissionDeniedError, recorded as ``authz.denied``) what the token's scope does not
        cover; the one authorization check of the API (:func:`otward.core.authz.is_permitted`)."""
        if is_permitted(token.scope, permission):
            return
        reason = f"a '{token.scope.value}' token may not {permission.action.value} {permission.area.value}"
        denied = self._audit.event(
            actor,
            EventType.AUTHZ_DENIED,
            f"token:{token.token_id}",
            outcome=Outcome.FAILURE,
            reason=reason,
            details={"permission": str(permission), "scope": token.scope.value},
        )
        self._audit.record_failure(denied)  # aggregated per source, like failed authentication
        raise PermissionDeniedError(reason, rule="token-scope")

    def list(self) -> Sequence[TokenRecord]:
        return self._store.list_tokens()

    def revoke(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """Revoke an API token for good; its next use fails (and is audited as ``auth.failed``)."""
        event = self._audit.event(actor, EventType.TOKEN_REVOKED, f"token:{token_id}")
        return self._store.revoke_token(token_id, self._clock(), [event])
