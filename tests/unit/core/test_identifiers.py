"""The identifier grammars match whole values: no trailing newline slips through ``$``."""

from __future__ import annotations

import pytest

from otward.core import identifiers
from otward.core.access.model import validate_identifier
from otward.core.extensions import validate_role_name
from otward.core.identifiers import ACCESS_ID, CA_NAME, CREDENTIAL_ID, DEVICE_ID, EDGE_ID, OWNER, Grammar
from otward.core.names import is_valid_dns_name
from otward.errors import ParseError, PolicyViolationError

GRAMMARS = [g for g in vars(identifiers).values() if isinstance(g, Grammar)]


@pytest.mark.parametrize(
    ("grammar", "good"),
    [
        (DEVICE_ID, "PLC-0042.line_2"),
        (OWNER, "acme-chemicals"),
        (CA_NAME, "issuing-2"),
        (ACCESS_ID, "reactor-1"),
        (EDGE_ID, "door:north@site"),
        (CREDENTIAL_ID, "0123456789abcdef0123456789abcdef"),
    ],
)
def test_good_values_pass(grammar, good):
    assert grammar.is_valid(good)


@pytest.mark.parametrize("grammar", GRAMMARS, ids=lambda g: g.name)
@pytest.mark.parametrize("suffix", ["\n", "\r", "\x00", " ", "\u2028", "\x85", "\t"])
def test_no_grammar_admits_control_characters_or_spaces(grammar, suffix):
    base = "0123456789abcdef0123456789abcdef" if grammar is CREDENTIAL_ID else "plc1"
    assert grammar.is_valid(base)
    assert not grammar.is_valid(base + suffix)
    assert not grammar.is_valid(suffix + base)


@pytest.mark.parametrize("value", [None, 42, b"plc1", ""])
def test_non_strings_and_empty_values_are_invalid(value):
    assert not DEVICE_ID.is_valid(value)


def test_validators_built_on_regexes_refuse_a_trailing_newline():
    with pytest.raises(ParseError):
        validate_identifier("operator\n", "roles")
    with pytest.raises(PolicyViolationError):
        validate_role_name("Operator\n")
    assert not is_valid_dns_name("plc.plant.example\n")
