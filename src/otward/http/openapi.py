"""The API's OpenAPI document, made to say what the service really answers.

FastAPI documents a 422 "validation error" on every route with parameters and nothing else; otward
answers a malformed request 400, and every refusal as an RFC 9457 problem document
(:mod:`otward.web.problems`). This module rewrites the generated document once: each operation
lists the refusals it can give, as ``application/problem+json`` with the ``Problem`` schema (EST
paths also as one line of ``text/plain``, their default), and the EST answers name their media
types. Which statuses apply is derived from what the route takes, the same way for every route:

* 400 where a route takes parameters or a body (the request does not parse or fails its grammar);
* 401, 403 and 429 where a credential is checked (an API token, an enrollment token or a device
  certificate): missing or bad, not covering the request, too many failures from the source;
  429 also where an unauthenticated request costs a write (device challenges);
* 404 where the path names something (a CA, a certificate, a device, an asset ...), and on the
  access model's routes (there is none until one is imported);
* 409 and 422 on changes (a conflict with the stored state, a policy that refuses the request);
* 413 where a route takes a body (:mod:`otward.http.bodylimit` refuses it before it is read).

The conformance test (tests/integration/test_openapi_conformance.py) runs schemathesis against
the running service to hold the document to this.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from otward.web.problems import EST_PREFIX, PROBLEM_JSON

__all__ = ["PROBLEM_SCHEMA", "install_openapi", "problem_statuses"]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document: why the request was refused.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:otward:problem:<kind>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what was wrong, for a person"},
        "rule": {"type": "string", "description": "the rule that refused the request"},
        "errors": {
            "type": "array",
            "description": "each field that failed validation (rule schema)",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    400: "The request is malformed: a parameter or the body does not parse or fails its grammar.",
    401: "No credential, or one that is unknown, revoked or expired.",
    403: "The credential does not cover this request.",
    404: "What the path names does not exist.",
    409: "The request conflicts with the stored state.",
    413: "The body is larger than this route takes.",
    422: "A policy refuses the request.",
    429: "Too many failed attempts (or challenges) from this source; see Retry-After.",
}
_CHANGES = {"post", "put", "patch", "delete"}
# Unauthenticated routes that still answer 401/403/429: EST authenticates by enrollment token or
# device certificate, the device challenge is limited per source, the attestation answer and the
# sign-in's password are checked.
_EST_AUTHENTICATED = ("/simpleenroll", "/simplereenroll", "/serverkeygen")
_LIMITED = ("/challenge",)
_ANSWERS = ("/attest", "/api/v1/session")
_MODEL = "/api/v1/access/"
_EST_MEDIA = {
    "/cacerts": "application/pkcs7-mime",
    "/simpleenroll": "application/pkcs7-mime",
    "/simplereenroll": "application/pkcs7-mime",
    "/serverkeygen": "multipart/mixed",
    "/csrattrs": "application/csrattrs",
}
_TEXT = {"schema": {"type": "string"}}


def problem_statuses(method: str, path: str, operation: dict[str, Any]) -> list[int]:
    """The refusals an operation can answer (see the module docstring for the rules)."""
    method = method.lower()
    est = path.startswith(EST_PREFIX)
    body = "requestBody" in operation or (est and method == "post")
    parameters = [p for p in operation.get("parameters", ()) if p.get("in") in ("path", "query")]
    statuses = set()
    if parameters or body:
        statuses.add(400)
    if operation.get("security") or path.endswith(_ANSWERS) or (est and path.endswith(_EST_AUTHENTICATED)):
        statuses |= {401, 403, 429}
    if path.endswith(_LIMITED):
        statuses.add(429)
    names = any(p.get("in") == "path" for p in parameters)
    if names or path.startswith(_MODEL) or (est and path.endswith(_EST_AUTHENTICATED)):
        statuses.add(404)
    if method in _CHANGES:
        statuses |= {409, 422}
    if body:
        statuses.add(413)
    return sorted(statuses)


def _problem_response(status: int, *, est: bool) -> dict[str, Any]:
    content: dict[str, Any] = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    if est:
        content = {"text/plain": _TEXT, **content}
    response: dict[str, Any] = {"description": _DESCRIPTIONS[status], "content": content}
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    if status == 429:
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _rewrite(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for path, operations in document.get("paths", {}).items():
        est = path.startswith(EST_PREFIX)
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's validation error: otward answers those 400
            for status in problem_statuses(method, path, operation):
                responses.setdefault(str(status), _problem_response(status, est=est))
            if est:
                media = next(m for suffix, m in _EST_MEDIA.items() if path.endswith(suffix))
                responses["200"] = {"description": "Successful Response", "content": {media: _TEXT}}
                if method == "post":
                    operation["requestBody"] = {
                        "required": True,
                        "content": {"application/pkcs10": {"schema": {"type": "string"}}},
                    }
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten document at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to replace it
