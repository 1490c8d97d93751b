"""``[notify]`` settings: what config.toml may say, and the errors that name the key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from otward.config import NotifySettings, SmtpSettings, WebhookSettings


def test_defaults():
    settings = NotifySettings()
    assert settings.interval_delta == timedelta(minutes=15)
    assert settings.flood_window == timedelta(minutes=15)
    assert settings.expiring_within_days == (30, 7)
    assert settings.ca_expiring_within_days == (90, 30, 7)
    assert settings.webhook == ()
    assert settings.smtp is None


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example/x?token=1", True),
        ("http://127.0.0.1:9000/x", True),
        ("http://[::1]/x", True),
        ("http://localhost/x", True),
        ("http://10.0.0.1/x", False),
        ("http://hooks.example/x", False),
        ("https:///x", False),
        ("https://hooks.example:99999/x", False),
        ("file:///etc/passwd", False),
    ],
)
def test_webhook_urls(url, ok):
    if ok:
        assert WebhookSettings(url=url, secret_file="/s").url == url
    else:
        with pytest.raises(ValidationError):
            WebhookSettings(url=url, secret_file="/s")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"interval": "soon"}, "interval must be a duration"),
        ({"interval": "5s"}, "interval must be at least 10 s"),
        ({"enroll_flood_window": "30s"}, "enroll_flood_window must be at least 60 s"),
        ({"expiring_within_days": []}, "must list days"),
        ({"expiring_within_days": [0]}, "must list days"),
        ({"retry_base_seconds": 100, "retry_max_seconds": 50}, "retry_max_seconds must not be less"),
    ],
)
def test_bad_values_say_what_is_wrong(values, message):
    with pytest.raises(ValidationError, match=message):
        NotifySettings(**values)


def test_marks_are_sorted_and_unique():
    assert NotifySettings(expiring_within_days=[7, 30, 7]).expiring_within_days == (30, 7)


_SMTP = {"host": "mail.example", "from": "otward@plant.example", "to": ["ops@plant.example"]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"to": []}, "at least 1"),
        ({"to": ["ops@plant.example\r\nBcc: x@y"]}, "not a plain e-mail address"),
        ({"from": "otward"}, "not a plain e-mail address"),
        ({"username": "u"}, "username and password_file go together"),
        ({"events": ["cert.expiring", "nope"]}, "unknown event 'nope'"),
        ({"events": []}, "at least one event"),
    ],
)
def test_smtp_settings_are_checked(changes, message):
    with pytest.raises(ValidationError, match=message):
        SmtpSettings.model_validate({**_SMTP, **changes})


def test_smtp_defaults_to_the_submission_port_and_every_event():
    smtp = SmtpSettings.model_validate(_SMTP)
    assert smtp.port == 587
    assert smtp.sender == "otward@plant.example"
    assert "key.failed" in smtp.events
