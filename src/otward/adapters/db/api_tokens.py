"""API tokens of administrators and services, stored only as hashes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, insert, select

from otward.adapters.db import ledger
from otward.adapters.db.database import Database, revoke_once
from otward.adapters.db.schema import accounts, api_tokens
from otward.core.audit import AuditEvent
from otward.core.authz import Scope, parse_grant
from otward.core.records import TokenRecord

__all__ = ["SqlTokenStore"]


def _token_record(row: Row[Any]) -> TokenRecord:
    held = getattr(row, "grants", None) is not None and row.disabled_at is None
    return TokenRecord(
        row.token_id,
        row.name,
        bytes(row.secret_hash),
        row.created_at,
        row.revoked_at,
        scope=Scope(row.scope),
        expires_at=row.expires_at,
        account=row.account,
        grants=frozenset(parse_grant(g) for g in row.grants.split(",") if g) if held else None,
    )


def _with_account() -> Select[Any]:
    """Tokens with their account's roles and state: one read per request for both."""
    return select(api_tokens, accounts.c.grants, accounts.c.disabled_at).select_from(
        api_tokens.outerjoin(accounts, api_tokens.c.account == accounts.c.name)
    )


class SqlTokenStore:
    """Implements :class:`otward.core.ports.TokenStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add_token(self, token: TokenRecord, events: Sequence[AuditEvent] = ()) -> None:
        with self._database.transaction() as conn:
            ledger.append(conn, events)
            conn.execute(
                insert(api_tokens).values(
                    token_id=token.token_id,
                    name=token.name,
                    secret_hash=token.secret_hash,
                    created_at=token.created_at,
                    revoked_at=token.revoked_at,
                    scope=token.scope.value,
                    expires_at=token.expires_at,
                    account=token.account,
                )
            )

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._database.reading() as conn:
            row = conn.execute(_with_account().where(api_tokens.c.token_id == token_id)).first()
        return _token_record(row) if row is not None else None

    def list_tokens(self) -> Sequence[TokenRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at)).all()
        return [_token_record(r) for r in rows]

    def list_account_tokens(self, account: str) -> Sequence[TokenRecord]:
        with self._database.reading() as conn:
            rows = conn.execute(
                select(api_tokens).where(api_tokens.c.account == account).order_by(api_tokens.c.created_at)
            ).all()
        return [_token_record(r) for r in rows]

    def revoke_token(self, token_id: str, when: datetime, events: Sequence[AuditEvent] = ()) -> TokenRecord:
        with self._database.transaction() as conn:
            row = revoke_once(
                conn, api_tokens.c.token_id, token_id, f"API token {token_id}", "token", revoked_at=when
            )
            ledger.append(conn, events)
        return _token_record(row)
