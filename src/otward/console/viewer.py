"""Who is looking at the console: the session cookie resumed into a :class:`Viewer`, the role
check of every page, and the CSRF and same-origin checks of every change.

A page declares what it needs with :func:`reading` (GET) or :func:`changing` (POST); both refuse
without a live session (the browser is sent to sign in) and with a role that does not cover the
permission (403, recorded as ``authz.denied``). :func:`changing` also requires the session's CSRF
token (form field ``csrf`` or header ``X-CSRF-Token``) and refuses a request another site started
(``Origin``, ``Sec-Fetch-Site``), before the form is acted on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from otward.console.forms import Form, read_form
from otward.core.accounts import AccountRecord
from otward.core.audit import EventType, Outcome
from otward.core.authz import Action, Area, Permission, is_granted, owner_limit
from otward.core.console_sessions import csrf_token, is_csrf_token
from otward.errors import AuthenticationError, PermissionDeniedError
from otward.http.auth import get_pki, request_actor
from otward.services.audit import Actor
from otward.services.console_sessions import ResumedSession

__all__ = [
    "SESSION_COOKIE",
    "SIGNIN_COOKIE",
    "CsrfError",
    "SignInRequiredError",
    "Submitted",
    "Viewer",
    "changing",
    "console_actor",
    "reading",
    "signed_in",
]

SESSION_COOKIE = "__Host-otward-session"  # __Host-: Secure, Path=/, no Domain (RFC 6265bis)
SIGNIN_COOKIE = "__Host-otward-signin"  # the sign-in form's own CSRF token, before any session


class SignInRequiredError(AuthenticationError):
    """No live session: the console answers with the sign-in page (or a redirect to it)."""


class CsrfError(PermissionDeniedError):
    """A change without this session's CSRF token, or started by another site."""


def console_actor(request: Request, identity: str = "anonymous") -> Actor:
    return dataclasses.replace(request_actor(request, identity), component="console")


@dataclass(frozen=True)
class Viewer:
    """A signed-in account on this request: its roles as stored now, its session and the actor
    that records what it does (``admin:alice``, credential ``console-session``)."""

    account: AccountRecord
    resumed: ResumedSession
    actor: Actor

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def csrf(self) -> str:
        return csrf_token(self.resumed.secret)

    def may(self, area: Area, action: Action = Action.READ, owner: str | None = None) -> bool:
        """True when the account's roles cover ``action`` on ``area`` for a resource of ``owner``."""
        return is_granted(self.account.grants, Permission(area, action), owner=owner)

    def may_some(self, area: Area, action: Action = Action.READ) -> bool:
        """True when the account covers ``action`` on ``area`` for at least one owner."""
        limit = owner_limit(self.account.grants, Permission(area, action))
        return limit is None or bool(limit)

    def owners(self, area: Area, action: Action = Action.READ) -> frozenset[str] | None:
        """The owners whose resources the account reaches (None: all of them)."""
        return owner_limit(self.account.grants, Permission(area, action))


@dataclass(frozen=True)
class Submitted:
    """A checked form: who sent it and its fields."""

    viewer: Viewer
    form: Form


def _resume(request: Request) -> Viewer:
    pki = get_pki(request)
    try:
        resumed = pki.console_sessions.resume(request.cookies.get(SESSION_COOKIE))
    except AuthenticationError as exc:
        raise SignInRequiredError(exc.message, rule="session") from None
    actor = dataclasses.replace(
        console_actor(request, f"admin:{resumed.account.name}"), credential="console-session"
    )
    return Viewer(resumed.account, resumed, actor)


def signed_in(request: Request) -> Viewer:
    """Any signed-in account (the dashboard, sign-out)."""
    return _resume(request)


def _require(request: Request, viewer: Viewer, permission: Permission) -> None:
    """Refuse (403, ``authz.denied``) an account whose roles cover ``permission`` for no owner."""
    if viewer.may_some(permission.area, permission.action):
        return
    get_pki(request).accounts.authorize(viewer.account, permission, viewer.actor)
    raise PermissionDeniedError("refused", rule="role")  # not reached: authorize raised


def reading(area: Area, action: Action = Action.READ) -> Callable[[Request], Viewer]:
    """A dependency for a page showing ``area``: a live session whose roles cover reading it."""
    permission = Permission(area, action)

    def dependency(request: Request) -> Viewer:
        viewer = _resume(request)
        _require(request, viewer, permission)
        return viewer

    dependency.__name__ = f"console_{area.value}_{action.value}"
    return dependency


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # old browsers; the CSRF token and SameSite=Strict still apply
    host = request.headers.get("host", "")
    return origin == f"{request.url.scheme}://{host}"


def check_csrf(request: Request, secret: str, form: Form, actor: Actor) -> None:
    """Refuse a change without the right token or from another site, and record the refusal."""
    offered = request.headers.get("x-csrf-token") or form.get("csrf")
    if _same_origin(request) and is_csrf_token(secret, offered):
        return
    pki = get_pki(request)
    reason = "missing or wrong CSRF token, or a request from another site"
    pki.audit.record(
        pki.audit.event(
            actor, EventType.AUTHZ_DENIED, request.url.path, outcome=Outcome.FAILURE, reason=reason
        )
    )
    raise CsrfError(
        "this form has expired or did not come from this console; reload the page and try again",
        rule="csrf",
    )


def changing(area: Area, action: Action = Action.WRITE) -> Callable[[Request], Awaitable[Submitted]]:
    """A dependency for a form changing ``area``: a live session, the CSRF token of that session,
    the same origin, and roles covering ``action`` on it (for some owner: the page checks the
    resource's own owner with :meth:`Viewer.may`)."""
    permission = Permission(area, action)

    async def dependency(request: Request) -> Submitted:
        viewer = await run_in_threadpool(_resume, request)
        form = await read_form(request)
        await run_in_threadpool(check_csrf, request, viewer.resumed.secret, form, viewer.actor)
        await run_in_threadpool(_require, request, viewer, permission)
        return Submitted(viewer, form)

    dependency.__name__ = f"console_change_{area.value}_{action.value}"
    return dependency


async def signed_in_form(request: Request) -> Submitted:
    """A form any signed-in account may send (sign-out), with the same CSRF and origin checks."""
    viewer = await run_in_threadpool(_resume, request)
    form = await read_form(request)
    await run_in_threadpool(check_csrf, request, viewer.resumed.secret, form, viewer.actor)
    return Submitted(viewer, form)
