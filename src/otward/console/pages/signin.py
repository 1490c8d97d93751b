"""Sign-in and sign-out: a password (and the TOTP code where the account has one) for a session
cookie that is HttpOnly, Secure and SameSite=Strict; the same answer for every failure."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from otward.console.forms import read_form
from otward.console.render import PREFIX, SECURITY_HEADERS, render
from otward.console.viewer import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Submitted,
    console_actor,
    signed_in_form,
)
from otward.errors import AuthenticationError, RateLimitedError
from otward.http.auth import get_pki
from otward.http.limits import guard_failures
from otward.services.accounts import SIGNIN_FAILED
from otward.services.audit import Actor

__all__ = ["router", "safe_next"]

router = APIRouter()


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only (never another site: ``//evil``, ``/\\evil``)."""
    if not value or len(value) > 512 or (not value.startswith(PREFIX + "/") and value != PREFIX):
        return PREFIX + "/"
    if value.startswith(("//", "/\\")) or "\\" in value or any(ord(c) < 0x21 for c in value):
        return PREFIX + "/"
    return value


def _signin_page(request: Request, *, error: str | None, status_code: int, account: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "signin.html",
        None,
        status_code=status_code,
        error=error,
        signin_token=token,
        account=account,
        next=safe_next(request.query_params.get("next")),
    )
    response.set_cookie(
        SIGNIN_COOKIE, token, max_age=900, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


def _end_previous(request: Request, actor: Actor) -> None:
    """Signing in again in the same browser ends the session its cookie held, not just replaces it."""
    pki = get_pki(request)
    try:
        previous = pki.console_sessions.resume(request.cookies.get(SESSION_COOKIE))
    except AuthenticationError:
        return
    pki.console_sessions.end(previous, actor)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    return _signin_page(request, error=None, status_code=200)


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    """Check the sign-in form's own token (login CSRF), then the password and code; on success a
    new session (a new identifier every time) and a redirect to where the account was going."""
    form = await read_form(request)
    cookie = request.cookies.get(SIGNIN_COOKIE, "")
    offered = form.get("signin_token")
    if not cookie or not hmac.compare_digest(cookie.encode(), offered.encode()):
        return _signin_page(
            request,
            error="the sign-in form expired; please try again",
            status_code=400,
            account=form.get("account"),
        )
    pki = get_pki(request)
    name = form.get("account")[:64]

    def attempt(actor: Actor) -> str:
        account = pki.accounts.sign_in(name, form.get("password"), form.get("totp") or None, actor)
        _end_previous(request, actor)
        _session, value = pki.console_sessions.start(account, actor)
        return value

    def authenticate() -> str:
        return guard_failures(request, console_actor(request), attempt)

    try:
        value = await run_in_threadpool(authenticate)
    except RateLimitedError as exc:
        return _signin_page(request, error=exc.message, status_code=429, account=name)
    except AuthenticationError:
        return _signin_page(request, error=SIGNIN_FAILED, status_code=401, account=name)
    response = RedirectResponse(safe_next(form.get("next")), status_code=303, headers=dict(SECURITY_HEADERS))
    response.set_cookie(SESSION_COOKIE, value, path="/", secure=True, httponly=True, samesite="strict")
    response.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
def sign_out(request: Request, submitted: Annotated[Submitted, Depends(signed_in_form)]) -> Response:
    get_pki(request).console_sessions.end(submitted.viewer.resumed, submitted.viewer.actor)
    response = RedirectResponse(
        f"{PREFIX}/sign-in?signed-out=1", status_code=303, headers=dict(SECURITY_HEADERS)
    )
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
