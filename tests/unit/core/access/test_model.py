"""The YAML access format: what it accepts, and errors that name the bad entry."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import yaml

from otward.core.access.changes import (
    add_grant,
    amend_asset,
    amend_schedule,
    diff_models,
    merge_import,
    put_asset,
    put_person,
    put_role,
    put_schedule,
    remove_asset,
    remove_grant,
    remove_role,
    remove_schedule,
    set_enabled,
)
from otward.core.access.model import (
    WEEKDAYS,
    AssetKind,
    Person,
    PersonKind,
    Role,
    make_asset,
    make_schedule,
    parse_access_yaml,
    parse_minutes,
    people_with_explicit_enabled,
)
from otward.errors import ConflictError, InvalidRequestError, NotFoundError, OtwardError, ParseError

EXAMPLE = (Path(__file__).parents[4] / "examples" / "chemical-plant.yaml").read_text()

MINIMAL = {
    "site": "s",
    "timezone": "Europe/Berlin",
    "schedules": {"day": {"days": ["mon"], "from": "08:00", "to": "17:00"}},
    "assets": {"hall": {"kind": "area"}, "press": {"kind": "machine", "in": "hall", "functions": ["start"]}},
    "roles": {"op": {"external": False}, "ext": {"external": True}},
    "grants": {"op": [{"assets": ["press"], "functions": ["start"], "when": "day"}]},
    "people": [{"id": "p", "name": "P", "roles": ["op"]}],
}


def document(**changes: object) -> str:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = data
        for key in path:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return yaml.safe_dump(data)


def test_the_example_plant_parses_completely():
    model = parse_access_yaml(EXAMPLE)
    assert model.site == "chemical-plant"
    assert model.timezone == "Europe/Berlin"
    assert len(model.schedules) == 6
    assert len(model.assets) == 14
    assert len(model.roles) == 7
    assert len(model.grants) == 34
    assert [p.id for p in model.people][-1] == "robot-7"
    night = model.schedule("night-shift")
    assert night is not None
    assert night.overnight
    assert (night.start, night.end) == (22 * 60, 6 * 60)
    maintenance = model.schedule("maintenance-window")
    assert maintenance is not None
    assert (maintenance.start, maintenance.end, maintenance.overnight) == (0, 1440, False)
    control = model.asset("control-room")
    assert control is not None
    assert (control.kind, control.inside, control.functions) == (
        AssetKind.AREA,
        "production-hall",
        ("enter",),
    )
    reactor = model.asset("reactor-1")
    assert reactor is not None
    assert reactor.inside == "production-hall"
    hanna = model.person("hanna")
    assert hanna is not None
    assert (hanna.valid_from, hanna.valid_until) == (date(2026, 11, 2), date(2026, 11, 27))
    robot = model.person("robot-7")
    assert robot is not None
    assert (robot.kind, robot.shift) == (PersonKind.ROBOT, "night-shift")
    assert [g.id for g in model.grants if g.role == "operator"][:2] == ["operator-1", "operator-2"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedules__day__to": "25:00"}, "schedules.day.to: bad time '25:00'"),
        ({"schedules__day__from": "24:00"}, "schedules.day.from: bad time '24:00'"),
        ({"schedules__day__from": "8:00"}, "schedules.day.from: bad time '8:00'"),
        ({"schedules__day__to": "08:00"}, "schedules.day: 'from' equals 'to'"),
        ({"schedules__day__days": ["monday"]}, "schedules.day.days: unknown day 'monday'"),
        ({"schedules__day__days": []}, "schedules.day.days: at least one day"),
        ({"grants__op__0__when": "lunch"}, "grants.op[1].when: unknown schedule 'lunch'"),
        ({"grants__op__0__assets": ["lathe"]}, "grants.op[1].assets: unknown asset 'lathe'"),
        ({"grants__op__0__functions": ["fly"]}, "grants.op[1].functions: unknown function 'fly'"),
        ({"grants__op__0__color": "red"}, "grants.op[1]: unknown field 'color'"),
        ({"people__0__valid": {"from": "2026-13-01"}}, "people.p.valid.from: bad date '2026-13-01'"),
        (
            {"people__0__valid": {"from": "2026-02-01", "to": "2026-01-01"}},
            "people.p.valid: 'from' 2026-02-01 is after",
        ),
        ({"people__0__roles": ["boss"]}, "people.p.roles: unknown role 'boss'"),
        ({"people__0__roles": ["ext"]}, "people.p.valid: role 'ext' is external"),
        ({"people__0__shift": "night"}, "people.p.shift: unknown schedule 'night'"),
        ({"people__0__kind": "cyborg"}, "people.p.kind: unknown kind 'cyborg'"),
        ({"people__0__id": "bad id"}, "people[1].id: bad id 'bad id'"),
        ({"assets__press__kind": "robot"}, "assets.press.kind: unknown kind 'robot'"),
        ({"assets__press__in": "press"}, "assets.press.inside: 'press' is not a known area"),
        ({"assets__hall__functions": ["start"]}, "assets.hall.functions: an area has only 'enter'"),
        ({"assets__press__functions": []}, "assets.press.functions: a machine needs at least one function"),
        ({"timezone": "Mars/Olympus"}, "unknown IANA time zone 'Mars/Olympus'"),
        ({"roles__op__external": "yes"}, "roles.op.external: expected true or false"),
        ({"sites": "x"}, "document: unknown field 'sites'"),
    ],
)
def test_errors_name_the_bad_entry(changes, message):
    with pytest.raises(OtwardError) as caught:
        parse_access_yaml(document(**changes))
    assert message in caught.value.message


def test_a_duplicate_person_and_bad_yaml_are_refused():
    text = document(people=[{"id": "p", "roles": ["op"]}, {"id": "p", "roles": ["op"]}])
    with pytest.raises(ParseError, match=r"people\.p: defined twice"):
        parse_access_yaml(text)
    with pytest.raises(ParseError, match="not valid YAML"):
        parse_access_yaml("site: [unclosed")
    with pytest.raises(ParseError, match="document: expected a mapping"):
        parse_access_yaml("- a\n- b\n")


@pytest.mark.parametrize(
    ("text", "allow_24", "minutes"),
    [("00:00", False, 0), ("23:59", False, 1439), ("24:00", True, 1440), ("12:30", True, 750)],
)
def test_times(text, allow_24, minutes):
    assert parse_minutes(text, "x", allow_24=allow_24) == minutes


@pytest.mark.parametrize("text", ["24:01", "12:60", "1230", "", "noon", None, 800])
def test_bad_times(text):
    with pytest.raises(ParseError, match="bad time"):
        parse_minutes(text, "x", allow_24=True)


def test_an_area_without_functions_gets_enter_and_ids_default_names():
    model = parse_access_yaml(document(people=[{"id": "p", "roles": ["op"]}]))
    hall = model.asset("hall")
    assert hall is not None
    assert hall.functions == ("enter",)
    person = model.person("p")
    assert person is not None
    assert person.name == "p"


def test_explicit_enabled_is_reported_for_the_importer():
    text = document(people=[{"id": "p", "roles": ["op"], "enabled": False}, {"id": "q", "roles": ["op"]}])
    assert people_with_explicit_enabled(text) == {"p"}
    model = parse_access_yaml(text)
    assert [p.enabled for p in model.people] == [False, True]


# --- changes ----------------------------------------------------------------------------------


def test_reimport_keeps_an_administrators_disable_and_is_idempotent():
    first = parse_access_yaml(EXAMPLE)
    disabled = set_enabled(first, "emil", False)
    again = merge_import(disabled, parse_access_yaml(EXAMPLE))
    assert not diff_models(disabled, again)
    emil = again.person("emil")
    assert emil is not None
    assert not emil.enabled
    # unless the file says so explicitly
    explicit = merge_import(disabled, parse_access_yaml(EXAMPLE), explicit_enabled=frozenset({"emil"}))
    person = explicit.person("emil")
    assert person is not None
    assert person.enabled


def test_import_replaces_the_grants_of_the_roles_it_lists_and_keeps_the_rest():
    current, grant = add_grant(parse_access_yaml(EXAMPLE), "cfo", ["scada-hmi"], ["view"], "business-hours")
    assert grant.id == "cfo-6"
    extra = put_person(current, Person(id="zoe", name="Zoe", roles=("cfo",)), create=True)
    merged = merge_import(extra, parse_access_yaml(EXAMPLE))
    assert "cfo-6" not in {g.id for g in merged.grants}  # the file is authoritative for cfo's grants
    assert merged.person("zoe") is not None  # people it does not name are kept
    replaced = merge_import(extra, parse_access_yaml(EXAMPLE), replace_all=True)
    assert replaced.person("zoe") is None
    diff = diff_models(extra, merged)
    assert diff.grants.removed == ("cfo-6",)
    assert diff.details() == {"grants": "+0 ~0 -1"}


def test_grant_and_person_changes_are_validated():
    model = parse_access_yaml(EXAMPLE)
    with pytest.raises(InvalidRequestError, match="unknown function 'fly'"):
        add_grant(model, "cfo", ["erp"], ["fly"], None)
    with pytest.raises(InvalidRequestError, match="unknown role 'pilot'"):
        add_grant(model, "pilot", ["erp"], ["view"], None)
    with pytest.raises(InvalidRequestError, match="unknown schedule 'lunch'"):
        add_grant(model, "cfo", ["erp"], ["view"], "lunch")
    with pytest.raises(NotFoundError):
        remove_grant(model, "cfo-99")
    with pytest.raises(ConflictError, match="already exists"):
        put_person(model, Person(id="anna", name="A", roles=("cfo",)), create=True)
    with pytest.raises(NotFoundError, match="person 'max' not found"):
        put_person(model, Person(id="max", name="Max", roles=("cfo",)), create=False)
    with pytest.raises(InvalidRequestError, match="role 'auditor' is external"):
        put_person(model, Person(id="kim", name="Kim", roles=("auditor",)), create=True)
    with pytest.raises(NotFoundError):
        set_enabled(model, "nobody", False)
    assert len(remove_grant(model, "cfo-1").grants) == len(model.grants) - 1


def test_assets_roles_and_schedules_are_added_changed_and_removed_only_when_unused():
    model = parse_access_yaml(EXAMPLE)
    press = make_asset("press-7", "machine", ["start", "stop"], inside="production-hall")
    added = put_asset(model, press, create=True)
    assert added.asset("press-7") == press
    assert diff_models(model, added).details() == {"assets": "+1 ~0 -0"}
    with pytest.raises(ConflictError, match="asset 'press-7' already exists"):
        put_asset(added, press, create=True)
    with pytest.raises(NotFoundError, match="asset 'press-8' not found"):
        put_asset(added, make_asset("press-8", "machine", ["start"]), create=False)
    with pytest.raises(InvalidRequestError, match="'nowhere' is not a known area"):
        put_asset(model, make_asset("press-9", "machine", ["start"], inside="nowhere"), create=True)
    # a grant naming only this asset must keep its function
    granted, grant = add_grant(added, "operator", ["press-7"], ["stop"], None)
    with pytest.raises(InvalidRequestError, match=r"grants.operator\[7\].functions: unknown function .stop."):
        put_asset(granted, make_asset("press-7", "machine", ["start"]), create=False)
    with pytest.raises(ConflictError, match=f"asset 'press-7' is still used by grant {grant.id}"):
        remove_asset(granted, "press-7")
    assert remove_asset(added, "press-7").asset("press-7") is None
    with pytest.raises(ConflictError, match=r"asset 'production-hall' is still used by .*\(inside it\)"):
        remove_asset(model, "production-hall")

    with pytest.raises(ConflictError, match="role 'auditor' is still used by grant auditor-1"):
        remove_role(model, "auditor")
    contractor = put_role(model, Role("contractor", external=True), create=True)
    assert contractor.role("contractor") == Role("contractor", external=True)
    assert remove_role(contractor, "contractor").role("contractor") is None
    with pytest.raises(InvalidRequestError, match="external"):  # operators have no validity dates
        put_role(model, Role("operator", external=True), create=False)

    night = make_schedule("late", ["sat", "mon"], "22:00", "02:00")
    assert night.days == ("mon", "sat")
    assert night.overnight
    with_night = put_schedule(model, night, create=True)
    assert with_night.schedule("late") == night
    with pytest.raises(InvalidRequestError, match="reserved"):
        put_schedule(model, make_schedule("own-shift", ["mon"], "08:00", "09:00"), create=True)
    with pytest.raises(ConflictError, match=r"schedule 'early-shift' is still used by .*\(shift\)"):
        remove_schedule(model, "early-shift")
    assert remove_schedule(with_night, "late").schedule("late") is None
    with pytest.raises(NotFoundError):
        remove_schedule(model, "late")


def test_amending_changes_only_what_is_given():
    model = parse_access_yaml(EXAMPLE)
    reactor = model.asset("reactor-1")
    assert reactor is not None
    moved = amend_asset(model, "reactor-1", inside="warehouse").asset("reactor-1")
    assert moved == replace(reactor, inside="warehouse")
    assert amend_asset(model, "reactor-1", clear_inside=True).asset("reactor-1") == replace(
        reactor, inside=None
    )
    as_machine = amend_asset(model, "scada-hmi", kind="machine").asset("scada-hmi")
    assert as_machine is not None
    assert as_machine.functions == ("view", "operate", "configure")  # kept
    with pytest.raises(InvalidRequestError, match="unknown function 'view'"):  # the cfo's grant on erp
        amend_asset(model, "erp", kind="area")
    with pytest.raises(NotFoundError):
        amend_asset(model, "reactor-9", kind="machine")
    night = amend_schedule(model, "night-shift", end="02:00").schedule("night-shift")
    assert night is not None
    assert (night.days, night.start, night.end) == (WEEKDAYS, 22 * 60, 2 * 60)
    weekend = amend_schedule(model, "night-shift", days=["sat", "sun"]).schedule("night-shift")
    assert weekend is not None
    assert (weekend.days, weekend.start, weekend.end) == (("sat", "sun"), 22 * 60, 6 * 60)
    with pytest.raises(NotFoundError):
        amend_schedule(model, "lunch", start="12:00")


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000])
def test_yaml_nested_too_deeply_is_a_parse_error(nested):
    """Found by tests/fuzz/core/access/test_yaml.py: PyYAML raised RecursionError."""
    with pytest.raises(ParseError, match="nested too deeply") as info:
        parse_access_yaml(f"site: plant\ndeep: {nested}\n")
    assert info.value.rule == "access-yaml"


def test_a_yaml_timestamp_that_is_no_date_is_a_parse_error():
    """Found by tests/fuzz/core/access/test_yaml.py: PyYAML's timestamp constructor raised ValueError."""
    with pytest.raises(ParseError, match=r"month must be in 1\.\.12") as info:
        parse_access_yaml(
            "site: plant\ntimezone: Europe/Berlin\npeople:\n  - {id: a, valid_from: 2026-13-01}\n"
        )
    assert info.value.rule == "access-yaml"


def test_a_timezone_that_names_a_directory_of_the_database_is_a_parse_error():
    """Found by the -m fuzz run of tests/fuzz/core/access/test_yaml.py: ZoneInfo("Europe") raises
    IsADirectoryError (an OSError), not ZoneInfoNotFoundError."""
    with pytest.raises(ParseError, match="unknown IANA time zone") as info:
        parse_access_yaml("site: plant\ntimezone: Europe\n")
    assert info.value.rule == "access-timezone"
