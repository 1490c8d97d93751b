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
