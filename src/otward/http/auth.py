"""Bearer-token authentication and authorization for the API, and who-asked-from-where for the trail."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from otward.core.authz import Action, Area, Permission, is_granted
from otward.core.records import TokenRecord
from otward.errors import AuthenticationError, OtwardError
from otward.http.limits import guard_failures
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = [
    "AccessReader",
    "AccessWriter",
    "AdminReader",
    "AdminWriter",
    "AuditReader",
    "Caller",
    "EnrollmentReader",
    "EnrollmentWriter",
    "MetricsReader",
    "PkiReader",
    "PkiWriter",
    "get_pki",
    "permitted",
    "permitted_any",
    "request_actor",
    "resource_owner",
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


def resource_owner(request: Request) -> str | None:
    """The owner of what a request touches, for owner-limited roles (``enrollment-officer:line-2``):
    the device's owner for a route with ``{device_id}``, else an ``owner`` query parameter, else
    None (no owner, or every owner's: an owner-limited grant never covers it)."""
    device_id = request.path_params.get("device_id")
    if isinstance(device_id, str):
        try:
            return get_pki(request).devices.get(device_id).owner
        except OtwardError:
            return None  # unknown device: no owner, so an owner-limited grant is refused
    owner = request.query_params.get("owner")
    return owner or None


def permitted(area: Area, action: Action) -> Callable[..., Actor]:
    """A dependency admitting a token whose scope and whose account's roles both cover
    ``area``/``action`` (for the resource's owner, :func:`resource_owner`): 401 without a good
    token, 403 with one that does not cover it. It returns the account as the audit actor
    (``admin:alice``, with the token as its credential)."""
    needed = Permission(area, action)

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        pki = get_pki(request)
        token = _authenticated(request, credentials)
        actor = pki.tokens.actor(token, request_actor(request))
        pki.tokens.authorize(token, needed, actor, owner=resource_owner(request))
        return actor

    dependency.__name__ = f"require_{area.value}_{action.value}"
    return dependency


@dataclass(frozen=True)
class Caller:
    """An authenticated API token and the audit actor it stands for."""

    token: TokenRecord
    actor: Actor

    def holds(self, permission: Permission) -> bool:
        """True when the token's scope and its account's roles both cover ``permission``."""
        return is_granted(self.token.grants or frozenset(), permission, scope=self.token.scope)


def permitted_any(areas: tuple[Area, ...], action: Action) -> Callable[..., Caller]:
    """A dependency admitting a token that covers ``action`` of at least one of ``areas`` (401
    without a good token, 403 otherwise, as :func:`permitted`); the route then decides each
    resource on its own permission with :meth:`Caller.holds`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        pki = get_pki(request)
        token = _authenticated(request, credentials)
        caller = Caller(token, pki.tokens.actor(token, request_actor(request)))
        wanted = [Permission(area, action) for area in areas]
        if not any(caller.holds(p) for p in wanted):
            pki.tokens.authorize(token, wanted[0], caller.actor)  # refuses, audited as authz.denied
        return caller

    dependency.__name__ = f"require_any_{action.value}"
    return dependency


# What each protected route needs, by area and action (otward.core.authz decides who has it).
PkiReader = Annotated[Actor, Depends(permitted(Area.PKI, Action.READ))]
PkiWriter = Annotated[Actor, Depends(permitted(Area.PKI, Action.WRITE))]
EnrollmentReader = Annotated[Actor, Depends(permitted(Area.ENROLLMENT, Action.READ))]
EnrollmentWriter = Annotated[Actor, Depends(permitted(Area.ENROLLMENT, Action.WRITE))]
AccessReader = Annotated[Actor, Depends(permitted(Area.ACCESS, Action.READ))]
AccessWriter = Annotated[Actor, Depends(permitted(Area.ACCESS, Action.WRITE))]
AuditReader = Annotated[Actor, Depends(permitted(Area.AUDIT, Action.READ))]
AdminReader = Annotated[Actor, Depends(permitted(Area.ADMIN, Action.READ))]
AdminWriter = Annotated[Actor, Depends(permitted(Area.ADMIN, Action.WRITE))]
MetricsReader = Annotated[Actor, Depends(permitted(Area.METRICS, Action.READ))]
