"""Mutations of text documents (TOML, YAML): lines dropped, repeated, swapped or rewritten, values
replaced by other types, deep nesting, and byte damage (invalid UTF-8, NUL, cuts)."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from tests.fuzz.mutate import byte_mutation

TOML_VALUES = st.sampled_from(
    [
        '""', '"x"', "0", "-1", "1e400", "nan", "inf", "99999999999999999999999999", "true", "[]",
        "[1, 2]", '["a", 1]', "{}", "{ a = 1 }", "1979-05-27T07:32:00Z", "07:32:00", "0x7fffffff",
        "'''\nmulti\n'''", '"\\u0000"', '"\\ud800"', "[[]]", "1_000", "+0.0",
    ]
)  # fmt: skip


def deep_toml(depth: int, kind: str) -> str:
    if kind == "array":
        return "x = " + "[" * depth + "1" + "]" * depth + "\n"
    if kind == "inline":
        return "x = " + "{ a = " * depth + "1" + " }" * depth + "\n"
    return "[" + ".".join(["a"] * depth) + "]\nx = 1\n"  # dotted table names


@st.composite
def mutated_toml(draw: st.DrawFn, valid: Sequence[str]) -> bytes:
    lines = draw(st.sampled_from(list(valid))).split("\n")
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["drop", "repeat", "swap", "value", "key", "deep", "raw"]))
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "drop" and lines:
            del lines[index]
        elif kind == "repeat" and lines:
            lines.insert(index, lines[index])
        elif kind == "swap" and len(lines) > 1:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "value" and lines and "=" in lines[index]:
            key = lines[index].split("=", 1)[0]
            lines[index] = f"{key}= {draw(TOML_VALUES)}"
        elif kind == "key":
            key = draw(st.sampled_from(["unknown", "role", "server", "crl", "a.b", '"quoted"', "x"]))
            lines.insert(index, f"{key} = {draw(TOML_VALUES)}")
        elif kind == "deep":
            depth = draw(st.sampled_from([10, 100, 1_000, 5_000]))
            lines.insert(index, deep_toml(depth, draw(st.sampled_from(["array", "inline", "dotted"]))))
        else:
            lines.insert(index, draw(st.text(max_size=40)))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        data = draw(byte_mutation(data))
    return data
