"""The web console in Debian's Chromium, against a real ``otward serve``: an administrator's round
(issue 18 §3) and the refusals, every page checked with axe-core and captured as a screenshot.

The device in the middle enrolls the way a field integrator's device would: ``openssl req`` and
``curl`` against EST with the token copied out of the console.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible, save_screenshot
from tests.interop.helpers import est_csr, est_curl, est_enroll_args, otward_cli

pytestmark = pytest.mark.browser

OWNER = "line-1"
DEVICE = "plc-0001"
TABLET_PAGES = (
    ("dashboard", "/ui/"),
    ("certificates", "/ui/certificates"),
    ("devices", "/ui/devices"),
    ("access-matrix", "/ui/access"),
    ("audit", "/ui/audit"),
)
MODEL = Path(__file__).resolve().parents[2] / "examples" / "chemical-plant.yaml"


def look(page: Page, name: str) -> None:
    """Check the page with axe-core (no serious or critical violation) and capture it."""
    assert_accessible(page, name)
    save_screenshot(page, name)


def sign_in(page: Page, account: str, password: str) -> None:
    page.goto("/ui/sign-in")
    page.get_by_label("Account", exact=True).fill(account)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def explain(console: ConsoleServer, person: str, asset: str, function: str) -> dict[str, object]:
    """``otward access explain --json`` on the command line: the decision the gatekeeper would make."""
    out = otward_cli(console.data_dir, "access", "explain", person, asset, function, "--json").stdout
    decision: dict[str, object] = json.loads(out)
    return decision


def test_an_administrators_round(
    console_server: ConsoleServer, new_console_page: Callable[[], Page], tmp_path: Path
) -> None:
    console = console_server
    otward_cli(console.data_dir, "owner", "create", OWNER)
    page = new_console_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.https_url)

    page.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/$"))
    look(page, "sign-in")
    sign_in(page, console.admin.name, console.admin.password)
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    look(page, "dashboard")

    # an enrollment token, shown once, copied with the button
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Devices").click()
    page.get_by_role("link", name="Enrollment tokens").click()
    look(page, "enrollment-tokens")
    page.locator("#token-owner").select_option(OWNER)
    page.locator("#token-pattern").fill("plc-*")
    page.get_by_role("button", name="Create token").click()
    token = page.locator("#new-token").input_value()
    assert len(token) >= 20
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    look(page, "enrollment-token-created")

    # the device enrolls over EST with it: openssl req + curl, trusting only the installation's root
    _key, csr = est_csr(tmp_path, "plc", DEVICE)
    status, _ = est_curl(
        console.server,
        "/.well-known/est/simpleenroll",
        tmp_path / "plc.p7.b64",
        *est_enroll_args(csr, "-u", f"dev:{token}"),
    )
    assert status == 200, (tmp_path / "plc.p7.b64").read_text()

    # it appears in the registry; revoke it from its page
    page.goto("/ui/devices")
    page.get_by_label("Device id contains").fill("plc-")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#devices-table").get_by_role("link", name=DEVICE)).to_be_visible()
    look(page, "devices")
    page.locator("#devices-table").get_by_role("link", name=DEVICE).click()
    expect(page.locator("#device-status")).to_contain_text("active")
    look(page, "device")
    page.get_by_role("link", name="Revoke device…").click()
    look(page, "device-revoke-confirm")
    page.locator("#revoke-reason").select_option("keyCompromise")
    page.get_by_role("button", name=f"Revoke device {DEVICE}").click()
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#device-status")).to_contain_text("revoked")

    # the certificate list shows the device's certificate revoked
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Certificates", exact=True).click()
    page.get_by_label("Subject", exact=True).fill(DEVICE)
    page.locator("#filter-status").select_option("revoked")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#results")).to_contain_text("Showing 1\u20131 of 1")
    expect(page.locator("#results tbody tr").first).to_contain_text("Revoked")
    look(page, "certificates")
    page.locator("#results tbody tr").first.get_by_role("link", name=f"CN={DEVICE}").click()
    expect(page.locator("#certificate")).to_contain_text("keyCompromise")
    look(page, "certificate")

    # the authorities and the approvals pages
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Authorities").click()
    expect(page.locator("#authorities")).to_contain_text("issuing")
    look(page, "authorities")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    look(page, "approvals")

    # the audit page shows the revocation, by the console's account; the chain verifies
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.get_by_label("Type", exact=True).select_option("cert.revoked")
    page.get_by_role("button", name="Filter events").click()
    revoked_row = page.locator("#results tbody tr").filter(has_text="cert.revoked").first
    expect(revoked_row).to_contain_text("console")
    expect(revoked_row).to_contain_text(f"admin:{console.admin.name}")
    look(page, "audit")
    page.get_by_role("button", name="Verify chain").click()
    expect(page.locator("#verify-result")).to_contain_text(re.compile("intact", re.IGNORECASE))
    look(page, "audit-verified")

    # disable a person in the access model "at the touch of a button": the gatekeeper's decision
    # (otward access explain) changes from allow to deny
    otward_cli(console.data_dir, "access", "import", str(MODEL))
    assert explain(console, "anna", "reactor-1", "start")["decision"] == "allow"
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Access").click()
    expect(page.locator("#access-matrix-table")).to_be_visible()
    look(page, "access-matrix")
    page.get_by_role("link", name="People", exact=True).click()
    page.get_by_role("button", name="Disable Anna Keller").click()
    expect(page.locator("#access-notice")).to_contain_text("Anna Keller (anna) disabled")
    look(page, "access-people")
    denied = explain(console, "anna", "reactor-1", "start")
    assert denied["decision"] == "deny"
    assert "disabled" in str(denied["reason"])
    page.get_by_role("link", name="Who may use a machine now").click()
    page.get_by_label("Machine or area, and function").select_option("reactor-1/start")
    page.get_by_role("button", name="Show who may").click()
    expect(page.locator("#refused-now")).to_contain_text("Anna Keller")
    look(page, "access-now")
    page.get_by_role("link", name="Gatekeepers").click()
    look(page, "access-gatekeepers")

    # the dashboard after the round; then every page at a tablet's width: nothing wider than the
    # screen (wide tables scroll inside their own region)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    look(page, "dashboard-after-round")
    page.set_viewport_size({"width": 820, "height": 1180})
    for name, path in TABLET_PAGES:
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow} px wider than a tablet's screen"
        look(page, f"tablet-{name}")
    page.set_viewport_size({"width": 1280, "height": 900})

    # sign out: the session is gone, the pages lead to sign-in again
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?signed-out=1$"))
    page.goto("/ui/devices")
    expect(page).to_have_url(re.compile(r"/ui/sign-in\?next=/ui/devices$"))


def test_refusals(console_server: ConsoleServer, new_console_page: Callable[[], Page]) -> None:
    console = console_server
    page = new_console_page()

    sign_in(page, console.admin.name, "not the password at all")
    expect(page.get_by_role("alert")).to_contain_text("sign-in failed")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))
    look(page, "sign-in-failed")

    # a form whose CSRF token is gone: refused with a page that says so, and still signed in
    sign_in(page, console.admin.name, console.admin.password)
    expect(page).to_have_url(re.compile(r"/ui/$"))
    page.locator('form[action="/ui/sign-out"] input[name="csrf"]').evaluate("field => field.remove()")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_role("alert")).to_contain_text("did not come from this console")
    look(page, "refused-without-csrf")
    page.goto("/ui/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # an auditor sees the registry but may not change it
    auditor = new_console_page()
    sign_in(auditor, console.auditor.name, console.auditor.password)
    expect(auditor).to_have_url(re.compile(r"/ui/$"))
    answer = auditor.goto("/ui/enrollment-tokens")
    assert answer is not None
    expect(auditor.get_by_role("button", name="Create token")).to_have_count(0)
    # even sent by hand from the auditor's own page, with the auditor's own CSRF token
    status, text = auditor.evaluate(
        """async () => {
            const csrf = document.querySelector('input[name="csrf"]').value;
            const body = new URLSearchParams({csrf, owner: "line-1", ttl: "24h", uses: "1"});
            const answer = await fetch("/ui/enrollment-tokens", {method: "POST", body});
            return [answer.status, await answer.text()];
        }"""
    )
    assert status == 403
    assert "may not write enrollment" in text
    look(auditor, "enrollment-tokens-as-auditor")
