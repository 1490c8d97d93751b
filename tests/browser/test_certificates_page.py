"""The Certificates page in Chromium: filter by subject (htmx swaps the results), open the details,
revoke through the confirmation page, see it in the revoked filter; no serious axe violation."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible, save_screenshot
from tests.conftest import build_csr, make_key

pytestmark = pytest.mark.browser


def _issue(console: ConsoleServer, cn: str) -> str:
    token = (console.data_dir / "admin.token").read_text().strip()
    with httpx.Client(base_url=console.https_url, verify=console.server.ssl_context()) as client:
        answer = client.post(
            "/api/v1/certificates",
            json={"csr": build_csr(make_key(), cn=cn).decode(), "profile": "tls-client"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert answer.status_code == 201, answer.text
    serial: str = answer.json()["serial"]
    return serial


def test_filter_open_and_revoke_a_certificate(browser_page: Page, console_server: ConsoleServer) -> None:
    serial = _issue(console_server, "op-berta")
    _issue(console_server, "op-carl")
    page = browser_page
    page.goto("/ui/sign-in")
    page.get_by_label("Account", exact=True).fill(console_server.admin.name)
    page.get_by_label("Password", exact=True).fill(console_server.admin.password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Certificates", exact=True).click()
    expect(page.get_by_role("heading", name="Certificates", level=1)).to_be_visible()
    assert_accessible(page, "certificate list")
    save_screenshot(page, "certificates-list")

    page.get_by_label("Subject").fill("op-berta")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#results")).to_contain_text("Showing 1\u20131 of 1")
    assert "subject=op-berta" in page.url  # hx-push-url: the filtered list has its own address
    page.get_by_role("link", name="CN=op-berta").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Certificate CN=op-berta")
    expect(page.locator("#certificate")).to_contain_text("TLS client authentication")
    assert_accessible(page, "certificate details")
    save_screenshot(page, "certificate-details")

    page.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke certificate {serial}")
    assert_accessible(page, "revocation confirmation")
    save_screenshot(page, "certificate-revoke")
    page.get_by_label("Reason").select_option("keyCompromise")
    page.get_by_role("button", name="Revoke certificate").click()
    expect(page.locator("#certificate .success")).to_have_text(
        f"Certificate {serial} revoked (reason keyCompromise)."
        " The CRL was republished and OCSP answers revoked."
    )
    expect(page.locator("#certificate")).to_contain_text("Revoked")

    page.goto("/ui/certificates?status=revoked")
    expect(page.locator("#results")).to_contain_text(serial)
    expect(page.locator("#results")).not_to_contain_text("op-carl")
