"""The access model in the database (SQLite and PostgreSQL): import, changes, audit, migration."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect

from otward.core.access.model import Person, PersonKind
from otward.core.audit import AuditFilter, EventType
from otward.errors import ConflictError, InvalidRequestError, NotFoundError, ParseError
from otward.services.access import AccessAdmin, MemoryAccessStore
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

EXAMPLE = (Path(__file__).parents[3] / "examples" / "chemical-plant.yaml").read_text()
BERLIN = ZoneInfo("Europe/Berlin")


def access_events(pki: Pki) -> list:
    records, _ = pki.stores.audit.list_audit(
        AuditFilter(type=EventType.ACCESS_CHANGED.value), limit=1000, offset=0
    )
    return sorted(records, key=lambda r: r.sequence)


def test_migration_creates_the_access_tables(pki: Pki):
    tables = set(inspect(pki.stores.database.engine).get_table_names())
    assert {
        "access_site",
        "access_schedules",
        "access_assets",
        "access_roles",
        "access_grants",
        "access_people",
    } <= tables


def test_import_round_trips_and_is_idempotent(pki: Pki):
    with pytest.raises(NotFoundError, match="no access model yet"):
        pki.access.model()
    first = pki.access.import_yaml(EXAMPLE)
    assert first.changed
    assert first.revision == 1
    assert first.details["people"] == "+10 ~0 -0"
    stored = pki.access.model()
    from otward.core.access import parse_access_yaml

    parsed = parse_access_yaml(EXAMPLE)
    # the same model comes back (order of schedules/assets/roles/people by id, grants as imported)
    assert [g for g in stored.grants] == list(parsed.grants)
    assert sorted(stored.people, key=lambda p: p.id) == sorted(parsed.people, key=lambda p: p.id)
    assert {s.name: s for s in stored.schedules} == {s.name: s for s in parsed.schedules}
    assert {a.id: a for a in stored.assets} == {a.id: a for a in parsed.assets}
    again = pki.access.import_yaml(EXAMPLE)
    assert (again.changed, again.revision) == (False, 1)
    events = access_events(pki)
    assert len(events) == 1  # the unchanged re-import wrote nothing
    assert events[0].event.subject == "site:chemical-plant"
    assert events[0].event.details["change"] == "import"


def test_changes_are_stored_with_their_audit_event(pki: Pki):
    pki.access.import_yaml(EXAMPLE)
    pki.access.disable_person("emil")
    assert not pki.access.person("emil").enabled
    night = datetime(2026, 12, 1, 3, 0, tzinfo=BERLIN)
    assert pki.access.explain("emil", "reactor-1", "start", night).decision.reason == "person is disabled"
    # a re-import does not undo the administrator's disable
    pki.access.import_yaml(EXAMPLE)
    assert not pki.access.person("emil").enabled
    pki.access.enable_person("emil")
    assert pki.access.explain("emil", "reactor-1", "start", night).decision.allowed
    grant = pki.access.add_grant("cfo", ["scada-hmi"], ["view"], "business-hours")
    assert grant.id == "cfo-6"
    assert [p.id for p in pki.access.policies("scada-hmi") if p.grant == "cfo-6"] == ["cfo-6/scada-hmi"]
    pki.access.remove_grant("cfo-6")
    zoe = Person(id="zoe", name="Zoe", roles=("auditor",), kind=PersonKind.PERSON)
    with pytest.raises(InvalidRequestError, match="external"):
        pki.access.add_person(zoe)
    from dataclasses import replace
    from datetime import date

    zoe = replace(zoe, valid_from=date(2026, 12, 1), valid_until=date(2026, 12, 31))
    assert pki.access.add_person(zoe) == zoe
    with pytest.raises(ConflictError):
        pki.access.add_person(zoe)
    pki.access.remove_person("zoe")
    subjects = [(r.event.subject, r.event.details["change"]) for r in access_events(pki)]
    assert subjects == [
        ("site:chemical-plant", "import"),
        ("person:emil", "person.disabled"),
        ("person:emil", "person.enabled"),
        ("grant:cfo-6", "grant.added"),
        ("grant:cfo-6", "grant.removed"),
        ("person:zoe", "person.added"),
        ("person:zoe", "person.removed"),
    ]
    assert pki.audit.verify().check.ok


def test_a_bad_import_changes_nothing(pki: Pki):
    pki.access.import_yaml(EXAMPLE)
    bad = EXAMPLE.replace("when: maintenance-window", "when: maintenance-windw")
    with pytest.raises(
        InvalidRequestError, match=r"grants\.service-it\[3\]\.when: unknown schedule 'maintenance-windw'"
    ):
        pki.access.import_yaml(bad)
    with pytest.raises(ParseError, match=r"schedules\.late-shift\.to: bad time '25:00'"):
        pki.access.import_yaml(EXAMPLE.replace('to: "22:00"}', 'to: "25:00"}', 1))
    assert len(access_events(pki)) == 1


def test_concurrent_changes_do_not_lose_each_other(pki: Pki):
    pki.access.import_yaml(EXAMPLE)
    people = ["anna", "bernd", "carla", "deniz", "farah", "georg"]
    errors: list[Exception] = []

    def disable(person: str) -> None:
        try:
            pki.access.disable_person(person)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=disable, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {p.id for p in pki.access.people() if not p.enabled} == set(people)


def test_asset_slice_for_the_gatekeeper(pki: Pki):
    pki.access.import_yaml(EXAMPLE)
    pki.access.disable_person("georg")
    access_slice = pki.access.asset_slice("quality-lab")
    georg = next(e for e in access_slice.entities if e["uid"]["id"] == "georg")
    assert georg["attrs"]["enabled"] is False
    assert access_slice.timezone == "Europe/Berlin"
    with pytest.raises(NotFoundError, match="unknown asset 'moon-base'"):
        pki.access.asset_slice("moon-base")


def test_explain_someone_without_a_grant_on_the_asset(pki: Pki):
    pki.access.import_yaml(EXAMPLE)
    explanation = pki.access.explain("ivo", "server-room", "enter", datetime(2026, 11, 30, 19, tzinfo=BERLIN))
    assert not explanation.decision.allowed
    assert explanation.decision.reason.startswith("no grant allows 'ivo' to 'enter' on 'server-room'")
    with pytest.raises(NotFoundError):
        pki.access.explain("nobody", "server-room", "enter")


def test_memory_store_for_fakes_records_events():
    recorded: list = []
    from otward.services.audit import AuditLog

    audit = AuditLog(
        None,  # type: ignore[arg-type]
        host="h",
        clock=lambda: datetime(2026, 1, 1, tzinfo=BERLIN),
        signer=lambda: (_ for _ in ()).throw(AssertionError),  # type: ignore[arg-type,return-value]
        signer_certificate=lambda serial: None,
    )
    admin = AccessAdmin(MemoryAccessStore(recorded.extend), clock=lambda: datetime.now(BERLIN), audit=audit)
    admin.import_yaml(EXAMPLE)
    admin.import_yaml(EXAMPLE)
    admin.disable_person("anna")
    assert [e.details["change"] for e in recorded] == ["import", "person.disabled"]
