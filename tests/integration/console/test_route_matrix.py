"""Every console route declares who may use it, and none answers a visitor without a session.

A new page that forgets :func:`otward.console.viewer.reading` or :func:`changing` fails here: the
declared dependency names the permission, a GET without a session must lead to sign-in and a POST
without one must change nothing."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute

from otward.console.app import create_console
from otward.http.app import create_api
from tests.integration.console.conftest import Console

pytestmark = pytest.mark.integration

PUBLIC = {("GET", "/sign-in"), ("POST", "/sign-in")}
_DECLARED = re.compile(r"^(console_(change_)?[a-z]+_(read|write)|signed_in|signed_in_form)$")


def _routes(console: Console) -> list[tuple[str, str, APIRoute]]:
    app = create_console(console.pki, limits=create_api(console.pki).state)
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods or ()):
                found.append((method, route.path, route))
    return found


def _declared(route: APIRoute) -> list[str]:
    return [d.call.__name__ for d in route.dependant.dependencies if d.call is not None]


def test_every_route_declares_its_permission(console: Console) -> None:
    undeclared = [
        f"{method} {path}"
        for method, path, route in _routes(console)
        if (method, path) not in PUBLIC and not any(_DECLARED.match(n) for n in _declared(route))
    ]
    assert undeclared == []


def test_a_post_route_checks_csrf(console: Console) -> None:
    for method, path, route in _routes(console):
        if method == "POST" and (method, path) not in PUBLIC:
            names = _declared(route)
            assert any(n.startswith("console_change_") or n == "signed_in_form" for n in names), path


def test_no_route_answers_without_a_session(console: Console) -> None:
    browser = console.client()
    for method, path, _route in _routes(console):
        if (method, path) in PUBLIC:
            continue
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        answer = browser.request(method, "/ui" + concrete, data={"csrf": "x"} if method == "POST" else None)
        assert answer.status_code == 303, f"{method} {path}: {answer.status_code}"
        assert answer.headers["location"].startswith("/ui/sign-in")


def test_an_api_token_opens_no_console_page(console: Console) -> None:
    """The console knows only its own sessions: the installation's admin API token signs nobody in."""
    token = (console.pki.settings.data_dir / "admin.token").read_text().strip()
    browser = console.client()
    browser.headers["Authorization"] = f"Bearer {token}"
    for method, path, _route in _routes(console):
        if (method, path) in PUBLIC:
            continue
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        answer = browser.request(method, "/ui" + concrete)
        assert answer.status_code == 303, f"{method} {path}: {answer.status_code}"
