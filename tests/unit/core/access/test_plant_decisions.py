"""The example chemical plant decided right by Cedar, checked against an independent oracle.

The oracle below reads the YAML with PyYAML and implements its documented semantics in plain Python
(datetime arithmetic, no otward code), so a compiler bug cannot make both sides agree by
construction. Every person x asset x function is compared at instants chosen around shift edges,
midnight, weekends, an auditor's engagement dates and both daylight saving changes of 2026/27.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import cedarpy
import pytest
import yaml

from otward.core.access import Decider, asset_slice, cedar_schema, parse_access_yaml, policy_set_text
from otward.core.access.changes import set_enabled

EXAMPLE = Path(__file__).parents[4] / "examples" / "chemical-plant.yaml"
PLANT = yaml.safe_load(EXAMPLE.read_text())
BERLIN = ZoneInfo("Europe/Berlin")
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


# --- the oracle: the YAML's comments, in plain Python -------------------------------------------


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _schedule_holds(name: str, local: datetime) -> bool:
    """`from` included, `to` excluded; a window crossing midnight belongs to the day it starts."""
    schedule = PLANT["schedules"][name]
    start, end = _minutes(schedule["from"]), _minutes(schedule["to"])
    now = local.hour * 60 + local.minute
    today, yesterday = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    if end > start:
        return today in schedule["days"] and start <= now < end
    return (today in schedule["days"] and now >= start) or (yesterday in schedule["days"] and now < end)


def _functions(asset: str) -> list[str]:
    entry = PLANT["assets"][asset]
    return ["enter"] if entry["kind"] == "area" else list(entry["functions"])


def oracle(
    person_id: str, asset: str, function: str, at: datetime, disabled: frozenset[str] = frozenset()
) -> bool:
    person = next(p for p in PLANT["people"] if p["id"] == person_id)
    local = at.astimezone(ZoneInfo(PLANT["timezone"]))
    if person_id in disabled or not person.get("enabled", True):
        return False
    valid = person.get("valid")
    if valid and not (date.fromisoformat(valid["from"]) <= local.date() <= date.fromisoformat(valid["to"])):
        return False
    if function not in _functions(asset):
        return False
    for role in person["roles"]:
        for grant in PLANT["grants"].get(role, []):
            if asset not in grant["assets"] or function not in grant["functions"]:
                continue
            when = grant.get("when")
            if when is None:
                return True
            if when == "own-shift":
                if person.get("shift") and _schedule_holds(person["shift"], local):
                    return True
            elif _schedule_holds(when, local):
                return True
    return False


# --- the system under test ----------------------------------------------------------------------


@cache
def model():  # type: ignore[no-untyped-def]
    return parse_access_yaml(EXAMPLE.read_text())


@cache
def decider(asset: str, disabled: frozenset[str] = frozenset()) -> Decider:
    current = model()
    for person in disabled:
        current = set_enabled(current, person, False)
    return Decider(asset_slice(current, asset))


def local(text: str) -> datetime:
    """Berlin wall-clock time (unambiguous ones only) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


INSTANTS = {
    # weekdays around shift edges (2026-11-30 is a Monday)
    "mon-06:00-early-starts": local("2026-11-30T06:00"),
    "mon-10:00-business": local("2026-11-30T10:00"),
    "mon-13:59-early-last-minute": local("2026-11-30T13:59"),
    "mon-14:00-early-ends-late-starts": local("2026-11-30T14:00"),
    "mon-17:00-business-over": local("2026-11-30T17:00"),
    "mon-19:00-late-and-cleaning": local("2026-11-30T19:00"),
    "mon-22:00-night-starts": local("2026-11-30T22:00"),
    "mon-23:00-night": local("2026-11-30T23:00"),
    "tue-03:00-night-from-monday": local("2026-12-01T03:00"),
    "tue-05:59-night-last-minute": local("2026-12-01T05:59"),
    # weekend (2026-12-05 Saturday, 2026-12-06 Sunday)
    "sat-10:00-maintenance": local("2026-12-05T10:00"),
    "sat-21:59-cleaning": local("2026-12-05T21:59"),
    "sun-19:00-no-cleaning": local("2026-12-06T19:00"),
    "sun-23:00-night": local("2026-12-06T23:00"),
    "mon-02:00-night-from-sunday": local("2026-12-07T02:00"),
    # the auditor's engagement 2026-11-02 (Mon) .. 2026-11-27 (Fri), whole local days
    "fri-before-engagement": local("2026-10-30T10:00"),
    "engagement-first-day-08:00": local("2026-11-02T08:00"),
    "engagement-last-day-16:59": local("2026-11-27T16:59"),
    "mon-after-engagement": local("2026-11-30T10:00"),
    # cleaning contract 2026-01-01 (Thu) .. 2027-12-31 (Fri)
    "day-before-cleaning-contract": local("2025-12-31T19:00"),
    "cleaning-contract-first-day": local("2026-01-01T19:00"),
    "cleaning-contract-last-day": local("2027-12-31T21:59"),
    "day-after-cleaning-contract": local("2028-01-01T19:00"),
    # autumn change 2026-10-25 (Sunday 03:00 CEST -> 02:00 CET): the night of Saturday is 9 hours
    "dst-autumn-sat-21:59-cest": utc("2026-10-24T19:59"),
    "dst-autumn-sat-22:00-cest": utc("2026-10-24T20:00"),
    "dst-autumn-02:30-cest-first": utc("2026-10-25T00:30"),
    "dst-autumn-02:30-cet-second": utc("2026-10-25T01:30"),
    "dst-autumn-05:59-cet": utc("2026-10-25T04:59"),
    "dst-autumn-06:00-cet": utc("2026-10-25T05:00"),
    "dst-autumn-fri-08:30-cest": utc("2026-10-23T06:30"),
    "dst-autumn-mon-07:30-cet": utc("2026-10-26T06:30"),
    "dst-autumn-mon-08:00-cet": utc("2026-10-26T07:00"),
    # spring change 2027-03-28 (Sunday 02:00 CET -> 03:00 CEST): the night of Saturday is 7 hours
    "dst-spring-01:59-cet": utc("2027-03-28T00:59"),
    "dst-spring-03:00-cest": utc("2027-03-28T01:00"),
    "dst-spring-05:59-cest": utc("2027-03-28T03:59"),
    "dst-spring-06:00-cest": utc("2027-03-28T04:00"),
    "dst-spring-fri-08:00-cet": utc("2027-03-26T07:00"),
    "dst-spring-mon-07:30-cest": utc("2027-03-29T05:30"),
    "dst-spring-mon-08:00-cest": utc("2027-03-29T06:00"),
}

PEOPLE = [p["id"] for p in PLANT["people"]]
REQUESTS = [(asset, function) for asset in PLANT["assets"] for function in _functions(asset)]


@pytest.mark.parametrize("instant", list(INSTANTS.values()), ids=list(INSTANTS))
def test_every_person_asset_and_function_matches_the_oracle(instant):
    mismatches = []
    for person in PEOPLE:
        for asset, function in REQUESTS:
            decision = decider(asset).decide(person, function, instant)
            if decision.allowed != oracle(person, asset, function, instant):
                mismatches.append((person, asset, function, decision.allowed, decision.reason))
    assert mismatches == []


def test_the_matrix_exercises_every_person_and_every_condition():
    """Guards the comparison above against a degenerate oracle (always deny, always allow)."""
    outcomes: dict[tuple[str, str, str], set[bool]] = {}
    for instant in INSTANTS.values():
        for person in PEOPLE:
            for asset, function in REQUESTS:
                outcomes.setdefault((person, asset, function), set()).add(
                    oracle(person, asset, function, instant)
                )
    for person in PEOPLE:
        assert any(True in v for k, v in outcomes.items() if k[0] == person), person
    conditional = {key for key, seen in outcomes.items() if seen == {True, False}}
    # everyone but the plant manager (no conditions) is allowed something at one instant and
    # denied it at another: shifts, schedules and validity dates all flip within the chosen instants
    assert {key[0] for key in conditional} == set(PEOPLE) - {"anna"}
    assert len(conditional) > 90


def test_unknown_functions_and_people_are_denied_with_a_reason():
    at = local("2026-11-30T10:00")
    denied = decider("reactor-1").decide("anna", "self-destruct", at)
    assert not denied.allowed
    assert denied.reason == "asset 'reactor-1' has no function 'self-destruct'"
    stranger = decider("reactor-1").decide("mallory", "start", at)
    assert not stranger.allowed
    assert "unknown at asset 'reactor-1'" in stranger.reason
    # ivo (cleaning) has no grant on the reactor, so its slice does not even know him
    assert "unknown" in decider("reactor-1").decide("ivo", "read-data", at).reason


# A readable table of the cases the issue names, checked against Cedar and the oracle alike.
CASES = [
    # (person, asset, function, instant, allowed)
    ("emil", "reactor-1", "start", local("2026-11-30T23:00"), True),  # night shift Monday 23:00
    ("emil", "reactor-1", "start", local("2026-12-01T03:00"), True),  # ... still Monday's shift
    ("emil", "reactor-1", "start", local("2026-12-01T06:00"), False),  # night shift ends at 06:00
    ("emil", "control-room", "enter", local("2026-12-06T23:00"), True),  # Sunday night
    ("emil", "control-room", "enter", local("2026-12-07T02:00"), True),  # ... into Monday
    ("robot-7", "packaging-line", "start", local("2026-12-07T02:00"), True),
    ("robot-7", "packaging-line", "start", local("2026-12-07T10:00"), False),
    ("carla", "mixer-2", "set-parameters", local("2026-11-30T13:59"), True),  # early shift
    ("carla", "mixer-2", "set-parameters", local("2026-11-30T14:00"), False),  # ends 14:00, exclusive
    ("deniz", "mixer-2", "set-parameters", local("2026-11-30T14:00"), True),  # late shift starts
    ("carla", "mixer-2", "set-parameters", local("2026-12-05T10:00"), False),  # no Saturday shift
    ("carla", "main-gate", "enter", local("2026-12-05T10:00"), True),  # unconditional
    ("carla", "logistics-system", "view", local("2026-12-06T03:00"), True),
    ("carla", "packaging-line", "set-parameters", local("2026-11-30T10:00"), False),  # no such function
    ("anna", "packaging-line", "maintenance-mode", local("2026-12-06T03:00"), True),
    ("bernd", "production-hall", "enter", local("2026-11-30T16:59"), True),
    ("bernd", "production-hall", "enter", local("2026-11-30T17:00"), False),
    ("bernd", "erp", "approve-payments", local("2026-12-05T03:00"), True),
    ("bernd", "control-room", "enter", local("2026-11-30T10:00"), False),  # hall does not imply room
    ("farah", "reactor-1", "maintenance-mode", local("2026-12-05T10:00"), True),  # weekend window
    ("farah", "reactor-1", "maintenance-mode", local("2026-12-04T10:00"), False),  # Friday
    ("farah", "server-room", "enter", local("2026-12-06T03:00"), True),
    ("farah", "erp", "view", local("2026-12-05T10:00"), False),
    ("georg", "quality-lab", "enter", local("2026-12-06T03:00"), True),
    ("georg", "warehouse", "enter", local("2026-12-06T10:00"), False),
    ("hanna", "erp", "view", local("2026-10-30T10:00"), False),  # before the engagement
    ("hanna", "erp", "view", local("2026-11-02T08:00"), True),  # first day
    ("hanna", "erp", "view", local("2026-11-27T16:59"), True),  # last day
    ("hanna", "erp", "view", local("2026-11-30T10:00"), False),  # after it
    ("hanna", "erp", "approve-payments", local("2026-11-02T10:00"), False),
    ("hanna", "control-room", "enter", local("2026-11-02T10:00"), False),
    ("ivo", "control-room", "enter", local("2026-12-05T21:59"), True),
    ("ivo", "control-room", "enter", local("2026-12-05T22:00"), False),
    ("ivo", "control-room", "enter", local("2026-12-06T19:00"), False),  # no Sunday cleaning
    ("ivo", "server-room", "enter", local("2026-11-30T19:00"), False),
    ("ivo", "admin-building", "enter", local("2028-01-01T19:00"), False),  # contract over
    # daylight saving: the night of 2026-10-25 runs 22:00 CEST .. 06:00 CET (9 h)
    ("emil", "reactor-1", "start", utc("2026-10-25T01:30"), True),  # 02:30 CET, the repeated hour
    ("emil", "reactor-1", "start", utc("2026-10-25T04:59"), True),  # 05:59 CET
    ("emil", "reactor-1", "start", utc("2026-10-25T05:00"), False),  # 06:00 CET
    ("emil", "reactor-1", "start", utc("2027-03-28T03:59"), True),  # 05:59 CEST
    ("emil", "reactor-1", "start", utc("2027-03-28T04:00"), False),  # 06:00 CEST
    ("georg", "warehouse", "enter", utc("2026-10-23T06:30"), True),  # 08:30 CEST
    ("georg", "warehouse", "enter", utc("2026-10-26T06:30"), False),  # 07:30 CET
    ("georg", "warehouse", "enter", utc("2027-03-26T07:00"), True),  # 08:00 CET
    ("georg", "warehouse", "enter", utc("2027-03-29T05:30"), False),  # 07:30 CEST
    ("georg", "warehouse", "enter", utc("2027-03-29T06:00"), True),  # 08:00 CEST
]


@pytest.mark.parametrize(
    ("person", "asset", "function", "at", "allowed"),
    CASES,
    ids=[f"{p}-{a}-{f}-{t.isoformat()}" for p, a, f, t, _ in CASES],
)
def test_named_cases(person, asset, function, at, allowed):
    assert oracle(person, asset, function, at) is allowed
    decision = decider(asset).decide(person, function, at)
    assert decision.allowed is allowed, decision.reason
    if allowed:
        assert decision.policies, "an allow names the permit that gave it"
        assert decision.reason.startswith("allowed by ")


def test_disabled_person_is_denied_everything_with_that_reason():
    at = local("2026-11-30T10:00")
    for asset, function in REQUESTS:
        decision = decider(asset, frozenset({"anna"})).decide("anna", function, at)
        assert not decision.allowed
        assert decision.reason == "person is disabled"
        assert decision.policies == ("site/person-disabled",)
    # everyone else is unaffected
    assert decider("reactor-1", frozenset({"anna"})).decide("carla", "start", at).allowed


def test_outside_validity_names_the_dates():
    decision = decider("erp").decide("hanna", "view", local("2026-11-30T10:00"))
    assert not decision.allowed
    assert decision.reason == "outside validity dates 2026-11-02..2026-11-27"
    assert decision.policies == ("site/outside-validity",)


def test_validity_dates_are_whole_days_in_the_site_time_zone():
    """At 23:30 UTC it is already the next day in Berlin: the local date decides, not the UTC one."""
    current = model()
    always = replace(current.person("hanna"), roles=("plant-manager",))
    current = current.with_people([always if p.id == "hanna" else p for p in current.people])
    gate = Decider(asset_slice(current, "main-gate"))
    assert not gate.decide("hanna", "enter", utc("2026-11-01T22:59")).allowed  # 23:59 on Nov 1st
    assert gate.decide("hanna", "enter", utc("2026-11-01T23:00")).allowed  # 00:00 on Nov 2nd
    assert gate.decide("hanna", "enter", utc("2026-11-27T22:59")).allowed  # 23:59 on Nov 27th
    late = gate.decide("hanna", "enter", utc("2026-11-27T23:30"))  # 00:30 on Nov 28th, UTC still 27th
    assert not late.allowed
    assert late.local_time == "2026-11-28T00:30:00+01:00"


def test_compiled_policies_validate_against_the_cedar_schema():
    result = cedarpy.validate_policies(policy_set_text(model()), cedar_schema(model()))
    assert result.validation_passed, [str(error) for error in result.errors]
