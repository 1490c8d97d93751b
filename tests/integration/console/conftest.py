"""A console on a fresh installation (SQLite, fixed clock) with three accounts, and a way to sign in.

``alice`` holds every role but metrics, ``audrey`` is an auditor (reads everything, changes nothing),
``olga`` an enrollment officer for owner ``line-2`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.authz import Grant, Role
from otward.core.keys import KeyType
from otward.http.app import create_app
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock

PASSWORD = "correct horse battery staple"
SETUP = Actor(component="test", identity="local:test")
ACCOUNTS = {
    "alice": frozenset(
        {
            Grant(Role.ADMIN),
            Grant(Role.PKI_OFFICER),
            Grant(Role.ENROLLMENT_OFFICER),
            Grant(Role.ACCESS_MANAGER),
            Grant(Role.AUDITOR),
        }
    ),
    "audrey": frozenset({Grant(Role.AUDITOR)}),
    "olga": frozenset({Grant(Role.ENROLLMENT_OFFICER, "line-2")}),
}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_SIGNIN_TOKEN = re.compile(r'name="signin_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a console page embeds in its forms."""
    match = _CSRF.search(html)
    assert match, "the page carries no CSRF token"
    return match.group(1)


@dataclass
class Console:
    pki: Pki
    clock: Clock

    def client(self) -> TestClient:
        """A browser-like client: https (the session cookie is Secure), no automatic redirects."""
        return TestClient(create_app(self.pki), base_url="https://testserver", follow_redirects=False)

    def sign_in(self, name: str, password: str = PASSWORD, client: TestClient | None = None) -> TestClient:
        browser = client or self.client()
        page = browser.get("/ui/sign-in")
        token = _SIGNIN_TOKEN.search(page.text)
        assert token
        answer = browser.post(
            "/ui/sign-in",
            data={"signin_token": token.group(1), "account": name, "password": password, "next": "/ui/"},
        )
        assert answer.status_code == 303, answer.text
        return browser


@pytest.fixture
def console(data_dir: Path) -> Iterator[Console]:
    initialize(data_dir, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    clock = Clock()
    pki = Pki.open(load_settings(data_dir), clock=clock)
    for name, grants in ACCOUNTS.items():
        pki.accounts.add(name, grants, SETUP, password=PASSWORD)
    yield Console(pki, clock)
    pki.close()
