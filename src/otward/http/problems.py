"""Errors to HTTP: one table from error class to status, answered as RFC 9457 problem+json.

A 5xx answer carries only a request id; the cause goes to the log.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

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

__all__ = ["install_problem_handlers", "problem_response", "status_for"]

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
API_CHALLENGE = 'Bearer realm="otward"'
# EST clients (curl -u, libest) answer a Basic challenge with the token as password.
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


async def _otward_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OtwardError)  # noqa: S101 - registered for OtwardError only
    status, kind = status_for(exc)
    challenge = EST_CHALLENGE if request.url.path.startswith("/.well-known/est") else API_CHALLENGE
    if isinstance(exc, RateLimitedError):
        response = problem_response(status, kind, exc.message, rule=exc.rule)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    if status >= 500:
        request_id = uuid.uuid4().hex
        log.error("request %s failed: %s", request_id, exc, exc_info=exc)
        return problem_response(status, kind, f"the server could not complete the request (id {request_id})")
    return problem_response(status, kind, exc.message, rule=exc.rule, challenge=challenge)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in errors)
    return problem_response(400, "invalid-request", detail, rule="schema", extra={"errors": errors})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    return problem_response(exc.status_code, "http-error", str(exc.detail))


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client went away mid-body, or the body limit ended the request (http.bodylimit): nobody
    reads this answer and nothing failed on this side."""
    return Response(status_code=400)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex
    log.error("request %s failed unexpectedly", request_id, exc_info=exc)
    return problem_response(500, "internal", f"the server could not complete the request (id {request_id})")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OtwardError, _otward_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
