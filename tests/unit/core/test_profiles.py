from __future__ import annotations

import pytest

from otward.core.keys import KeyType
from otward.core.profiles import BUILTIN_PROFILES, apply_overrides
from otward.errors import ConfigError


def test_override_tightens_a_profile():
    profiles = apply_overrides(
        BUILTIN_PROFILES,
        {"tls-server": {"max_validity_days": 90, "default_validity_days": 30, "key_types": ["ec-p256"]}},
    )
    assert profiles["tls-server"].max_validity_days == 90
    assert profiles["tls-server"].key_types == frozenset({KeyType.EC_P256})
    assert BUILTIN_PROFILES["tls-server"].max_validity_days == 398  # the built-in stays


def test_a_site_can_freeze_the_names_a_device_renews_with():
    assert BUILTIN_PROFILES["device"].renewal_may_change == frozenset({"dns", "ip"})
    assert BUILTIN_PROFILES["tls-client"].renewal_may_change == frozenset()
    frozen = apply_overrides(BUILTIN_PROFILES, {"device": {"renewal_may_change": []}})
    assert frozen["device"].renewal_may_change == frozenset()
    # narrowing san_allowed alone stays valid: a kind the profile refuses cannot change anyway
    assert apply_overrides(BUILTIN_PROFILES, {"device": {"san_allowed": ["dns"]}})["device"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nope": {}}, "profiles.nope: no such profile"),
        (
            {"tls-server": {"extended_key_usage": []}},
            "profiles.tls-server.extended_key_usage cannot be overridden",
        ),
        (
            {"tls-server": {"key_types": ["rsa-1024"]}},
            "profiles.tls-server.key_types has an unknown key type",
        ),
        (
            {"tls-server": {"max_validity_days": -1}},
            "profiles.tls-server.max_validity_days must be a positive",
        ),
        ({"tls-server": {"default_validity_days": 500}}, "default_validity_days must be between"),
        ({"tls-server": {"max_validity_days": 5000, "default_validity_days": 10}}, "must not exceed 3650"),
        ({"device": {"subject_allowed": "CN"}}, "must be a list"),
        ({"device": {"subject_allowed": ["CN", "X"]}}, "unknown attributes"),
        ({"device": {"key_types": []}}, "key_types must not be empty"),
        ({"device": {"san_required_any": ["uri"]}}, "san_required_any must be a subset"),
        ({"device": {"max_sans": 0}}, "profiles.device.max_sans must be a positive"),
        ({"device": {"max_sans": 5000}}, "profiles.device.max_sans must be between 1 and 1024"),
        ({"device": {"renewal_may_change": "dns"}}, "profiles.device.renewal_may_change must be a list"),
        ({"device": {"renewal_may_change": ["cn"]}}, "renewal_may_change has unknown kinds"),
    ],
)
def test_bad_overrides_name_the_dotted_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(BUILTIN_PROFILES, overrides)
