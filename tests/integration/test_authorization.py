"""Token scopes on every route of the API, discovered from the app (security review, issue #11
item 10): a token does what its scope covers and gets 403 for the rest; a route added without a
scope check fails this test."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from otward.core.audit import EventType
from otward.core.authz import Scope
from otward.http.app import create_api, create_app
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

# Routes anyone may call: the EST endpoints (their own credentials), public PKI material, the
# device challenge and answer (the signature is the proof), the gatekeeper's own endpoints (an
# asset token), sign-in (the password is the proof), health and the API's documentation.
PUBLIC = re.compile(
    r"^/(\.well-known/est/|healthz$|docs|openapi\.json$|api/v1/transparency/|api/v1/cas/\{name\}/chain$"
    r"|api/v1/session$"
    r"|api/v1/devices/\{device_id\}/(challenge|attest)$|api/v1/edge/assets/\{asset\}/(bundle|trail)$)"
)
# The same areas otward.core.authz names, spelled out here independently of the code under test.
AREAS = (
    (re.compile(r"^/api/v1/(cas|certificates|signers)"), "pki"),
    (re.compile(r"^/api/v1/devices"), "enrollment"),
    (re.compile(r"^/api/v1/(access|edge)"), "access"),
    (re.compile(r"^/api/v1/audit"), "audit"),
    (re.compile(r"^/metrics$"), "metrics"),
    (re.compile(r"^/api/v1/accounts"), "admin"),
    # four-eyes approval: a token covering the PKI or the accounts area (no scope covers the one
    # without the other but admin, so for scopes it is the PKI's rule); requests then decide alone
    (re.compile(r"^/api/v1/approvals"), "pki"),
)
ALLOWED = {
    "admin": lambda area, write: True,
    "read": lambda area, write: not write,
    "metrics": lambda area, write: area == "metrics" and not write,
    "enroll-admin": lambda area, write: area == "enrollment",
    "access-admin": lambda area, write: area == "access",
}
_SOURCES = itertools.count(1)


def protected_routes(pki: Pki) -> list[tuple[str, str]]:
    """(method, path) of every route in the API's OpenAPI document that is not public."""
    routes = []
    for path, operations in create_api(pki).openapi()["paths"].items():
        for method in sorted(operations):
            if not PUBLIC.match(path) or (method == "get" and path == "/api/v1/edge/assets/{asset}/trail"):
                routes.append((method.upper(), path))  # (the GET of a pushed trail is the admin's)
    return routes


def area_of(path: str) -> str:
    return next(area for pattern, area in AREAS if pattern.match(path))


def call(pki: Pki, method: str, path: str, token: str | None):  # type: ignore[no-untyped-def]
    url = re.sub(r"\{(\w+)\}", lambda m: "1f" if m.group(1) == "serial" else "unit-1", path)
    # each call from its own address: failed authentication is limited per source
    client = TestClient(
        create_app(pki), base_url="https://testserver", client=(f"10.0.{next(_SOURCES)}.1", 1)
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, url, headers=headers, json={})


@pytest.fixture
def tokens(sqlite_pki: Pki) -> dict[str, str]:
    return {scope.value: sqlite_pki.tokens.create(f"t-{scope.value}", scope=scope)[1] for scope in Scope}


def test_every_protected_route_needs_a_token_and_the_scope_for_it(sqlite_pki, tokens):
    routes = protected_routes(sqlite_pki)
    assert len(routes) > 40
    for method, path in routes:
        assert call(sqlite_pki, method, path, None).status_code == 401, (method, path)
        area, write = area_of(path), method != "GET"
        for scope, token in tokens.items():
            response = call(sqlite_pki, method, path, token)
            if ALLOWED[scope](area, write):
                assert response.status_code not in (401, 403), (scope, method, path, response.text)
            else:
                assert response.status_code == 403, (scope, method, path, response.status_code)
                assert response.json()["rule"] == "token-scope"


@pytest.mark.parametrize(
    ("method", "allowed"), [("GET", {"admin", "read", "access-admin"}), ("POST", {"admin", "access-admin"})]
)
def test_the_gatekeeper_endpoints_take_only_tokens_of_the_access_area(sqlite_pki, tokens, method, allowed):
    """Besides the asset's own edge token, an API token reaches a gatekeeper endpoint only when its
    scope covers the access area: a metrics token cannot read bundles nor push a forged trail."""
    path = "/api/v1/edge/assets/{asset}/" + ("bundle" if method == "GET" else "trail")
    for scope, token in tokens.items():
        status = call(sqlite_pki, method, path, token).status_code
        assert (status != 403) if scope in allowed else (status == 403), (scope, method, status)


def test_a_refusal_is_audited_and_names_what_was_missing(sqlite_pki, tokens):
    response = call(sqlite_pki, "POST", "/api/v1/certificates", tokens["metrics"])
    assert response.status_code == 403
    assert "may not write pki" in response.json()["detail"]
    denied = [r.event for r in sqlite_pki.stores.audit.iter_audit() if r.event.type is EventType.AUTHZ_DENIED]
    assert denied[-1].details["permission"] == "pki:write"
    assert denied[-1].details["scope"] == "metrics"


def test_a_token_expires(sqlite_pki):
    record, token = sqlite_pki.tokens.create("short", scope=Scope.READ, ttl=timedelta(hours=1))
    assert record.expires_at is not None
    assert call(sqlite_pki, "GET", "/api/v1/cas", token).status_code == 200
    from otward.config import load_settings

    later = Pki.open(
        load_settings(sqlite_pki.settings.data_dir), clock=lambda: record.expires_at + timedelta(seconds=1)
    )
    try:
        response = call(later, "GET", "/api/v1/cas", token)
        assert response.status_code == 401
        assert "expired" in response.json()["detail"]
    finally:
        later.close()
