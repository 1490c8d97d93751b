"""The pure part of notifications: what is due, the payload, the signature, the backoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from otward.core.notifications import (
    PAYLOAD_VERSION,
    Condition,
    ExpiringCertificate,
    NotifyEvent,
    ca_expiry_conditions,
    decide,
    encode_payload,
    expiry_conditions,
    flood_condition,
    is_loopback_host,
    probe_notification,
    render_email,
    retry_delay,
    signature_header,
    verify_signature,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _condition(
    key: str = "crl.failed/issuing", *marks: str, event: NotifyEvent = NotifyEvent.CRL_FAILED
) -> Condition:
    return Condition(event, key, frozenset(marks or ("expired",)), f"summary of {key}", {"ca": "issuing"})


def _cert(serial: str, days: float, ca: str = "issuing", owner: str | None = None) -> ExpiringCertificate:
    return ExpiringCertificate(serial, ca, owner, f"CN={serial}", NOW + timedelta(days=days))


# --- decide -----------------------------------------------------------------------------------


def test_a_new_condition_is_notified_and_its_marks_stored():
    decision = decide([_condition()], {}, {NotifyEvent.CRL_FAILED}, NOW)
    assert [n.key for n in decision.notifications] == ["crl.failed/issuing"]
    assert decision.store == {"crl.failed/issuing": (NotifyEvent.CRL_FAILED, frozenset({"expired"}))}
    assert decision.forget == ()
    notification = decision.notifications[0]
    assert notification.time == NOW
    assert notification.summary == "summary of crl.failed/issuing"
    assert len(notification.id) == 32


def test_the_same_marks_are_not_notified_again_nor_stored_again():
    announced = {"crl.failed/issuing": (NotifyEvent.CRL_FAILED, frozenset({"expired"}))}
    decision = decide([_condition()], announced, {NotifyEvent.CRL_FAILED}, NOW + timedelta(minutes=15))
    assert decision.notifications == ()
    assert decision.store == {}
    assert decision.forget == ()


def test_a_new_mark_notifies_again_and_a_dropped_one_does_not():
    announced = {"k": (NotifyEvent.CERT_EXPIRING, frozenset({"a:30d", "b:30d"}))}
    dropped = decide([_condition("k", "a:30d", event=NotifyEvent.CERT_EXPIRING)], announced, set(), NOW)
    assert dropped.notifications == ()
    assert dropped.store == {"k": (NotifyEvent.CERT_EXPIRING, frozenset({"a:30d"}))}
    added = decide([_condition("k", "a:30d", "a:7d", event=NotifyEvent.CERT_EXPIRING)], announced, set(), NOW)
    assert [n.key for n in added.notifications] == ["k"]


def test_a_cleared_condition_is_forgotten_only_when_its_check_ran():
    announced = {
        "crl.failed/issuing": (NotifyEvent.CRL_FAILED, frozenset({"expired"})),
        "audit.failed": (NotifyEvent.AUDIT_FAILED, frozenset({"broken:3"})),
    }
    decision = decide([], announced, {NotifyEvent.CRL_FAILED}, NOW)
    assert decision.forget == ("crl.failed/issuing",)
    again = decide([_condition()], {}, {NotifyEvent.CRL_FAILED}, NOW + timedelta(hours=1))
    assert len(again.notifications) == 1  # back after it cleared: announced again


def test_ids_are_stable_for_the_same_decision_and_differ_otherwise():
    first = decide([_condition()], {}, set(), NOW).notifications[0].id
    assert decide([_condition()], {}, set(), NOW).notifications[0].id == first
    assert decide([_condition()], {}, set(), NOW + timedelta(seconds=1)).notifications[0].id != first
    assert decide([_condition("crl.failed/other")], {}, set(), NOW).notifications[0].id != first


def test_a_key_found_twice_is_a_bug_in_a_check():
    with pytest.raises(ValueError, match="twice"):
        decide([_condition(), _condition()], {}, set(), NOW)


# --- conditions -------------------------------------------------------------------------------


def test_expiring_certificates_make_one_condition_per_ca_and_owner():
    certificates = [
        _cert("aa", 20, owner="line-a"),
        _cert("bb", 5, owner="line-a"),
        _cert("cc", 25, owner="line-b"),
        _cert("dd", 6, ca="other"),
        _cert("ee", 45, owner="line-a"),  # no mark crossed yet
    ]
    conditions = expiry_conditions(certificates, NOW, (30, 7))
    assert [c.key for c in conditions] == [
        "cert.expiring/issuing/line-a",
        "cert.expiring/issuing/line-b",
        "cert.expiring/other/",
    ]
    line_a = conditions[0]
    assert line_a.event is NotifyEvent.CERT_EXPIRING
    assert line_a.marks == {"aa:30d", "bb:30d", "bb:7d"}
    listed = line_a.details["certificates"]
    assert isinstance(listed, list)
    assert [c["serial"] for c in listed] == ["bb", "aa"]  # type: ignore[index]
    assert [c["mark"] for c in listed] == ["7d", "30d"]  # type: ignore[index]
    assert line_a.summary.startswith("2 certificates of CA 'issuing' (owner 'line-a') expire within 30 days")
    assert "no owner" in conditions[2].summary


def test_ca_expiry_marks_90_30_7_and_expired():
    conditions = ca_expiry_conditions(
        [
            ("root", NOW + timedelta(days=400)),
            ("issuing", NOW + timedelta(days=29)),
            ("old", NOW - timedelta(days=1)),
        ],
        NOW,
    )
    by_key = {c.key: c for c in conditions}
    assert set(by_key) == {"ca.expiring/issuing", "ca.expiring/old"}
    assert by_key["ca.expiring/issuing"].marks == {"90d", "30d"}
    assert by_key["ca.expiring/old"].marks == {"90d", "30d", "7d", "expired"}
    assert "expired" in by_key["ca.expiring/old"].summary


@pytest.mark.parametrize(
    ("count", "flood"), [(0, False), (10, False), (11, True)], ids=["none", "at", "above"]
)
def test_an_enrollment_flood_is_above_the_threshold(count, flood):
    condition = flood_condition("refused", count, 10, NOW, timedelta(minutes=15))
    assert (condition is not None) is flood


def test_a_flood_is_announced_once_per_window():
    window = timedelta(minutes=15)
    first = flood_condition("refused", 50, 10, NOW + timedelta(minutes=1), window)
    same = flood_condition("refused", 80, 10, NOW + timedelta(minutes=14), window)
    later = flood_condition("refused", 80, 10, NOW + timedelta(minutes=16), window)
    assert first is not None
    assert same is not None
    assert later is not None
    assert first.marks == same.marks != later.marks
    assert first.key == later.key == "enroll.flood/refused"


# --- payload, e-mail and signature ------------------------------------------------------------


def test_the_payload_follows_the_documented_schema():
    notification = decide([_condition()], {}, set(), NOW).notifications[0]
    body = encode_payload(notification, "ACME Chemicals")
    decoded = json.loads(body)
    assert decoded == {
        "version": PAYLOAD_VERSION,
        "id": notification.id,
        "type": "crl.failed",
        "time": "2026-12-07T12:00:00Z",
        "installation": "ACME Chemicals",
        "summary": "summary of crl.failed/issuing",
        "details": {"ca": "issuing"},
    }
    assert body == encode_payload(notification, "ACME Chemicals")  # byte-identical on every retry


def test_the_email_names_installation_event_and_id():
    notification = probe_notification(NOW, "n1")
    subject, text = render_email(json.loads(encode_payload(notification, "Plant\r\nBcc: x@y")))
    assert subject.startswith("[otward Plant Bcc: x@y] test:")  # no line break reaches a header
    assert "\n" not in subject
    assert notification.id in text


def test_the_signature_matches_openssl():
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac s3cret
    expected = "1698a50bc74d1ff1db85c4e0a5297c2ad9fdba245d5737cdb789e4cc6e098940"
    assert signature_header(b"s3cret", 1700000000, b'{"a":1}') == "sha256=" + expected


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "ok"),
    [
        (b"s3cret", "1700000000", b'{"a":1}', 1700000010, True),
        (b"other", "1700000000", b'{"a":1}', 1700000010, False),
        (b"s3cret", "1700000000", b'{"a":2}', 1700000010, False),
        (b"s3cret", "1700000000", b'{"a":1}', 1700000400, False),  # replayed after the tolerance
        (b"s3cret", "1700000001", b'{"a":1}', 1700000010, False),  # timestamp changed
        (b"s3cret", "-1", b'{"a":1}', 1700000010, False),
        (b"s3cret", "", b'{"a":1}', 1700000010, False),
    ],
    ids=["good", "wrong-secret", "body-changed", "too-old", "timestamp-changed", "negative", "empty"],
)
def test_a_receiver_verifies_secret_body_and_timestamp(secret, timestamp, body, now, ok):
    signature = signature_header(b"s3cret", 1700000000, b'{"a":1}')
    assert verify_signature(secret, timestamp, body, signature, now=now) is ok


def test_a_malformed_signature_header_is_refused_without_raising():
    assert verify_signature(b"s", "1700000000", b"{}", "sha256=\udcff", now=1700000000) is False


# --- backoff and addresses --------------------------------------------------------------------


def test_retries_back_off_exponentially_within_the_cap():
    lows = [retry_delay(n, base=30, cap=3600, jitter=0.0).total_seconds() for n in range(1, 10)]
    highs = [retry_delay(n, base=30, cap=3600, jitter=0.999999).total_seconds() for n in range(1, 10)]
    assert lows[:4] == [15, 30, 60, 120]
    assert all(h <= 3600 for h in highs)
    assert highs[-1] == pytest.approx(3600, rel=1e-5)
    assert lows[-1] == 1800
    assert retry_delay(1000, base=30, cap=3600, jitter=0.5).total_seconds() == 2700


@pytest.mark.parametrize(("attempt", "jitter"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_backoff_arguments_are_checked(attempt, jitter):
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(attempt, base=1, cap=2, jitter=jitter)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("10.0.0.1", False),
        ("192.0.2.7", False),
        ("localhost.example", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback


def test_the_documented_receiver_accepts_what_otward_signs_and_nothing_else():
    """The Python example of docs/notifications.md, run as written (its secret file replaced)."""
    import io
    import time
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "notifications.md").read_text()
    snippet = text.split("### Verifying a webhook", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {"open": lambda *_: io.BytesIO(b"receiver-secret\n")}
    exec(compile(snippet, "docs/notifications.md", "exec"), namespace)  # noqa: S102 - our own documentation
    accept: Any = namespace["accept"]
    body = encode_payload(probe_notification(NOW, "doc"), "ACME")
    now = int(time.time())

    def headers(timestamp: int, signed: bytes = body, secret: bytes = b"receiver-secret") -> dict[str, str]:
        return {
            "X-Otward-Timestamp": str(timestamp),
            "X-Otward-Signature": signature_header(secret, timestamp, signed),
            "Idempotency-Key": "abc",
        }

    assert accept(headers(now), body) is True
    assert accept(headers(now), body) is True  # a duplicate: acknowledged
    assert accept(headers(now, secret=b"other"), body) is False
    assert accept(headers(now), body + b" ") is False
    assert accept(headers(now - 600), body) is False
