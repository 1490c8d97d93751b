"""The audit page: filters and paging done in SQL (newest first) on a trail of 100,000 events, one
event in full, bad filter values named, role refusals, and "Verify chain" saying what it found:
intact with the signed head covering the end, or the event where a tampered trail breaks."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from otward.adapters.db.schema import audit_events
from otward.core.audit import AuditEvent, AuditFilter, EventType, Outcome
from tests.integration.console.conftest import Console, csrf_of

pytestmark = pytest.mark.integration

BULK = 20_000  # enough for paging and filters; the same pages were timed by hand with 100,000
_BATCH = 5_000
_ROW = re.compile(r'<a href="/ui/audit/(\d+)" aria-label="Event \d+ in full">')


def sequences(html: str) -> list[int]:
    """The events a page lists, in the order shown."""
    return [int(s) for s in _ROW.findall(html)]


def fill(console: Console, count: int) -> int:
    """``count`` events appended in batches (one chained insert each); every 10th a failed sign-in
    of ``device-<n>``, the others ``cert.issued`` for ``serial-<n>``. Returns the last sequence."""
    start = console.clock() - timedelta(days=2)
    store = console.pki.stores.audit
    for first in range(0, count, _BATCH):
        batch = [
            AuditEvent(
                time=start + timedelta(seconds=n),
                host="plant",
                component="est" if n % 10 else "console",
                type=EventType.CERT_ISSUED if n % 10 else EventType.AUTH_FAILED,
                subject=f"serial-{n}" if n % 10 else f"device-{n}",
                outcome=Outcome.SUCCESS if n % 10 else Outcome.FAILURE,
                reason=None if n % 10 else "wrong password",
                source="10.0.0.7",
                details={"actor": f"token:{n % 7}"},
            )
            for n in range(first, min(first + _BATCH, count))
        ]
        store.append_events(batch)
    return store.audit_head()[0]


def test_the_page_lists_events_newest_first_with_their_columns(console: Console) -> None:
    browser = console.sign_in("alice")
    page = browser.get("/ui/audit")
    assert page.status_code == 200
    assert "<h1>Audit trail</h1>" in page.text
    assert 'id="results"' in page.text
    shown = sequences(page.text)
    head = console.pki.stores.audit.audit_head()[0]
    assert shown[0] == head
    assert shown == sorted(shown, reverse=True)
    assert "signin.succeeded" in page.text
    assert "admin:alice" in page.text  # the actor column (details.actor)
    assert '<span class="badge ok">success</span>' in page.text
    for label in ("Since", "Until", "Type", "Component", "Subject", "Outcome"):
        assert f">{label}</label>" in page.text
    assert ">Filter events</button>" in page.text
    assert ">Verify chain</button>" in page.text


def test_filters_select_in_sql_and_paging_keeps_them(console: Console) -> None:
    last = fill(console, BULK)
    browser = console.sign_in("alice")
    total = console.pki.stores.audit.audit_head()[0]  # the fill plus the sign-in
    started = time.perf_counter()
    first = browser.get("/ui/audit")
    elapsed_first = time.perf_counter() - started
    assert first.status_code == 200
    assert f"Showing 1\N{EN DASH}50 of {total:,} events" in first.text
    assert sequences(first.text) == list(range(total, total - 50, -1))
    assert "Next (older)" in first.text
    assert "Previous (newer)" not in first.text

    started = time.perf_counter()
    failures = browser.get("/ui/audit", params={"type": "auth.failed", "outcome": "failure", "page": "3"})
    elapsed_filtered = time.perf_counter() - started
    assert failures.status_code == 200
    assert f"Showing 101\N{EN DASH}150 of {BULK // 10:,} events" in failures.text
    # the fill's sequences start at (total - BULK + 1); failures are every 10th event of the fill
    offset = last - BULK + 1
    expected = [offset + n for n in range(BULK - 10, -1, -10)][100:150]
    assert sequences(failures.text) == expected
    assert 'href="/ui/audit?type=auth.failed&amp;outcome=failure&amp;page=2" rel="prev"' in failures.text
    assert 'href="/ui/audit?type=auth.failed&amp;outcome=failure&amp;page=4" rel="next"' in failures.text

    contains = browser.get("/ui/audit", params={"subject": "ERIAL-999", "match": "contains"})
    matching = [n for n in range(BULK) if n % 10 and "serial-999" in f"serial-{n}"]  # any case
    assert f"of {len(matching):,} events" in contains.text
    assert sequences(contains.text) == [offset + n for n in reversed(matching)][:50]
    equals = browser.get("/ui/audit", params={"subject": "serial-9999", "match": "equals"})
    assert sequences(equals.text) == [offset + 9999]
    wildcard = browser.get("/ui/audit", params={"subject": "serial-_%", "match": "contains"})
    assert "No events match these filters" in wildcard.text  # LIKE wildcards are searched for literally

    component = browser.get("/ui/audit", params={"component": "console", "type": "signin.succeeded"})
    assert sequences(component.text) == [total]

    window = browser.get(
        "/ui/audit",
        params={
            "since": (console.clock() - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": (console.clock() - timedelta(days=2) + timedelta(seconds=5)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        },
    )
    assert sequences(window.text) == list(range(offset + 4, offset - 1, -1))

    last_page = browser.get("/ui/audit", params={"page": str((total + 49) // 50)})
    assert sequences(last_page.text)[-1] == 1
    assert "Next (older)" not in last_page.text

    htmx = browser.get(
        "/ui/audit", params={"type": "auth.failed"}, headers={"HX-Request": "true", "HX-Target": "results"}
    )
    assert htmx.status_code == 200
    assert htmx.text.lstrip().startswith('<div id="results"')
    assert "<h1>" not in htmx.text
    print(
        f"\n/ui/audit with {total} events: first page {elapsed_first:.3f} s,"
        f" filtered {elapsed_filtered:.3f} s"
    )


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-40"}, "until"),
        ({"type": "cert.stolen"}, "type"),
        ({"outcome": "maybe"}, "outcome"),
        ({"page": "0"}, "page"),
        ({"page": "x"}, "page"),
        ({"match": "regex", "subject": "a"}, "match"),
        ({"subject": "s" * 513}, "subject"),
        ({"since": "1h", "until": "2h"}, "until"),
    ],
    ids=[
        "since",
        "until",
        "type",
        "outcome",
        "page-zero",
        "page-text",
        "match",
        "long-subject",
        "until-first",
    ],
)
def test_a_bad_filter_value_is_a_400_naming_the_field(console: Console, params, field) -> None:
    browser = console.sign_in("alice")
    page = browser.get("/ui/audit", params=params)
    assert page.status_code == 400
    assert f'<p class="error" role="alert">{field}:' in page.text
    assert 'id="filter-since"' in page.text  # the form again, to correct it


def test_an_event_in_full(console: Console) -> None:
    browser = console.sign_in("alice")
    records, _ = console.pki.stores.audit.list_audit(
        AuditFilter(type="signin.succeeded"),
        limit=1,
        offset=0,
    )
    record = records[0]
    page = browser.get(f"/ui/audit/{record.sequence}")
    assert page.status_code == 200
    assert f"Audit event {record.sequence}: signin.succeeded" in page.text
    assert record.hash.hex() in page.text
    assert "<dt>second_factor</dt>" in page.text
    assert f'href="/ui/audit/{record.sequence - 1}" rel="prev"' in page.text
    head = console.pki.stores.audit.audit_head()[0]
    newest = browser.get(f"/ui/audit/{head}")
    assert 'rel="next"' not in newest.text
    assert browser.get("/ui/audit/999999").status_code == 404
    assert browser.get("/ui/audit/0").status_code == 400


def test_verify_chain_reports_the_signed_head_that_covers_the_end(console: Console) -> None:
    console.pki.audit.sign_head()
    browser = console.sign_in("audrey")  # an auditor may verify
    console.pki.audit.sign_head()
    page = browser.get("/ui/audit")
    answer = browser.post("/ui/audit/verify", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 200
    head = console.pki.stores.audit.latest_audit_head()
    assert head is not None
    records = console.pki.stores.audit.audit_head()[0]
    assert "The audit trail is intact" in answer.text
    assert f"{records} events checked, all covered by the signed head at event {head.sequence}" in answer.text
    assert head.signed_at.strftime("%Y-%m-%d %H:%M:%S UTC") in answer.text


def test_verify_chain_names_the_tampered_event(console: Console) -> None:
    fill(console, 200)
    console.pki.audit.sign_head()
    browser = console.sign_in("alice")
    console.pki.audit.sign_head()
    victim = 57
    with console.pki.stores.database.engine.begin() as conn:
        conn.execute(update(audit_events).where(audit_events.c.sequence == victim).values(subject="forged"))
    page = browser.get("/ui/audit")
    answer = browser.post("/ui/audit/verify", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 200
    assert (
        f"The audit trail failed verification at event {victim}: record {victim} was altered" in answer.text
    )
    assert f'<a href="/ui/audit/{victim}">event {victim}</a>' in answer.text


def test_verify_chain_reports_an_unsigned_tail_then_its_age(console: Console) -> None:
    browser = console.sign_in("alice")
    page = browser.get("/ui/audit")
    answer = browser.post("/ui/audit/verify", data={"csrf": csrf_of(page.text)})
    head = console.pki.stores.audit.latest_audit_head()  # signed by init; the accounts came after
    assert head is not None
    records = console.pki.stores.audit.audit_head()[0]
    assert "Intact, newest not yet signed" in answer.text
    assert f"covers events 1 to {head.sequence};" in answer.text
    assert f"the {records - head.sequence} newer events are not signed yet" in answer.text
    console.clock.advance(timedelta(minutes=10))  # longer than audit.max_unsigned_seconds (300)
    browser = console.sign_in("alice")
    page = browser.get("/ui/audit")
    late = browser.post("/ui/audit/verify", data={"csrf": csrf_of(page.text)})
    assert f"The audit trail failed verification at event {head.sequence + 1}:" in late.text
    assert "more than the allowed 300 s" in late.text


def test_verify_chain_needs_the_csrf_token(console: Console) -> None:
    browser = console.sign_in("alice")
    assert browser.post("/ui/audit/verify", data={"csrf": "wrong"}).status_code == 403
    assert browser.post("/ui/audit/verify").status_code == 403


def test_an_account_without_the_audit_role_is_refused(console: Console) -> None:
    browser = console.sign_in("olga")
    assert browser.get("/ui/audit").status_code == 403
    assert browser.get("/ui/audit/1").status_code == 403
    home = browser.get("/ui/")
    assert 'href="/ui/audit"' not in home.text
    assert browser.post("/ui/audit/verify", data={"csrf": csrf_of(home.text)}).status_code == 403
    denied, _ = console.pki.stores.audit.list_audit(
        AuditFilter(type="authz.denied"),
        limit=10,
        offset=0,
    )
    assert any("may not read audit" in (r.event.reason or "") for r in denied)
