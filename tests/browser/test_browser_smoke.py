"""The browser machinery on what the server has today (Swagger UI at /docs), and proof that its
checks can fail: an untrusted certificate is refused, a bad page fails the accessibility check."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, Error, Page, expect

from tests.browser.conftest import OPERATOR_ROLES, ConsoleServer, assert_accessible, save_screenshot

pytestmark = pytest.mark.browser


def test_swagger_ui_renders_over_pinned_https(browser_page: Page, console_server: ConsoleServer) -> None:
    response = browser_page.goto("/docs")
    assert response is not None
    assert response.status == 200
    assert response.url == console_server.url("/docs")
    # Swagger UI builds the page from /openapi.json in script: wait for an operation to appear.
    expect(browser_page.locator(".swagger-ui .opblock").first).to_be_visible()
    assert browser_page.title() == "otward API"
    assert browser_page.evaluate("window.isSecureContext") is True
    # Secure cookies (what a console session uses) are kept: the origin counts as trusted https.
    browser_page.evaluate("document.cookie = 'probe=1; Secure; SameSite=Strict; Path=/'")
    assert "probe=1" in browser_page.evaluate("document.cookie")
    path = save_screenshot(browser_page, "smoke-swagger-ui")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_console_server_accounts_sign_in_with_their_passwords(shared_console_server: ConsoleServer) -> None:
    console_server = shared_console_server
    verify = console_server.server.ssl_context()
    with httpx.Client(base_url=console_server.https_url, verify=verify) as client:
        for account in (console_server.admin, console_server.auditor):
            signed_in = client.post(
                "/api/v1/session", json={"account": account.name, "password": account.password}
            )
            assert signed_in.status_code == 201, signed_in.text
            assert signed_in.json()["account"] == account.name
        wrong = client.post(
            "/api/v1/session", json={"account": console_server.admin.name, "password": "not-the-password"}
        )
        assert wrong.status_code == 401
        token = signed_in.json()["token"]  # bob's: an auditor reads the accounts
        listed = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    roles = {row["name"]: row["roles"] for row in listed.json()}
    assert roles["alice"] == sorted(OPERATOR_ROLES)
    assert roles["bob"] == ["auditor"]


def test_chromium_refuses_a_server_it_was_not_told_to_trust(
    chromium: Browser, shared_console_server: ConsoleServer, shared_browser_page: Page
) -> None:
    assert shared_browser_page.goto("/healthz") is not None  # the browser that was told does trust it
    page = chromium.new_page()
    try:
        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto(shared_console_server.url("/docs"))
    finally:
        page.close()


def test_names_other_than_loopback_do_not_resolve(chromium: Browser) -> None:
    page = chromium.new_page()
    try:
        with pytest.raises(Error, match="ERR_NAME_NOT_RESOLVED"):
            page.goto("https://cdn.jsdelivr.net/npm/axe-core@4/axe.min.js")
    finally:
        page.close()


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        pytest.param('<img src="x.png">', "image-alt", id="image-without-alt"),
        pytest.param('<form><input type="text" name="user"></form>', "label", id="input-without-label"),
    ],
)
def test_assert_accessible_fails_on_a_bad_page(chromium: Browser, body: str, rule: str) -> None:
    page = chromium.new_page()
    try:
        page.set_content(f'<!doctype html><html lang="en"><title>bad</title><body>{body}</body></html>')
        with pytest.raises(pytest.fail.Exception) as failure:
            assert_accessible(page, "deliberately bad page")
        assert f"- {rule} (critical)" in str(failure.value)
        assert str(failure.value).startswith("deliberately bad page: 1 serious or critical")
    finally:
        page.close()


def test_assert_accessible_passes_a_good_page_under_a_strict_csp(chromium: Browser) -> None:
    page = chromium.new_page()
    try:
        page.set_content(
            '<!doctype html><html lang="en"><head>'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'self'\">"
            "<title>Sign in</title></head><body><main><h1>Sign in</h1><form>"
            '<label for="user">Account</label><input id="user" name="user" autocomplete="username">'
            '<label for="password">Password</label><input id="password" type="password">'
            "<button type=submit>Sign in</button></form></main></body></html>"
        )
        results = assert_accessible(page, "sign-in form")
        passed = {rule["id"] for rule in results["passes"]}
        assert {"label", "html-has-lang", "document-title"} <= passed  # axe really ran its rules
    finally:
        page.close()


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden"])
def test_save_screenshot_refuses_names_that_are_not_plain_file_names(chromium: Browser, name: str) -> None:
    page = chromium.new_page()
    try:
        with pytest.raises(ValueError, match="screenshot name"):
            save_screenshot(page, name)
    finally:
        page.close()
