"""Schedules compiled to Cedar, per-asset slices, and the slice's JSON form."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from otward.core.access import AccessSlice, Decider, asset_slice, local_context, parse_access_yaml
from otward.core.access.changes import set_enabled
from otward.core.access.policies import compile_policies

EXAMPLE = (Path(__file__).parents[4] / "examples" / "chemical-plant.yaml").read_text()
BERLIN = ZoneInfo("Europe/Berlin")


def one_schedule_site(days: list[str], start: str, end: str) -> Decider:
    """A site with one machine and one role allowed 'use' only while the schedule holds."""
    text = yaml.safe_dump(
        {
            "site": "t",
            "timezone": "Europe/Berlin",
            "schedules": {"window": {"days": days, "from": start, "to": end}},
            "assets": {"m": {"kind": "machine", "functions": ["use"]}},
            "roles": {"r": {}},
            "grants": {"r": [{"assets": ["m"], "functions": ["use"], "when": "window"}]},
            "people": [{"id": "p", "roles": ["r"]}],
        }
    )
    return Decider(asset_slice(parse_access_yaml(text), "m"))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("days", "start", "end", "instant", "allowed"),
    [
        # a named schedule crossing midnight belongs to the day it starts (Friday night only)
        (["fri"], "22:00", "02:00", "2026-12-04T21:59", False),
        (["fri"], "22:00", "02:00", "2026-12-04T22:00", True),
        (["fri"], "22:00", "02:00", "2026-12-05T01:59", True),  # Saturday morning, Friday's window
        (["fri"], "22:00", "02:00", "2026-12-05T02:00", False),
        (["fri"], "22:00", "02:00", "2026-12-05T22:30", False),  # Saturday night: not a window day
        (["fri"], "22:00", "02:00", "2026-12-04T01:00", False),  # Friday early: Thursday's window, none
        # 24:00 as end: the whole last minute of the day, and nothing of the next
        (["sun"], "00:00", "24:00", "2026-12-06T00:00", True),
        (["sun"], "00:00", "24:00", "2026-12-06T23:59", True),
        (["sun"], "00:00", "24:00", "2026-12-07T00:00", False),
        (["sun"], "12:00", "24:00", "2026-12-06T11:59", False),
        # an end before the start on the same day is a crossing window, even a long one
        (["mon"], "06:00", "05:00", "2026-12-01T04:59", True),
        (["mon"], "06:00", "05:00", "2026-12-01T05:00", False),
        (["mon"], "06:00", "05:00", "2026-11-30T05:59", False),
    ],
)
def test_schedule_edges(days, start, end, instant, allowed):
    decision = one_schedule_site(days, start, end).decide("p", "use", at(instant))
    assert decision.allowed is allowed, decision.reason


def test_context_uses_local_wall_clock_and_previous_weekday():
    context = local_context(datetime.fromisoformat("2026-10-25T01:30+00:00"), "Europe/Berlin")
    assert context["weekday"] == "sun"
    assert context["yesterday"] == "sat"
    assert context["minute"] == 2 * 60 + 30  # 02:30 CET, the second 02:30 of that night
    assert context["today"] == {"__extn": {"fn": "datetime", "arg": "2026-10-25"}}
    assert context["localTime"] == "2026-10-25T02:30:00+01:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        local_context(datetime(2026, 1, 1), "Europe/Berlin")


def test_a_slice_holds_only_what_concerns_its_asset():
    model = parse_access_yaml(EXAMPLE)
    reactor = asset_slice(model, "reactor-1")
    ids = [p.id for p in compile_policies(model, "reactor-1")]
    assert all(policy_id.endswith("/reactor-1") for policy_id in ids)
    for policy_id in ids:
        assert f'@id("{policy_id}")' in reactor.policies
    assert "control-room" not in reactor.policies
    people = {e["uid"]["id"] for e in reactor.entities if e["uid"]["type"] == "Person"}
    assert people == {"anna", "bernd", "carla", "deniz", "emil", "farah", "georg", "hanna", "robot-7"}
    assert "ivo" not in people  # cleaning has no grant on the reactor
    roles = {e["uid"]["id"] for e in reactor.entities if e["uid"]["type"] == "Role"}
    assert "cleaning" not in roles
    assert reactor.functions == ("start", "stop", "set-parameters", "maintenance-mode", "read-data")
    server_room = asset_slice(model, "server-room")
    assert {e["uid"]["id"] for e in server_room.entities if e["uid"]["type"] == "Person"} == {"anna", "farah"}


def test_a_disabled_person_stays_in_the_slice_marked_disabled():
    model = set_enabled(parse_access_yaml(EXAMPLE), "farah", False)
    entity = next(e for e in asset_slice(model, "server-room").entities if e["uid"]["id"] == "farah")
    assert entity["attrs"]["enabled"] is False


def test_slice_json_round_trip_is_deterministic_and_strict():
    original = asset_slice(parse_access_yaml(EXAMPLE), "mixer-2")
    text = json.dumps(original.to_dict(), sort_keys=True)
    again = AccessSlice.from_dict(json.loads(text))
    assert json.dumps(again.to_dict(), sort_keys=True) == text
    at_night = at("2026-12-01T03:00")
    assert Decider(again).decide("emil", "start", at_night) == Decider(original).decide(
        "emil", "start", at_night
    )
    data = original.to_dict()
    for broken, message in [
        ({**data, "extra": 1}, "unexpected fields"),
        ({k: v for k, v in data.items() if k != "policies"}, "missing fields"),
        ({**data, "functions": "start"}, "functions must be a list"),
        ({**data, "timezone": "Nowhere/Else"}, "unknown time zone"),
        ({**data, "entities": [{"attrs": {}}]}, "uid"),
        ({**data, "asset": ""}, "asset must be a non-empty string"),
    ]:
        with pytest.raises(ValueError, match=message):
            AccessSlice.from_dict(broken)


def test_a_slice_with_broken_policies_is_refused_at_load():
    data = asset_slice(parse_access_yaml(EXAMPLE), "erp").to_dict()
    with pytest.raises(ValueError):  # noqa: PT011 - cedarpy's message is its own
        Decider(AccessSlice.from_dict({**data, "policies": "permit (principal,"}))


def test_an_empty_policy_set_denies():
    data = asset_slice(parse_access_yaml(EXAMPLE), "erp").to_dict()
    decider = Decider(AccessSlice.from_dict({**data, "policies": ""}))
    decision = decider.decide("anna", "view", at("2026-11-30T10:00"))
    assert not decision.allowed
    assert decision.reason.startswith("no grant allows 'anna' to 'view' on 'erp'")


def test_a_slice_whose_timezone_names_a_directory_of_the_database_is_refused_as_a_value_error():
    """A bundle's slice is checked with ValueError (the gatekeeper refuses the bundle on it):
    ZoneInfo("Europe") raised IsADirectoryError, which escaped install_bundle."""
    data = {**asset_slice(parse_access_yaml(EXAMPLE), "mixer-2").to_dict(), "timezone": "Europe"}
    with pytest.raises(ValueError, match="unknown time zone"):
        AccessSlice.from_dict(data)
