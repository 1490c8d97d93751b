"""The gateway's Modbus policy file on hostile input: a ConfigError naming the file, never another
exception; and a policy that loads decides every request without raising."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given

from otward.core.modbus import FUNCTION_CODES
from otward.errors import ConfigError
from otward.gateway.proxy import load_policy
from tests.fuzz.profile import fuzz_settings
from tests.fuzz.text import mutated_toml
from tests.integration.gateway.conftest import POLICY

pytestmark = pytest.mark.fuzz

VALID = [
    POLICY,
    "[[role.maintenance]]\naddress_less = [7, 8, 17, 43]\n\n[[role.maintenance]]\nfunctions = [3, 6]\n"
    "addresses = [100, 199]\n",
]


@fuzz_settings()
@given(mutated_toml(VALID))
def test_hostile_policy_files_are_config_errors(text):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "policy.toml"
        path.write_bytes(text)
        try:
            policy = load_policy(path)
        except ConfigError as exc:
            event("refused" if str(path) in str(exc) else "refused without naming the file")
            return
    event("accepted")
    for role in policy.roles:
        for code in (*FUNCTION_CODES, 100):
            policy.decide(role, code, None)
            policy.decide(role, code, ())
