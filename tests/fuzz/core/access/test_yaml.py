"""The access-model YAML import on hostile documents: a ParseError naming the entry, never another
exception, also through the service that stores an import.

Documents are the example plant with lines dropped, repeated, swapped or rewritten, values of
other types, YAML's own hazards (aliases that multiply, deep flow nesting, explicit tags,
duplicate keys) and byte damage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from otward.core.access import parse_access_yaml
from otward.errors import OtwardError, ParseError
from tests.fuzz.mutate import byte_mutation
from tests.fuzz.profile import fuzz_settings

pytestmark = pytest.mark.fuzz

EXAMPLE = (Path(__file__).parents[4] / "examples" / "chemical-plant.yaml").read_text()

YAML_VALUES = st.sampled_from(
    [
        "", "~", "null", "true", "0", "-1", "1e400", ".nan", "99999999999999999999999", "[]", "{}",
        "[a, 1]", "{a: 1}", "2026-11-02", "2026-13-45", "24:00", "25:61", "'mon'", "!!binary aGk=",
        "!!python/object:os.system {}", "!!set {a, b}", "*undefined", "&a x", "\"\\x00\"", "|\n  text",
        "!!timestamp 2001-12-14", "!!float 1", "<<: {a: 1}", "? [complex, key]", "Europe/Atlantis",
    ]
)  # fmt: skip


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines)


@st.composite
def documents(draw: st.DrawFn) -> str:
    lines = EXAMPLE.split("\n")
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["drop", "repeat", "swap", "value", "indent", "deep", "bomb", "raw"]))
        index = draw(st.integers(0, len(lines) - 1))
        if kind == "drop":
            del lines[index]
        elif kind == "repeat":
            lines.insert(index, lines[index])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "value" and ":" in lines[index]:
            key = lines[index].split(":", 1)[0]
            lines[index] = f"{key}: {draw(YAML_VALUES)}"
        elif kind == "indent":
            lines[index] = draw(st.sampled_from(["", " ", "  ", "\t", "    - "])) + lines[index].lstrip()
        elif kind == "deep":
            depth = draw(st.sampled_from([10, 100, 400]))  # 400 is past the recursion limit
            opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
            lines.insert(index, f"deep: {opener * depth}1{closer * depth}")
        elif kind == "bomb":
            lines = [*_bomb(draw(st.integers(2, 8))).split("\n"), *lines]
        else:
            lines.insert(index, draw(st.text(max_size=40)))
    text = "\n".join(lines)
    if draw(st.integers(0, 5)) == 0:
        text = draw(byte_mutation(text.encode("utf-8", "surrogatepass"))).decode("utf-8", "replace")
    return text


@fuzz_settings(scale=0.5)  # a parse of the example plant alone takes 60 ms
@given(documents())
def test_hostile_access_documents_are_parse_errors(text):
    try:
        parse_access_yaml(text)
    except ParseError as exc:
        event(f"refused: {exc.rule}")
    except OtwardError as exc:  # the model's own checks: still a clear refusal
        event(f"refused: {type(exc).__name__} {exc.rule}")
    else:
        event("accepted")
