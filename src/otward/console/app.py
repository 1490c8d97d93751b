"""The console application, mounted at ``/ui`` of the HTTPS service by :mod:`otward.http.app`.

Errors become pages (never problem+json): no session sends the browser to sign in (htmx gets
``HX-Redirect``), a refused role or a CSRF failure is a 403 page, a bad form value a 400 page
naming it; a 5xx page shows only a request id, the cause goes to the log.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException

from otward.console.pages import (
    access,
    approvals,
    audit,
    authorities,
    certificates,
    dashboard,
    devices,
    signin,
)
from otward.console.render import PREFIX, SECURITY_HEADERS, render
from otward.console.viewer import SignInRequiredError
from otward.errors import OtwardError
from otward.http.auth import request_id
from otward.services.pki import Pki
from otward.web.problems import status_for

__all__ = ["create_console"]

log = logging.getLogger("otward.console")

_TITLES = {
    400: "The request was not accepted",
    401: "Sign-in failed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Refused by policy",
    429: "Too many attempts",
}


def _signin_redirect(request: Request) -> Response:
    target = f"{PREFIX}/sign-in?next={quote(request.url.path, safe='/')}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={**SECURITY_HEADERS, "hx-redirect": target})
    return RedirectResponse(target, status_code=303, headers=dict(SECURITY_HEADERS))


def _error_page(request: Request, status: int, message: str) -> Response:
    return render(
        request,
        "error.html",
        None,
        status_code=status,
        title=_TITLES.get(status, "Something went wrong"),
        message=message,
    )


def create_console(pki: Pki, *, limits: State) -> FastAPI:
    """The console for ``pki``; ``limits`` is the API's state holding the per-source failure
    limiter, shared so that the console's sign-in counts against the same budget."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pki = pki
    app.state.failures = limits.failures
    app.state.challenges = limits.challenges
    app.mount("/static", StaticFiles(packages=[("otward.console", "static")]), name="console-static")
    app.include_router(signin.router)
    app.include_router(dashboard.router)
    app.include_router(devices.router)
    app.include_router(audit.router)
    app.include_router(approvals.router)
    app.include_router(access.router)
    app.include_router(authorities.router)
    app.include_router(certificates.router)

    @app.exception_handler(SignInRequiredError)
    async def sign_in_required(request: Request, _exc: SignInRequiredError) -> Response:
        return _signin_redirect(request)

    @app.exception_handler(OtwardError)
    async def refused(request: Request, exc: OtwardError) -> Response:
        status, _kind = status_for(exc)
        if status >= 500:
            log.error("console request %s failed: %s", request_id(request), exc, exc_info=exc)
            return _error_page(
                request, status, f"otward could not complete this (request id {request_id(request)})."
            )
        return _error_page(request, status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return _error_page(request, 400, f"{where or 'a value'}: {first.get('msg', 'not valid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = "there is no such page" if exc.status_code == 404 else str(exc.detail)
        return _error_page(request, exc.status_code, message)

    return app
