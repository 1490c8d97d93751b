"""API tokens: random secrets shown once, stored only as SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import datetime

from otward.core.ports import TokenStore
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError

__all__ = ["TokenService"]

_PREFIX = "otw"
_TOKEN = re.compile(r"^otw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def _hash(secret: str) -> bytes:
    # A 256-bit random secret needs no slow KDF: SHA-256 cannot be brute-forced back to it.
    return hashlib.sha256(secret.encode()).digest()


class TokenService:
    def __init__(self, store: TokenStore, *, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def create(self, name: str) -> tuple[TokenRecord, str]:
        """Store a new token and return it with its text, which is never shown again."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id=token_id, name=name, secret_hash=_hash(secret), created_at=self._clock()
        )
        self._store.add_token(record)
        return record, f"{_PREFIX}_{token_id}_{secret}"

    def authenticate(self, text: str) -> TokenRecord:
        """The token record for ``text``; AuthenticationError if unknown, wrong or revoked."""
        match = _TOKEN.match(text.strip())
        if match is None:
            raise AuthenticationError("malformed API token", rule="token")
        record = self._store.get_token(match.group(1))
        expected = record.secret_hash if record is not None else _hash("")
        valid = hmac.compare_digest(expected, _hash(match.group(2)))
        if record is None or not valid or record.revoked_at is not None:
            raise AuthenticationError("invalid or revoked API token", rule="token")
        return record
