"""Bearer-token authentication for admin endpoints, and who-asked-from-where for the audit trail."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from otward.core.records import TokenRecord
from otward.errors import AuthenticationError
from otward.http.limits import guard_failures
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = ["AdminActor", "get_pki", "request_actor", "require_admin"]

_bearer = HTTPBearer(auto_error=False, description="The admin token from DATA/admin.token")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def get_pki(request: Request) -> Pki:
    pki: Pki = request.app.state.pki
    return pki


def request_id(request: Request) -> str:
    """The client's X-Request-ID when it is sane, else a new one; the same for the whole request."""
    existing = getattr(request.state, "request_id", None)
    if isinstance(existing, str):
        return existing
    offered = request.headers.get("x-request-id", "")
    value = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
    request.state.request_id = value
    return value


def request_actor(request: Request, identity: str = "anonymous") -> Actor:
    return Actor(
        component="api",
        identity=identity,
        source=request.client.host if request.client else None,
        request_id=request_id(request),
    )


def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The authenticated admin as an audit actor; failures are audited as ``auth.failed`` and
    limited per source (429 after too many, :mod:`otward.http.limits`)."""
    pki = get_pki(request)

    def authenticate(anonymous: Actor) -> TokenRecord:
        if credentials is None or credentials.scheme.lower() != "bearer":
            pki.tokens.authenticate("", anonymous)  # records the failure, raises AuthenticationError
            raise AuthenticationError(
                "an admin token is required (Authorization: Bearer <token>)", rule="token"
            )
        return pki.tokens.authenticate(credentials.credentials, anonymous)

    token = guard_failures(request, request_actor(request), authenticate)
    return request_actor(request, f"token:{token.token_id}")


AdminActor = Annotated[Actor, Depends(require_admin)]
