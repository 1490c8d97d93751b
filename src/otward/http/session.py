"""``/api/v1/session``: sign in with an account's password (and TOTP code) for a short-lived token;
``/api/v1/accounts``: the accounts and their roles (read by ``admin`` and ``auditor``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from otward.core.authz import Scope
from otward.http.auth import AdminReader, get_pki, request_actor
from otward.http.limits import guard_failures
from otward.services.accounts import MAX_PASSWORD_BYTES
from otward.services.audit import Actor

__all__ = ["SESSION_LIFETIME", "AccountOut", "SessionOut", "SessionRequest", "router"]

router = APIRouter(prefix="/api/v1", tags=["accounts"])

SESSION_LIFETIME = timedelta(minutes=15)
SESSION_MAX_BODY = 4096


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_BYTES)
    totp: str | None = Field(
        default=None, max_length=8, description="The current TOTP code, if the account has one"
    )


class SessionOut(BaseModel):
    token: str = Field(description="A bearer token for this account's roles; shown once")
    token_id: str
    account: str
    expires_at: datetime | None


class AccountOut(BaseModel):
    name: str
    roles: list[str]
    kind: str  # person or service
    totp: bool
    disabled: bool
    locked_until: datetime | None


@router.post("/session", status_code=201, response_model=SessionOut)
def sign_in(body: SessionRequest, request: Request) -> SessionOut:
    """Sign in: 201 with a token good for 15 minutes and the account's roles; 401 with one and the
    same answer for an unknown account, a wrong password or code, a locked or disabled account."""
    pki = get_pki(request)

    def authenticate(anonymous: Actor) -> SessionOut:
        account = pki.accounts.sign_in(body.account, body.password, body.totp, anonymous)
        actor = dataclasses.replace(anonymous, identity=f"admin:{account.name}", credential="password")
        record, text = pki.tokens.create(
            "session", actor, scope=Scope.ADMIN, ttl=SESSION_LIFETIME, account=account.name
        )
        return SessionOut(
            token=text, token_id=record.token_id, account=account.name, expires_at=record.expires_at
        )

    return guard_failures(request, request_actor(request), authenticate)


@router.get("/accounts", response_model=list[AccountOut])
def list_accounts(request: Request, _actor: AdminReader) -> list[AccountOut]:
    """Every account with its roles and state (never a password hash or TOTP secret)."""
    return [
        AccountOut(
            name=a.name,
            roles=sorted(str(g) for g in a.grants),
            kind="service" if a.is_service else "person",
            totp=a.totp_secret is not None,
            disabled=a.disabled_at is not None,
            locked_until=a.locked_until,
        )
        for a in get_pki(request).accounts.list()
    ]
