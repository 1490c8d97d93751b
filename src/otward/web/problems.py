"""Errors to HTTP: one table from error class to status, answered as RFC 9457 problem+json.

EST answers (under ``/.well-known/est/``) are one line of ``text/plain`` instead, the detail and
the rule, unless the client asks for ``application/problem+json`` (the otward agent does): EST
clients built into devices (Cisco libest) print the body of an answer they do not handle in their
log, where a JSON document helps nobody. A 5xx answer carries only a request id; the cause goes to
the log.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from otward.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OtwardError,
    PermissionDeniedError,
    PolicyViolationError,
    RateLimitedError,
)

__all__ = [
    "EST_PREFIX",
    "error_response",
    "est_error_response",
    "install_problem_handlers",
    "problem_response",
    "status_for",
]

log = logging.getLogger("otward.http")

_STATUS: tuple[tuple[type[OtwardError], int, str], ...] = (
    (InvalidRequestError, 400, "invalid-request"),
    (RateLimitedError, 429, "too-many-requests"),
    (PolicyViolationError, 422, "policy-violation"),
    (AuthenticationError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "forbidden"),
    (NotFoundError, 404, "not-found"),
    (ConflictError, 409, "conflict"),
    (ConfigError, 500, "configuration"),
    (BackendError, 503, "backend-unavailable"),
)

PROBLEM_JSON = "application/problem+json"
EST_PREFIX = "/.well-known/est/"
API_CHALLENGE = 'Bearer realm="otward"'
# EST clients (curl -u, libest) answer a Basic challenge with the token as password; libest reads
# only the first scheme of the header, so Basic comes first.
EST_CHALLENGE = 'Basic realm="otward-est", Bearer realm="otward-est"'


def status_for(error: OtwardError) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(error, cls):
            return status, kind
    return 500, "internal"


def problem_response(
    status: int,
    kind: str,
    detail: str,
    *,
    rule: str | None = None,
    extra: dict[str, Any] | None = None,
    challenge: str = API_CHALLENGE,
) -> JSONResponse:
    """The RFC 9457 problem document of a refusal (``challenge`` goes with a 401)."""
    body: dict[str, Any] = {
        "type": f"urn:otward:problem:{kind}",
        "title": kind.replace("-", " "),
        "status": status,
        "detail": detail,
    }
    if rule:
        body["rule"] = rule
    if extra:
        body.update(extra)
    headers = {"WWW-Authenticate": challenge} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def est_error_response(status: int, detail: str, *, rule: str | None = None) -> PlainTextResponse:
    """An EST refusal as one line of text: the detail (control characters and line breaks made
    spaces) and the rule, e.g. ``device id 'plc-1' does not match the token's pattern 'sensor-*'
    (rule enroll-token-pattern)``; a 401 carries the EST challenge."""
    line = " ".join("".join(c if c.isprintable() else " " for c in detail).split())
    if rule:
        line += f" (rule {rule})"
    headers = {"WWW-Authenticate": EST_CHALLENGE} if status == 401 else None
    return PlainTextResponse(line + "\n", status_code=status, headers=headers)


def _wants_problem_json(scope: MutableMapping[str, Any]) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"accept" and PROBLEM_JSON.encode() in value.lower():
            return True
    return False


def error_response(
    scope: MutableMapping[str, Any],
    status: int,
    kind: str,
    detail: str,
    *,
    rule: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """The answer to a refused request: problem+json, or on an EST path a line of text (see
    :func:`est_error_response`) unless the client's ``Accept`` names problem+json."""
    if scope.get("path", "").startswith(EST_PREFIX) and not _wants_problem_json(scope):
        return est_error_response(status, detail, rule=rule)
    challenge = EST_CHALLENGE if scope.get("path", "").startswith(EST_PREFIX) else API_CHALLENGE
    return problem_response(status, kind, detail, rule=rule, extra=extra, challenge=challenge)


async def _otward_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OtwardError)  # noqa: S101 - registered for OtwardError only
    status, kind = status_for(exc)
    if isinstance(exc, RateLimitedError):
        response = error_response(request.scope, status, kind, exc.message, rule=exc.rule)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    if status >= 500:
        request_id = uuid.uuid4().hex
        log.error("request %s failed: %s", request_id, exc, exc_info=exc)
        detail = f"the server could not complete the request (id {request_id})"
        return error_response(request.scope, status, kind, detail)
    return error_response(request.scope, status, kind, exc.message, rule=exc.rule)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
    return error_response(
        request.scope, 400, "invalid-request", detail, rule="schema", extra={"errors": errors}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    response = error_response(request.scope, exc.status_code, "http-error", str(exc.detail))
    for name, value in (exc.headers or {}).items():
        response.headers.setdefault(name, value)
    if exc.status_code == 405:
        # RFC 9110: Allow lists every method of the resource; the router names only those of the
        # one route it matched, and FastAPI makes a route per method.
        response.headers["Allow"] = ", ".join(_allowed_methods(request))
    return response


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route takes fully at the request's path (asked of the router as it is, so
    included routers answer for their own routes)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away mid-body, or the body limit ended the request (http.bodylimit): nobody
    reads this answer and nothing failed on this side."""
    return Response(status_code=400)


async def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = uuid.uuid4().hex
    log.error("request %s failed unexpectedly", request_id, exc_info=exc)
    detail = f"the server could not complete the request (id {request_id})"
    return error_response(request.scope, 500, "internal", detail)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OtwardError, _otward_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
