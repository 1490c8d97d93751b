"""``config.toml`` on hostile input: a ConfigError naming the problem, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import event, given

from otward.config import load_settings, render_config
from otward.errors import ConfigError
from tests.fuzz.profile import fuzz_settings
from tests.fuzz.text import mutated_toml

pytestmark = pytest.mark.fuzz

VALID = [
    render_config(organization="ACME Chemicals", public_url="http://127.0.0.1:8080", database_url=None),
    render_config(
        organization='ACME "Chemicals" \\ Plant 7',
        public_url="https://pki.plant.example",
        database_url="postgresql+psycopg://otward@db.plant.example/otward",
        names=("pki.plant.example", "10.0.0.5"),
    )
    + "\n[profiles.tls-server]\nmax_validity_days = 90\ndefault_validity_days = 90\n"
    + "[audit]\nsign_events = 10\n",
]


@fuzz_settings()
@given(mutated_toml(VALID))
def test_hostile_config_files_are_config_errors(text):
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "config.toml").write_bytes(text)
        try:
            load_settings(Path(directory))
        except ConfigError:
            event("refused")
        else:
            event("accepted")
