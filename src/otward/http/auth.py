"""Bearer-token authentication and authorization for the API, and who-asked-from-where for the trail."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from otward.core.authz import Action, Area, Permission
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError
from otward.http.limits import guard_failures
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = [
    "AccessReader",
    "AccessWriter",
    "AuditReader",
    "EnrollmentReader",
    "EnrollmentWriter",
    "MetricsReader",
    "PkiReader",
    "PkiWriter",
    "get_pki",
    "permitted",
    "request_actor",
]

_bearer = HTTPBearer(
    auto_error=False, description="An API token (DATA/admin.token, or otward api-token create)"
)
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


def _authenticated(request: Request, credentials: HTTPAuthorizationCredentials | None) -> TokenRecord:
    """The API token the request carries; failures are audited as ``auth.failed`` and limited per
    source (429 after too many, :mod:`otward.http.limits`)."""
    pki = get_pki(request)

    def authenticate(anonymous: Actor) -> TokenRecord:
        if credentials is None or credentials.scheme.lower() != "bearer":
            pki.tokens.authenticate("", anonymous)  # records the failure, raises AuthenticationError
            raise AuthenticationError(
                "an API token is required (Authorization: Bearer <token>)", rule="token"
            )
        return pki.tokens.authenticate(credentials.credentials, anonymous)

    return guard_failures(request, request_actor(request), authenticate)


def permitted(area: Area, action: Action) -> Callable[..., Actor]:
    """A dependency admitting a token whose scope covers ``area``/``action`` (401 without a good
    token, 403 with one that does not cover it); it returns the token as the audit actor."""
    needed = Permission(area, action)

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        token = _authenticated(request, credentials)
        actor = request_actor(request, f"token:{token.token_id}")
        get_pki(request).tokens.authorize(token, needed, actor)
        return actor

    dependency.__name__ = f"require_{area.value}_{action.value}"
    return dependency


# What each protected route needs, by area and action (otward.core.authz decides who has it).
PkiReader = Annotated[Actor, Depends(permitted(Area.PKI, Action.READ))]
PkiWriter = Annotated[Actor, Depends(permitted(Area.PKI, Action.WRITE))]
EnrollmentReader = Annotated[Actor, Depends(permitted(Area.ENROLLMENT, Action.READ))]
EnrollmentWriter = Annotated[Actor, Depends(permitted(Area.ENROLLMENT, Action.WRITE))]
AccessReader = Annotated[Actor, Depends(permitted(Area.ACCESS, Action.READ))]
AccessWriter = Annotated[Actor, Depends(permitted(Area.ACCESS, Action.WRITE))]
AuditReader = Annotated[Actor, Depends(permitted(Area.AUDIT, Action.READ))]
MetricsReader = Annotated[Actor, Depends(permitted(Area.METRICS, Action.READ))]
