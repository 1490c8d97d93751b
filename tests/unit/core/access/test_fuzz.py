"""The YAML access format on hostile input: only otward errors, never a crash."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from otward.core.access import parse_access_yaml
from otward.errors import OtwardError

EXAMPLE = yaml.safe_load((Path(__file__).parents[4] / "examples" / "chemical-plant.yaml").read_text())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3000),
    st.sampled_from(
        ["", "mon", "24:00", "08:00", "own-shift", "area", "robot", "2026-11-02", "Europe/Berlin"]
    ),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | scalars, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_otward_errors(text):
    try:
        parse_access_yaml(text)
    except OtwardError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    section=st.sampled_from(["site", "timezone", "schedules", "assets", "roles", "grants", "people"]),
    value=values,
)
def test_a_mangled_section_of_the_example_raises_only_otward_errors(section, value):
    data = {**EXAMPLE, section: value}
    try:
        parse_access_yaml(yaml.safe_dump(data))
    except OtwardError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    where=st.sampled_from(
        [
            ("people", 7, "valid"),
            ("people", 2, "shift"),
            ("people", 0, "roles"),
            ("people", 9, "kind"),
            ("schedules", "night-shift", "to"),
            ("schedules", "night-shift", "days"),
            ("assets", "reactor-1", "functions"),
            ("assets", "control-room", "inside"),
            ("roles", "auditor", "external"),
        ]
    ),
    value=values,
)
def test_a_mangled_field_raises_only_otward_errors(where, value):
    data = yaml.safe_load(yaml.safe_dump(EXAMPLE))
    section, key, field = where
    data[section][key][field] = value
    try:
        parse_access_yaml(yaml.safe_dump(data))
    except OtwardError:
        pass
