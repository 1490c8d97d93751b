"""Bearer-token authentication for admin endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from otward.core.records import TokenRecord
from otward.errors import AuthenticationError
from otward.services.pki import Pki

__all__ = ["AdminToken", "get_pki", "require_admin"]

_bearer = HTTPBearer(auto_error=False, description="The admin token from DATA/admin.token")


def get_pki(request: Request) -> Pki:
    pki: Pki = request.app.state.pki
    return pki


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenRecord:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("an admin token is required (Authorization: Bearer <token>)", rule="token")
    return get_pki(request).tokens.authenticate(credentials.credentials)


AdminToken = Annotated[TokenRecord, Depends(require_admin)]
