"""API tokens: random secrets shown once, stored only as SHA-256, compared in constant time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from otward.core.audit import EventType, Outcome
from otward.core.ports import TokenStore
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.bearer import BearerFormat, secret_matches

__all__ = ["TokenService"]

_FORMAT = BearerFormat("otw")


class TokenService:
    def __init__(self, store: TokenStore, *, clock: Callable[[], datetime], audit: AuditLog) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def create(self, name: str, actor: Actor = SYSTEM_ACTOR) -> tuple[TokenRecord, str]:
        """Store a new token and return it with its text, which is never shown again."""
        token = _FORMAT.new()
        record = TokenRecord(
            token_id=token.token_id, name=name, secret_hash=token.secret_hash, created_at=self._clock()
        )
        event = self._audit.event(
            actor, EventType.TOKEN_CREATED, f"token:{token.token_id}", details={"name": name}
        )
        self._store.add_token(record, [event])
        return record, token.text

    def authenticate(self, text: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """The token record for ``text``; AuthenticationError (recorded as ``auth.failed``, repeated
        failures of a source aggregated) if it is malformed, unknown, wrong or revoked."""
        parsed = _FORMAT.parse(text)
        record = self._store.get_token(parsed[0]) if parsed else None
        valid = secret_matches(record.secret_hash if record else None, parsed[1] if parsed else None)
        if parsed is None or record is None or not valid or record.revoked_at is not None:
            subject = f"token:{parsed[0]}" if parsed else "(malformed token)"
            reason = "malformed API token" if parsed is None else "invalid or revoked API token"
            failure = self._audit.event(
                actor, EventType.AUTH_FAILED, subject, outcome=Outcome.FAILURE, reason=reason
            )
            self._audit.record_failure(failure)  # aggregated per source (docs/audit.md)
            raise AuthenticationError(reason, rule="token")
        return record

    def list(self) -> Sequence[TokenRecord]:
        return self._store.list_tokens()

    def revoke(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """Revoke an API token for good; its next use fails (and is audited as ``auth.failed``)."""
        event = self._audit.event(actor, EventType.TOKEN_REVOKED, f"token:{token_id}")
        return self._store.revoke_token(token_id, self._clock(), [event])
