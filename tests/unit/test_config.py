"""Database URLs: the password is split off for storage and masked wherever a URL is shown."""

from __future__ import annotations

import pytest

from otward.config import mask_database_url, split_database_password
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
