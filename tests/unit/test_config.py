"""Database URLs: the password is split off for storage and masked wherever a URL is shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from otward.config import ConsoleSettings, mask_database_url, split_database_password
from otward.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "stored", "password"),
    [
        (
            "postgresql+psycopg://otward:pw@db.plant:5432/otward",
            "postgresql+psycopg://otward@db.plant:5432/otward",
            "pw",
        ),
        (
            "postgresql+psycopg://otward:p%40ss%2Fw@db/otward",
            "postgresql+psycopg://otward@db/otward",
            "p@ss/w",
        ),
        ("postgresql+psycopg://otward@db/otward", "postgresql+psycopg://otward@db/otward", None),
        ("sqlite:////var/lib/otward/otward.db", "sqlite:////var/lib/otward/otward.db", None),
    ],
)
def test_password_is_split_off(url, stored, password):
    assert split_database_password(url) == (stored, password)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://otward:p%40ss@db/otward", "postgresql+psycopg://otward:***@db/otward"),
        ("postgresql+psycopg://otward@db/otward", "postgresql+psycopg://otward@db/otward"),
        ("not a url with secret", "***"),
        ("weird://user:secret@[::1", "weird://***"),
    ],
)
def test_urls_are_shown_masked(url, shown):
    assert mask_database_url(url) == shown


def test_an_unparseable_url_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as info:
        split_database_password("no url: secret")
    assert "secret" not in info.value.message


def test_key_settings_name_what_a_pkcs11_backend_lacks(tmp_path):
    from otward.config import CONFIG_FILE, load_settings, render_config

    (tmp_path / CONFIG_FILE).write_text(
        render_config(organization="o", public_url="http://127.0.0.1:8080", database_url=None).replace(
            'backend = "file"', 'backend = "pkcs11"'
        )
    )
    with pytest.raises(ConfigError, match=r"keys\.pkcs11_module and keys\.pkcs11_token are required"):
        load_settings(tmp_path)


def test_write_key_settings_replaces_only_the_keys_table(tmp_path):
    from pathlib import Path

    from otward.config import CONFIG_FILE, KeySettings, load_settings, render_config, write_key_settings

    path = tmp_path / CONFIG_FILE
    text = render_config(organization="ACME", public_url="http://10.0.0.1:8080", database_url=None)
    path.write_text(text.replace("validity_hours = 168", "validity_hours = 100"))
    target = KeySettings(
        backend="pkcs11", pkcs11_module=Path("/usr/lib/x.so"), pkcs11_token="plant", pkcs11_pin_file=None
    )
    write_key_settings(tmp_path, target)
    settings = load_settings(tmp_path)
    assert settings.keys == target
    assert settings.crl.validity_hours == 100  # everything else as it was
    assert settings.organization == "ACME"
    assert path.read_text().count("[keys]") == 1
    # a config.toml of an older version has no [keys] table: one is added
    path.write_text('organization = "ACME"\n\n[crl]\nvalidity_hours = 100\n')
    write_key_settings(tmp_path, target)
    assert load_settings(tmp_path).keys == target
    assert load_settings(tmp_path).crl.validity_hours == 100


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("header_timeout = 0", r"server\.limits\.header_timeout: Input should be greater than 0"),
        (
            "max_header_bytes = 100",
            r"server\.limits\.max_header_bytes: Input should be greater",
        ),
        ("max_connections = 10\nmax_connections_per_source = 20", r"must not exceed max_connections"),
        ("max_conections = 10", r"server\.limits\.max_conections: Extra inputs are not permitted"),
    ],
    ids=["zero-timeout", "tiny-head", "per-source-over-total", "misspelt"],
)
def test_connection_limits_are_checked_at_load(tmp_path, table, message):
    from otward.config import CONFIG_FILE, load_settings, render_config

    rendered = render_config(organization="o", public_url="http://127.0.0.1:8080", database_url=None)
    (tmp_path / CONFIG_FILE).write_text(rendered + f"\n[server.limits]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path)


def test_connection_limits_default_and_load(tmp_path):
    from otward.config import CONFIG_FILE, load_settings, render_config

    rendered = render_config(organization="o", public_url="http://127.0.0.1:8080", database_url=None)
    (tmp_path / CONFIG_FILE).write_text(rendered)
    assert load_settings(tmp_path).server.limits.max_connections == 1000
    (tmp_path / CONFIG_FILE).write_text(rendered + "\n[server.limits]\nheader_timeout = 2.5\n")
    limits = load_settings(tmp_path).server.limits
    assert (limits.header_timeout, limits.max_connections_per_source) == (2.5, 64)


# --- found by the fuzz target (tests/fuzz/test_config.py) ---------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"organization = " + b"[" * 2000 + b"]" * 2000, "nested too deeply"),
        (b'organization = "ACME \xff"\n', "cannot read"),
    ],
    ids=["nested", "not-utf-8"],
)
def test_an_unreadable_config_file_is_a_config_error(tmp_path, content, match):
    """tomllib raised RecursionError on deep nesting; a file that is not UTF-8 raised
    UnicodeDecodeError (a ValueError, not an OSError)."""
    from otward.config import load_settings

    (tmp_path / "config.toml").write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_settings(tmp_path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"idle_timeout": "30s"}, "console.idle_timeout must be at least 60 s"),
        ({"absolute_timeout": "2d"}, "console.absolute_timeout must be at most 86400 s"),
        ({"idle_timeout": "soon"}, "console.idle_timeout must be a duration"),
        ({"idle_timeout": "9h"}, "console.idle_timeout must not exceed console.absolute_timeout"),
    ],
)
def test_console_timeouts_are_bounded(values: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ConsoleSettings(**values)
