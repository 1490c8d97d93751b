"""The dashboard: each card for the roles that may read its area, figures from the database."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from otward.core.audit import EventType
from otward.core.authz import Grant, Role
from otward.services.audit import Actor
from tests.integration.console.conftest import PASSWORD, SETUP, Console
from tests.integration.console.fill import add_certificates

pytestmark = pytest.mark.integration

PKI_CARDS = ("dashboard-certificates", "dashboard-expiry", "dashboard-crls", "dashboard-findings")
AUDIT_CARDS = ("dashboard-chain", "dashboard-events")
DEVICE = Actor(component="est", identity="device:plc-7")


def _ids(html: str) -> set[str]:
    return set(re.findall(r'<section[^>]* id="([^"]+)"', html))


def _row(html: str, table: str, header: str) -> list[str]:
    """The cells of the row of ``table`` whose first cell is ``header``, tags stripped."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = [
            re.sub(r"<[^>]+>|\s+", " ", c).strip()
            for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        if cells and cells[0] == header:
            return cells
    raise AssertionError(f"no row {header!r} in {table}")


def test_alice_sees_every_card(console: Console) -> None:
    page = console.sign_in("alice").get("/ui/")
    assert page.status_code == 200
    assert _ids(page.text) >= {*PKI_CARDS, *AUDIT_CARDS, "dashboard-enrollment"}
    assert page.text.count("<h1>") == 1
    assert 'role="img"' in page.text  # the expiry chart, with a title and a description
    assert '<title id="expiry-chart-title">' in page.text
    assert 'id="expiry-chart-desc"' in page.text


def test_counts_per_ca_and_status(console: Console) -> None:
    now = console.clock()
    day = timedelta(days=1)
    add_certificates(
        console.pki,
        [
            ("issuing", now + 200 * day, None),  # valid
            ("issuing", now + 100 * day, None),  # valid
            ("issuing", now + 10 * day, None),  # expiring
            ("issuing", now - day, None),  # expired
            ("issuing", now + 10 * day, now - day),  # revoked (also soon ending: revoked wins)
            ("root", now + 20 * day, None),  # expiring
        ],
    )
    page = console.sign_in("alice").get("/ui/").text
    issuing = _row(page, "certificate-counts", "issuing")
    # init issued the service's TLS certificate (and the audit signer's) from issuing: count them in
    before = console.pki.stores.statistics.certificate_status_counts(now, now + 30 * day)
    stored = {ca: (v, x, e, r) for ca, v, x, e, r in before}
    assert stored["issuing"][1:] == (1, 1, 1)
    assert issuing[1:] == [str(stored["issuing"][0]), "1", "1", "1", str(sum(stored["issuing"]))]
    assert _row(page, "certificate-counts", "root")[2] == "1"


def test_expiry_chart_counts_per_week(console: Console) -> None:
    now = console.clock()
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    ends = [today + timedelta(days=d, hours=12) for d in (0, 1, 8, 8, 8, 89, 95)]
    ends[0] = max(ends[0], now + timedelta(minutes=1))  # still valid now
    add_certificates(console.pki, [("issuing", end, None) for end in ends])
    add_certificates(console.pki, [("issuing", today + timedelta(days=3), now)], first_serial=1 << 90)
    page = console.sign_in("alice").get("/ui/").text
    table = page.split('id="expiry-table"', 1)[1].split("</table>", 1)[0]
    counts = [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', table)]
    assert len(counts) == 13
    # the service certificates init issued expire in about a year: outside the chart
    assert counts[0] == 2
    assert counts[1] == 3
    assert counts[12] == 1
    assert sum(counts) == 6
    assert "6 valid, unrevoked certificates expire" in page


def test_enrollment_activity_per_day(console: Console) -> None:
    audit = console.pki.audit
    audit.record(audit.event(DEVICE, EventType.ENROLL_SUCCEEDED, "plc-7"))
    console.clock.advance(timedelta(days=2))
    audit.record(
        audit.event(DEVICE, EventType.ENROLL_SUCCEEDED, "plc-8"),
        audit.event(DEVICE, EventType.ENROLL_REFUSED, "plc-9", reason="bad token"),
    )
    today = console.clock().date()
    page = console.sign_in("alice").get("/ui/").text
    assert "2 enrollments succeeded and 1 was refused" in page
    assert _row(page, "enrollment-table", str(today))[1:] == ["1", "1"]
    assert _row(page, "enrollment-table", str(today - timedelta(days=2)))[1:] == ["1", "0"]
    assert 'id="enrollment-chart"' in page


def test_recent_events_and_chain_status(console: Console) -> None:
    browser = console.sign_in("alice")
    page = browser.get("/ui/").text
    events = page.split('id="recent-events"', 1)[1].split("</table>", 1)[0]
    assert events.count("<tr>") == 11  # header + the last 10
    assert "signin.succeeded" in events.split("</tr>", 2)[1]  # newest first
    assert 'href="/ui/audit"' in page
    last = console.pki.stores.audit.audit_head()[0]
    signed = console.pki.stores.audit.latest_audit_head()
    assert signed is not None
    assert signed.sequence < last
    assert "end not yet signed" in page
    assert f"covers record {signed.sequence} " in page
    assert f"{last - signed.sequence} records after it" in page
    console.pki.audit.sign_head(force=True)
    page = browser.get("/ui/").text
    head = console.pki.stores.audit.latest_audit_head()
    assert head is not None
    assert f"covers record {head.sequence}, the end of the trail" in page
    assert "does not recompute hashes or check signatures" in page


def test_crl_freshness(console: Console) -> None:
    browser = console.sign_in("alice")
    assert _row(browser.get("/ui/").text, "crl-table", "issuing")[-1] == "fresh"
    crl = console.pki.stores.crls.get_crl("issuing")
    assert crl is not None
    console.clock.now = crl.next_update + timedelta(seconds=1)
    page = console.sign_in("alice").get("/ui/").text  # a new session: the old one timed out
    assert _row(page, "crl-table", "issuing")[-1] == "stale: past next update"


def _with_findings(browser: TestClient) -> str:
    """The dashboard once the self-check (a background thread) has reported; no timing asserted."""
    for _ in range(600):
        page = browser.get("/ui/").text
        if "is running" not in page.split('id="dashboard-findings"', 1)[1]:
            return page
        time.sleep(0.1)
    raise AssertionError("the self-check never reported")


def test_findings_of_the_self_check(console: Console) -> None:
    page = _with_findings(console.sign_in("alice"))
    assert "could not run" not in page
    assert "selfcheck.tls.settings" in page  # an info finding every installation has
    assert re.search(r"Information: [1-9]", page)


def test_cards_follow_the_roles(console: Console) -> None:
    auditor = console.sign_in("audrey").get("/ui/")
    assert _ids(auditor.text) >= {*PKI_CARDS, *AUDIT_CARDS, "dashboard-enrollment"}

    officer = console.sign_in("olga").get("/ui/")
    assert officer.status_code == 200
    assert _ids(officer.text) == {"dashboard-enrollment"}  # only the note: limited to line-2
    assert "limited to some owners" in officer.text
    assert "plc-" not in officer.text
    assert "signin.succeeded" not in officer.text

    console.pki.accounts.add("pia", frozenset({Grant(Role.PKI_OFFICER)}), SETUP, password=PASSWORD)
    pki_officer = console.sign_in("pia").get("/ui/")
    assert _ids(pki_officer.text) == set(PKI_CARDS)

    console.pki.accounts.add("mona", frozenset({Grant(Role.METRICS)}), SETUP, password=PASSWORD)
    metrics = console.sign_in("mona").get("/ui/")
    assert metrics.status_code == 200
    assert _ids(metrics.text) == set()
    assert "Your roles show no area on this dashboard" in metrics.text


def test_without_a_session_the_dashboard_sends_to_sign_in(console: Console) -> None:
    answer = console.client().get("/ui/")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in")


def test_ten_thousand_certificates(console: Console) -> None:
    now = console.clock()
    rows = [
        (
            "issuing",
            now + timedelta(hours=(i * 7) % (24 * 400) - 24 * 30),
            now - timedelta(days=1) if i % 10 == 0 else None,
        )
        for i in range(10_000)
    ]
    add_certificates(console.pki, rows)
    stored = {
        ca: (v, x, e, r)
        for ca, v, x, e, r in console.pki.stores.statistics.certificate_status_counts(
            now, now + timedelta(days=30)
        )
    }
    browser = console.sign_in("alice")
    started = time.perf_counter()
    page = browser.get("/ui/")
    elapsed = time.perf_counter() - started
    print(f"dashboard with 10,000 certificates: {elapsed * 1000:.0f} ms")  # reported, never asserted
    assert page.status_code == 200
    v, x, e, r = stored["issuing"]
    assert r == 1000
    assert v + x + e + r >= 10_000
    assert _row(page.text, "certificate-counts", "issuing")[1:] == [
        f"{v:,}",
        f"{x:,}",
        f"{e:,}",
        f"{r:,}",
        f"{v + x + e + r:,}",
    ]
    expiring = console.pki.stores.statistics.expiring_per_day(now, now + timedelta(days=91))
    assert sum(expiring.values()) > 0
