"""The console's Access pages on the chemical-plant example: the matrix, people changed at the touch
of a button (and what ``otward access explain`` then decides), who may use a machine now, gatekeepers."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from otward.core.audit import AuditFilter, EventType
from tests.integration.console.conftest import SETUP, Console, csrf_of

pytestmark = pytest.mark.integration

EXAMPLE = (Path(__file__).parents[3] / "examples" / "chemical-plant.yaml").read_text()
MONDAY_10_BERLIN = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # early shift, business hours


@pytest.fixture
def plant(console: Console) -> Console:
    console.clock.now = MONDAY_10_BERLIN
    console.pki.access.import_yaml(EXAMPLE, SETUP)
    return console


def _disable(browser, person: str, csrf: str | None):  # type: ignore[no-untyped-def]
    data = {"back": "/ui/access/people"} | ({"csrf": csrf} if csrf is not None else {})
    return browser.post(f"/ui/access/people/{person}/disable", data=data)


def test_the_matrix_shows_every_role_and_the_conditions_in_words(plant: Console) -> None:
    page = plant.sign_in("alice").get("/ui/access")
    assert page.status_code == 200
    assert 'id="access-matrix"' in page.text
    for role in ("plant-manager", "cfo", "operator", "service-it", "quality-control", "auditor", "cleaning"):
        assert f'<th scope="row">{role}' in page.text
    assert "only</span> Mon\u2013Fri 08:00\u201317:00" in page.text  # cfo enters the production hall
    assert "only</span> own shift" in page.text
    assert "only</span> Sat, Sun, all day" in page.text  # service-it maintenance mode
    assert "Assets 1\u201312 of 14" in page.text
    assert "Next assets" in page.text
    second = plant.sign_in("alice").get("/ui/access?offset=12")
    assert "Assets 13\u201314 of 14" in second.text
    assert "warehouse" in second.text.split('id="results"')[1]


def test_the_matrix_filters_by_kind_and_refuses_a_bad_one(plant: Console) -> None:
    browser = plant.sign_in("alice")
    machines = browser.get("/ui/access", params={"kind": "machine"})
    assert "Assets 1\u20133 of 3" in machines.text
    assert "reactor-1" in machines.text
    assert "main-gate" not in machines.text.split('id="results"')[1]
    partial = browser.get(
        "/ui/access", params={"kind": "system"}, headers={"hx-request": "true", "hx-target": "results"}
    )
    assert "<h1>" not in partial.text
    assert "scada-hmi" in partial.text
    bad = browser.get("/ui/access", params={"kind": "robot"})
    assert bad.status_code == 400
    assert "kind" in bad.text
    assert browser.get("/ui/access", params={"offset": "-1"}).status_code == 400


def test_without_a_model_the_pages_say_how_to_import_one(console: Console) -> None:
    browser = console.sign_in("alice")
    for path in ("/ui/access", "/ui/access/people", "/ui/access/now"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "otward access import FILE.yaml" in page.text
        partial = browser.get(path, headers={"hx-request": "true", "hx-target": "results"})
        assert partial.status_code == 200, path


def test_disabling_in_the_console_changes_what_explain_decides(plant: Console) -> None:
    before = plant.pki.access.explain("anna", "reactor-1", "start")
    assert before.decision.allowed
    browser = plant.sign_in("alice")
    people = browser.get("/ui/access/people")
    assert 'aria-label="Disable Anna Keller"' in people.text
    answer = _disable(browser, "anna", csrf_of(people.text))
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/access/people?done=disabled&who=anna"
    after = plant.pki.access.explain("anna", "reactor-1", "start")
    assert not after.decision.allowed
    assert after.decision.reason == "person is disabled"
    shown = browser.get(answer.headers["location"])
    assert "Anna Keller (anna) disabled." in shown.text
    assert 'aria-label="Enable Anna Keller"' in shown.text
    assert '<span class="badge bad">disabled</span>' in shown.text
    records, _ = plant.pki.stores.audit.list_audit(
        AuditFilter(type=EventType.ACCESS_CHANGED.value), limit=10, offset=0
    )
    last = next(r.event for r in records if r.event.subject == "person:anna")
    assert last.details["actor"] == "admin:alice"
    assert last.component == "console"
    assert last.details["change"] == "person.disabled"
    enabled = browser.post("/ui/access/people/anna/enable", data={"csrf": csrf_of(shown.text)})
    assert enabled.status_code == 303
    assert plant.pki.access.explain("anna", "reactor-1", "start").decision.allowed


def test_changes_need_the_csrf_token(plant: Console) -> None:
    browser = plant.sign_in("alice")
    assert _disable(browser, "anna", None).status_code == 403
    assert _disable(browser, "anna", "not-the-token").status_code == 403
    assert plant.pki.access.person("anna").enabled


@pytest.mark.parametrize("account", ["audrey", "olga"])
def test_accounts_without_the_access_role_cannot_change(plant: Console, account: str) -> None:
    browser = plant.sign_in(account)
    csrf = csrf_of(browser.get("/ui/").text)  # the sign-out form carries the session's token
    assert _disable(browser, "anna", csrf).status_code == 403
    assert browser.post("/ui/access/people/anna/remove", data={"csrf": csrf}).status_code == 403
    assert browser.get("/ui/access/people/anna/remove").status_code == 403
    added = browser.post(
        "/ui/access/people", data={"csrf": csrf, "person_id": "x", "name": "X", "roles": "cfo"}
    )
    assert added.status_code == 403
    assert plant.pki.access.person("anna").enabled
    assert plant.pki.access.model().person("x") is None
    denied, _ = plant.pki.stores.audit.list_audit(
        AuditFilter(type=EventType.AUTHZ_DENIED.value), limit=50, offset=0
    )
    assert any(r.event.details.get("actor") == f"admin:{account}" for r in denied)


def test_the_auditor_reads_but_sees_no_buttons_and_olga_reads_nothing(plant: Console) -> None:
    auditor = plant.sign_in("audrey")
    people = auditor.get("/ui/access/people")
    assert people.status_code == 200
    assert "Anna Keller" in people.text
    assert 'aria-label="Disable' not in people.text
    assert "Add person" not in people.text
    olga = plant.sign_in("olga")
    for path in ("/ui/access", "/ui/access/people", "/ui/access/now", "/ui/access/gatekeepers"):
        assert olga.get(path).status_code == 403, path


def test_add_a_person_and_remove_them_after_confirming(plant: Console) -> None:
    browser = plant.sign_in("alice")
    csrf = csrf_of(browser.get("/ui/access/people").text)
    added = browser.post(
        "/ui/access/people",
        data={
            "csrf": csrf,
            "person_id": "maria",
            "name": "Maria Weber",
            "roles": ["operator"],
            "shift": "early-shift",
        },
    )
    assert added.status_code == 303
    assert plant.pki.access.explain("maria", "reactor-1", "start").decision.allowed
    listed = browser.get("/ui/access/people", params={"q": "weber"})
    assert "Showing 1\u20131 of 1" in listed.text
    assert 'aria-label="Remove Maria Weber"' in listed.text
    again = browser.post(
        "/ui/access/people", data={"csrf": csrf, "person_id": "maria", "name": "M", "roles": "cfo"}
    )
    assert again.status_code == 409
    assert "already exists" in again.text
    assert 'value="maria"' in again.text  # the form keeps what was typed
    bad = browser.post("/ui/access/people", data={"csrf": csrf, "person_id": "no spaces", "roles": "cfo"})
    assert bad.status_code == 400
    assert "Id" in bad.text
    external = browser.post(
        "/ui/access/people", data={"csrf": csrf, "person_id": "ext", "name": "Ext", "roles": "auditor"}
    )
    assert external.status_code == 400
    assert "external" in external.text
    confirm = browser.get("/ui/access/people/maria/remove")
    assert confirm.status_code == 200
    assert "<h1>Remove Maria Weber?</h1>" in confirm.text
    assert plant.pki.access.model().person("maria") is not None  # the GET changed nothing
    removed = browser.post("/ui/access/people/maria/remove", data={"csrf": csrf_of(confirm.text)})
    assert removed.status_code == 303
    assert plant.pki.access.model().person("maria") is None
    assert browser.get("/ui/access/people/maria/remove").status_code == 404


def test_people_filters_and_bad_values(plant: Console) -> None:
    browser = plant.sign_in("alice")
    operators = browser.get("/ui/access/people", params={"role": "operator"})
    assert "Showing 1\u20134 of 4" in operators.text
    plant.pki.access.disable_person("ivo", SETUP)
    disabled = browser.get("/ui/access/people", params={"status": "disabled"})
    assert "Showing 1\u20131 of 1" in disabled.text
    assert "Ivo Petrov" in disabled.text
    assert browser.get("/ui/access/people", params={"status": "gone"}).status_code == 400
    assert browser.get("/ui/access/people", params={"role": "a b"}).status_code == 400
    none = browser.get("/ui/access/people", params={"q": "nobody-here"})
    assert "No one matches these filters" in none.text


def test_who_may_use_a_machine_now_follows_shifts_and_disabling(plant: Console) -> None:
    browser = plant.sign_in("alice")
    page = browser.get("/ui/access/now", params={"target": "reactor-1/start"})
    assert page.status_code == 200
    allowed = page.text.split('id="allowed-now"')[1].split("</table>")[0]
    refused = page.text.split('id="refused-now"')[1].split("</table>")[0]
    assert "Anna Keller" in allowed
    assert "Carla Neumann" in allowed  # early shift, Monday 10:00 in Berlin
    assert "allowed by operator-3/reactor-1" in allowed
    assert "Deniz Aydin" in refused
    assert "Emil Braun" in refused
    assert "Bernd Vogel" not in page.text  # the CFO has no grant to start it
    for person in ("anna", "carla", "deniz"):
        expected = plant.pki.access.explain(person, "reactor-1", "start").decision.allowed
        assert (person in allowed) is expected
    plant.pki.access.disable_person("carla", SETUP)
    later = browser.get("/ui/access/now", params={"target": "reactor-1/start"}).text
    assert "Carla Neumann" in later.split('id="refused-now"')[1]
    assert "person is disabled" in later
    gate = browser.get("/ui/access/now", params={"target": "main-gate"}).text
    assert "Ivo Petrov" in gate.split('id="refused-now"')[1]  # cleaning: only 18:00-22:00
    assert browser.get("/ui/access/now", params={"target": "reactor-1/fly"}).status_code == 400
    assert browser.get("/ui/access/now", params={"target": "reactor-9/start"}).status_code == 400
    assert "Show who may" in browser.get("/ui/access/now").text


def test_gatekeepers_show_an_empty_state_then_bundle_versions(plant: Console) -> None:
    browser = plant.sign_in("alice")
    empty = browser.get("/ui/access/gatekeepers")
    assert "No gatekeeper has synced yet" in empty.text
    assert "otward edge serve --asset ASSET" in empty.text
    plant.pki.edge.issue_bundle("reactor-1", actor=SETUP)
    plant.pki.edge.issue_bundle("reactor-1", actor=SETUP)
    plant.pki.edge.issue_bundle("main-gate", actor=SETUP)
    page = browser.get("/ui/access/gatekeepers").text
    rows = re.findall(r'<th scope="row">([^<]+)</th>\s*<td>(\d+)</td>', page)
    assert rows == [("main-gate", "1"), ("reactor-1", "2")]
    assert "never" in page
    statuses, total = plant.pki.edge.sync_status()
    assert total == 2
    assert statuses[1].bundle_issued_at is not None
    assert statuses[1].last_trail_at is None


def test_people_page_with_a_thousand_people(plant: Console) -> None:
    lines = "\n".join(
        f"  - {{id: p{n:04d}, name: Person {n:04d}, roles: [operator], shift: early-shift}}"
        for n in range(1000)
    )
    plant.pki.access.import_yaml(EXAMPLE.split("people:")[0] + "people:\n" + lines + "\n", SETUP)
    browser = plant.sign_in("alice")
    started = time.perf_counter()
    page = browser.get("/ui/access/people", params={"offset": 50})
    took = time.perf_counter() - started
    assert page.status_code == 200
    assert "Showing 51\u2013100 of 1010" in page.text
    assert "Person 0041" in page.text  # the example's nine people (to ivo) sort before p0000
    started = time.perf_counter()
    now = browser.get("/ui/access/now", params={"target": "reactor-1/start"})
    took_now = time.perf_counter() - started
    assert now.status_code == 200
    assert now.text.count("Person 0") == 1000  # every operator decided: early shift, Monday 10:00
    assert "Allowed now (1002)" in now.text  # and anna, carla; not deniz, emil, robot-7
    print(
        f"people page: {took * 1000:.0f} ms,"
        f" who may start reactor-1 (1,005 with a grant): {took_now * 1000:.0f} ms"
    )
