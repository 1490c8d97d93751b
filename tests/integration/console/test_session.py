"""Signing in and out of the console: the cookie's flags, idle and absolute timeouts, the same
answer for every failed sign-in, CSRF and origin checks, role refusals and where sign-in leads."""

from __future__ import annotations

from datetime import timedelta

import pytest

from otward.core.audit import AuditFilter, AuditRecord, EventType
from otward.services.audit import Actor
from tests.integration.console.conftest import PASSWORD, Console, csrf_of

pytestmark = pytest.mark.integration


def events(console: Console, kind: EventType) -> list[AuditRecord]:
    records, _total = console.pki.stores.audit.list_audit(AuditFilter(type=kind.value), limit=50, offset=0)
    return list(records)


def test_sign_in_sets_a_host_only_secure_strict_httponly_cookie(console: Console) -> None:
    browser = console.client()
    page = browser.get("/ui/sign-in")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    token = page.text.split('name="signin_token" value="')[1].split('"')[0]
    answer = browser.post(
        "/ui/sign-in", data={"signin_token": token, "account": "alice", "password": PASSWORD, "next": "/ui/"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/"
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "otward-session" in v)
    assert cookie.startswith("__Host-otward-session=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert not any(f.startswith("domain") for f in flags)
    home = browser.get("/ui/")
    assert home.status_code == 200
    assert "Signed in as alice" in home.text
    signed_in = events(console, EventType.SIGNIN_SUCCEEDED)
    assert any(r.event.component == "console" and r.event.subject == "account:alice" for r in signed_in)


@pytest.mark.parametrize(
    ("account", "password"),
    [("alice", "wrong password entirely"), ("nobody", PASSWORD), ("alice", "")],
    ids=["wrong-password", "unknown-account", "empty-password"],
)
def test_failed_sign_in_says_the_same_and_sets_no_session(
    console: Console, account: str, password: str
) -> None:
    browser = console.client()
    page = browser.get("/ui/sign-in")
    token = page.text.split('name="signin_token" value="')[1].split('"')[0]
    answer = browser.post(
        "/ui/sign-in", data={"signin_token": token, "account": account, "password": password}
    )
    assert answer.status_code == 401
    assert "sign-in failed (unknown account, wrong password or code" in answer.text
    assert "otward-session" not in answer.headers.get("set-cookie", "")
    assert browser.get("/ui/").status_code == 303


def test_sign_in_without_its_form_token_is_refused(console: Console) -> None:
    browser = console.client()
    answer = browser.post("/ui/sign-in", data={"account": "alice", "password": PASSWORD})
    assert answer.status_code == 400
    assert "sign-in form expired" in answer.text


def test_pages_send_a_visitor_without_session_to_sign_in(console: Console) -> None:
    browser = console.client()
    answer = browser.get("/ui/")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/sign-in?next=/ui/"
    htmx = browser.get("/ui/", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"].startswith("/ui/sign-in")
    browser.cookies.set("__Host-otward-session", "0" * 32 + "." + "A" * 43)
    assert browser.get("/ui/").status_code == 303


def test_the_session_ends_after_the_idle_timeout(console: Console) -> None:
    browser = console.sign_in("alice")
    console.clock.advance(timedelta(minutes=14))
    assert browser.get("/ui/").status_code == 200  # a request keeps it alive
    console.clock.advance(timedelta(minutes=14))
    assert browser.get("/ui/").status_code == 200
    console.clock.advance(timedelta(minutes=15))
    assert browser.get("/ui/").status_code == 303


def test_the_session_ends_at_the_absolute_timeout_however_busy(console: Console) -> None:
    browser = console.sign_in("alice")
    for _ in range(8 * 6 - 1):
        console.clock.advance(timedelta(minutes=10))
        assert browser.get("/ui/").status_code == 200
    console.clock.advance(timedelta(minutes=10))
    assert browser.get("/ui/").status_code == 303


def test_sign_out_ends_the_session_on_the_server(console: Console) -> None:
    browser = console.sign_in("alice")
    cookie = browser.cookies.get("__Host-otward-session")
    page = browser.get("/ui/")
    answer = browser.post("/ui/sign-out", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/sign-in?signed-out=1"
    replay = console.client()
    replay.cookies.set("__Host-otward-session", cookie)
    assert replay.get("/ui/").status_code == 303
    ended = events(console, EventType.SESSION_ENDED)
    assert [r.event.subject for r in ended] == ["account:alice"]


def test_a_change_without_the_csrf_token_is_refused_and_recorded(console: Console) -> None:
    browser = console.sign_in("alice")
    assert browser.post("/ui/sign-out", data={}).status_code == 403
    assert browser.post("/ui/sign-out", data={"csrf": "x" * 43}).status_code == 403
    assert browser.get("/ui/").status_code == 200  # still signed in
    denied = events(console, EventType.AUTHZ_DENIED)
    assert len(denied) == 2
    assert all("CSRF" in (r.event.reason or "") for r in denied)


def test_a_change_started_by_another_site_is_refused(console: Console) -> None:
    browser = console.sign_in("alice")
    token = csrf_of(browser.get("/ui/").text)
    other = browser.post("/ui/sign-out", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    cross = browser.post("/ui/sign-out", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    opaque = browser.post("/ui/sign-out", data={"csrf": token}, headers={"Origin": "null"})  # sandboxed frame
    assert opaque.status_code == 403
    same = browser.post("/ui/sign-out", data={"csrf": token}, headers={"Origin": "https://testserver"})
    assert same.status_code == 303


def test_disabling_an_account_ends_its_open_sessions(console: Console) -> None:
    browser = console.sign_in("audrey")
    assert browser.get("/ui/").status_code == 200
    console.pki.accounts.disable("audrey", Actor(component="test", identity="local:test"))
    assert browser.get("/ui/").status_code == 303


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("/ui/certificates?status=valid", "/ui/certificates?status=valid"),
        ("https://evil.example/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        ("/api/v1/cas", "/ui/"),
        ("", "/ui/"),
    ],
)
def test_sign_in_leads_only_to_a_console_page(console: Console, offered: str, expected: str) -> None:
    browser = console.client()
    page = browser.get("/ui/sign-in")
    token = page.text.split('name="signin_token" value="')[1].split('"')[0]
    answer = browser.post(
        "/ui/sign-in", data={"signin_token": token, "account": "alice", "password": PASSWORD, "next": offered}
    )
    assert answer.headers["location"] == expected


def test_navigation_shows_only_what_the_roles_allow(console: Console) -> None:
    everything = console.sign_in("alice").get("/ui/").text
    for label in ("Authorities", "Certificates", "Devices", "Access", "Audit"):
        assert f">{label}</a>" in everything
    officer = console.sign_in("olga").get("/ui/").text
    assert ">Devices</a>" in officer
    assert ">Certificates</a>" not in officer
    assert ">Audit</a>" not in officer
    assert ">Approvals</a>" not in officer  # neither the PKI nor the accounts: nothing to approve


def test_static_files_are_served_and_a_form_too_large_is_refused(console: Console) -> None:
    browser = console.client()
    assert browser.get("/ui/static/htmx.min.js").status_code == 200
    assert (
        browser.post(
            "/ui/sign-in",
            content=b"a=" + b"x" * 70_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        ).status_code
        == 413
    )


def test_signing_in_again_ends_the_previous_session(console: Console) -> None:
    browser = console.sign_in("alice")
    first = browser.cookies.get("__Host-otward-session")
    console.sign_in("alice", client=browser)
    assert browser.cookies.get("__Host-otward-session") != first
    stale = console.client()
    stale.cookies.set("__Host-otward-session", first)
    assert stale.get("/ui/").status_code == 303
    assert browser.get("/ui/").status_code == 200


@pytest.mark.parametrize(
    ("path", "current"),
    [
        ("/ui/", "Dashboard"),
        ("/ui/owners", "Devices"),
        ("/ui/enrollment-tokens", "Devices"),
        ("/ui/devices", "Devices"),
    ],
)
def test_the_menu_marks_the_current_page(console: Console, path: str, current: str) -> None:
    page = console.sign_in("alice").get(path)
    assert page.status_code == 200
    menu = page.text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    marked = [line for line in menu.splitlines() if 'aria-current="page"' in line]
    assert len(marked) == 1
    assert f">{current}</a>" in marked[0]


def test_a_new_password_or_totp_secret_ends_the_open_sessions(console: Console) -> None:
    browser = console.sign_in("audrey")
    other = console.sign_in("alice")
    console.pki.accounts.set_password(
        "audrey", "another long password", Actor(component="test", identity="local:test")
    )
    assert browser.get("/ui/").status_code == 303
    assert other.get("/ui/").status_code == 200  # only audrey's
    again = console.sign_in("audrey", "another long password")
    assert again.get("/ui/").status_code == 200
    console.pki.accounts.new_totp("audrey", Actor(component="test", identity="local:test"))
    assert again.get("/ui/").status_code == 303


@pytest.mark.parametrize("path", ["/ui/certificates", "/ui/audit", "/ui/approvals", "/ui/devices"])
@pytest.mark.parametrize("page", ["²", "9" * 5000])
def test_a_page_number_that_is_no_number_is_a_400(console: Console, path: str, page: str) -> None:
    answer = console.sign_in("alice").get(path, params={"page": page})
    assert answer.status_code == 400
