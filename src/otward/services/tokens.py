"""API tokens: random secrets shown once, stored only as SHA-256, compared in constant time; each
with a scope (what it may do, :mod:`otward.core.authz`) and an optional expiry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from otward.core.accounts import actor_identity
from otward.core.audit import EventType, Outcome
from otward.core.authz import Permission, Scope, format_grants, is_granted, is_permitted
from otward.core.ports import AccountStore, TokenStore
from otward.core.records import TokenRecord
from otward.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from otward.services.accounts import whose_refusal
from otward.services.audit import SYSTEM_ACTOR, Actor, AuditLog
from otward.services.bearer import BearerFormat, secret_matches

__all__ = ["TokenService"]

_FORMAT = BearerFormat("otw")


class TokenService:
    def __init__(
        self,
        store: TokenStore,
        *,
        clock: Callable[[], datetime],
        audit: AuditLog,
        accounts: AccountStore,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._clock = clock
        self._audit = audit

    def create(
        self,
        name: str,
        actor: Actor = SYSTEM_ACTOR,
        *,
        scope: Scope = Scope.ADMIN,
        ttl: timedelta | None = None,
        account: str = "admin",
    ) -> tuple[TokenRecord, str]:
        """Store a new token of ``scope`` for ``account`` (valid for ``ttl``, or until revoked) and
        return it with its text, which is never shown again. It never does more than the account's
        roles allow, whatever its scope."""
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidRequestError("a token's lifetime must be positive", rule="token-ttl")
        holder = self._accounts.get_account(account)
        if holder is None:
            raise NotFoundError(f"account '{account}' not found", rule="account")
        if holder.disabled_at is not None:
            raise ConflictError(f"account '{account}' is disabled", rule="account-disabled")
        now = self._clock()
        token = _FORMAT.new()
        record = TokenRecord(
            token_id=token.token_id,
            name=name,
            secret_hash=token.secret_hash,
            created_at=now,
            scope=scope,
            expires_at=now + ttl if ttl is not None else None,
            account=account,
        )
        details = {"name": name, "scope": scope.value, "account": account}
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
        unheld = record is not None and record.grants is None  # its account is disabled or gone
        if (
            parsed is None
            or record is None
            or not valid
            or record.revoked_at is not None
            or expired
            or unheld
        ):
            subject = f"token:{parsed[0]}" if parsed else "(malformed token)"
            reason = (
                "malformed API token"
                if parsed is None
                else "expired API token"
                if valid and expired and record is not None and record.revoked_at is None
                else "the token's account is disabled or removed"
                if valid and unheld and record is not None and record.revoked_at is None
                else "invalid or revoked API token"
            )
            failure = self._audit.event(
                actor, EventType.AUTH_FAILED, subject, outcome=Outcome.FAILURE, reason=reason
            )
            self._audit.record_failure(failure)  # aggregated per source (docs/audit.md)
            raise AuthenticationError(reason, rule="token")
        return record

    def actor(self, token: TokenRecord, actor: Actor) -> Actor:
        """``actor`` naming the token's account (``admin:alice``) and the token as its credential."""
        return dataclasses.replace(
            actor, identity=actor_identity(token.account), credential=f"token:{token.token_id}"
        )

    def authorize(
        self, token: TokenRecord, permission: Permission, actor: Actor, *, owner: str | None = None
    ) -> None:
        """Refuse (PermissionDeniedError, recorded as ``authz.denied``) what the token's scope and its
        account's roles do not both cover, for a resource of ``owner`` (None: none, or all owners'); the
        one authorization check of the API (:func:`otward.core.authz.is_granted`)."""
        held = token.grants or frozenset()  # read with the token (one query per request)
        if is_granted(held, permission, scope=token.scope, owner=owner):
            return
        roles = format_grants(held) or "(none)"
        rule = "token-scope"
        if not is_permitted(token.scope, permission):
            reason = (
                f"a '{token.scope.value}' token may not {permission.action.value} {permission.area.value}"
            )
        else:
            rule = "role"
            whose = whose_refusal(held, permission, owner)
            reason = (
                f"account '{token.account}' (roles {roles}) may not"
                f" {permission.action.value} {permission.area.value}{whose}"
            )
        denied = self._audit.event(
            actor,
            EventType.AUTHZ_DENIED,
            f"token:{token.token_id}",
            outcome=Outcome.FAILURE,
            reason=reason,
            details={"permission": str(permission), "scope": token.scope.value, "roles": roles},
        )
        self._audit.record_failure(denied)  # aggregated per source, like failed authentication
        raise PermissionDeniedError(reason, rule=rule)

    def list_for(self, account: str) -> Sequence[TokenRecord]:
        return self._store.list_account_tokens(account)

    def list(self) -> Sequence[TokenRecord]:
        return self._store.list_tokens()

    def revoke(self, token_id: str, actor: Actor = SYSTEM_ACTOR) -> TokenRecord:
        """Revoke an API token for good; its next use fails (and is audited as ``auth.failed``)."""
        event = self._audit.event(actor, EventType.TOKEN_REVOKED, f"token:{token_id}")
        return self._store.revoke_token(token_id, self._clock(), [event])
