"""API tokens: random secrets shown once, stored only as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime

from otward.core.audit import EventType, Outcome
from otward.core.ports import TokenStore
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog

__all__ = ["TokenService"]

_PREFIX = "otw"
_TOKEN = re.compile(r"^otw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def _hash(secret: str) -> bytes:
    # A 256-bit random secret needs no slow KDF: SHA-256 cannot be brute-forced back to it.
    return hashlib.sha256(secret.encode()).digest()


class TokenService:
    def __init__(self, store: TokenStore, *, clock: Callable[[], datetime], audit: AuditLog) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit

    def create(self, name: str, actor: Actor = SYSTEM_ACTOR) -> tuple[TokenRecord, str]:
        """Store a new token and return it with its text, which is never shown again."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id=token_id, name=name, secret_hash=_hash(secret), created_at=self._clock()
        )
        event = self._audit.event(actor, EventType.TOKEN_CREATED, f"token:{token_id}", details={"name": name})
        self._store.add_token(record, [event])
        return record, f"{_PREFIX}_{token_id}_{secret}"

    def authenticate(self, text: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """The token record for ``text``; AuthenticationError (recorded as ``auth.failed``) if it is
        malformed, unknown, wrong or revoked."""
        match = _TOKEN.match(text.strip())
        record = self._store.get_token(match.group(1)) if match else None
        expected = record.secret_hash if record is not None else _hash("")
        valid = hmac.compare_digest(expected, _hash(match.group(2) if match else ""))
        if match is None or record is None or not valid or record.revoked_at is not None:
            subject = f"token:{match.group(1)}" if match else "(malformed token)"
            reason = "malformed API token" if match is None else "invalid or revoked API token"
            failure = self._audit.event(
                actor, EventType.AUTH_FAILED, subject, outcome=Outcome.FAILURE, reason=reason
            )
            self._audit.record(failure)
            raise AuthenticationError(reason, rule="token")
        return record

    def list(self) -> Sequence[TokenRecord]:
        return self._store.list_tokens()

    def revoke(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """Revoke an API token for good; its next use fails (and is audited as ``auth.failed``)."""
        event = self._audit.event(actor, EventType.TOKEN_REVOKED, f"token:{token_id}")
        return self._store.revoke_token(token_id, self._clock(), [event])
