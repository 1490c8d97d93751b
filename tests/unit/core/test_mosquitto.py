"""Mosquitto listener and ACL rendering: values in, configuration text out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.core.mosquitto import (
    AclPlan,
    ListenerConfig,
    MqttDevice,
    device_identity,
    plan_acl,
    render_acl,
    render_listener_config,
)
from otward.errors import InvalidRequestError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
_KEY = ec.generate_private_key(ec.SECP256R1())


def _certificate(cn: str | None, *uris: str, dns: tuple[str, ...] = ()) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(_KEY, hashes.SHA256())


def _listener(**changes: object) -> ListenerConfig:
    values: dict[str, object] = {
        "port": 8883,
        "host": "127.0.0.1",
        "cafile": "/etc/otward/mqtt/ca.pem",
        "certfile": "/etc/otward/mqtt/broker.pem",
        "keyfile": "/etc/otward/mqtt/broker.key",
        "crlfile": "/etc/otward/mqtt/crl.pem",
        "acl_file": "/etc/otward/mqtt/acl",
    }
    values.update(changes)
    return ListenerConfig(**values)  # type: ignore[arg-type]


def test_topic_filter_is_the_devices_own_subtree():
    assert MqttDevice("acme", "plc-7").topic_filter == "otward/acme/plc-7/#"


@pytest.mark.parametrize(
    ("owner", "device_id"),
    [
        ("acme", "plc/7"),
        ("acme", "+"),
        ("acme", "plc#"),
        ("acme", "plc 7"),
        ("acme", "%u"),
        ("acme", ""),
        ("ACME", "plc-7"),
        ("ac/me", "plc-7"),
        ("acme", "x" * 65),
    ],
    ids=["slash", "plus", "hash", "space", "percent", "empty", "upper-owner", "owner-slash", "too-long"],
)
def test_device_names_that_could_widen_a_topic_filter_are_refused(owner, device_id):
    with pytest.raises(InvalidRequestError):
        MqttDevice(owner, device_id)


def test_device_identity_reads_owner_and_id_from_the_device_uri():
    certificate = _certificate("plc-7", "urn:otward:device:acme:plc-7", dns=("plc-7.example",))
    assert device_identity(certificate) == MqttDevice("acme", "plc-7")


@pytest.mark.parametrize(
    ("cn", "uris"),
    [
        ("plc-7", ()),
        ("plc-8", ("urn:otward:device:acme:plc-7",)),
        (None, ("urn:otward:device:acme:plc-7",)),
        ("plc-7", ("urn:otward:device:acme:plc-7", "urn:otward:device:rival:plc-7")),
        ("plc-7", ("urn:example:plc-7",)),
        ("plc/7", ("urn:otward:device:acme:plc/7",)),
    ],
    ids=["no-san", "cn-differs", "no-cn", "two-device-uris", "foreign-uri", "unsafe-id"],
)
def test_device_identity_is_none_for_anything_else(cn, uris):
    assert device_identity(_certificate(cn, *uris, dns=("x.example",))) is None


def test_device_identity_needs_a_san():
    assert device_identity(_certificate("plc-7")) is None


def test_acl_plan_sorts_deduplicates_and_leaves_out_ids_two_owners_claim():
    plan = plan_acl(
        [
            MqttDevice("acme", "plc-2"),
            MqttDevice("acme", "plc-1"),
            MqttDevice("acme", "plc-1"),
            MqttDevice("acme", "shared"),
            MqttDevice("rival", "shared"),
        ]
    )
    assert plan == AclPlan(
        devices=(MqttDevice("acme", "plc-1"), MqttDevice("acme", "plc-2")), conflicts=("shared",)
    )


def test_acl_has_one_user_block_per_device_and_no_pattern():
    text = render_acl(
        AclPlan(devices=(MqttDevice("acme", "plc-1"),), conflicts=("shared",)), generated_at=NOW
    )
    assert "user plc-1\ntopic readwrite otward/acme/plc-1/#\n" in text
    assert "# left out: device id 'shared'" in text
    assert "pattern" not in text
    assert [line for line in text.splitlines() if line.startswith("topic")] == [
        "topic readwrite otward/acme/plc-1/#"
    ]


def test_empty_acl_grants_nothing():
    text = render_acl(AclPlan(devices=(), conflicts=()), generated_at=NOW)
    assert all(line.startswith("#") for line in text.splitlines() if line)


def test_listener_config_is_mutual_tls_with_crl_and_acl():
    lines = render_listener_config(_listener(), generated_at=NOW).splitlines()
    for expected in (
        "allow_anonymous false",
        "acl_file /etc/otward/mqtt/acl",
        "listener 8883 127.0.0.1",
        "cafile /etc/otward/mqtt/ca.pem",
        "certfile /etc/otward/mqtt/broker.pem",
        "keyfile /etc/otward/mqtt/broker.key",
        "crlfile /etc/otward/mqtt/crl.pem",
        "require_certificate true",
        "use_identity_as_username true",
        "tls_version tlsv1.2",
        "ciphers ECDHE+AESGCM:ECDHE+CHACHA20",
    ):
        assert expected in lines
    # The global options come before the listener line.
    assert lines.index("allow_anonymous false") < lines.index("listener 8883 127.0.0.1")


@pytest.mark.parametrize(
    "changes",
    [
        {"port": 0},
        {"port": 70000},
        {"host": ""},
        {"host": "127.0.0.1 8884"},
        {"tls_version": "tlsv1.1"},
        {"cafile": "/tmp/my certs/ca.pem"},
        {"keyfile": "/tmp/#/broker.key"},
        {"acl_file": ""},
    ],
    ids=["port-0", "port-high", "no-host", "host-space", "tls-1.1", "path-space", "path-hash", "no-acl"],
)
def test_listener_refuses_values_mosquitto_would_misread(changes):
    with pytest.raises(InvalidRequestError):
        _listener(**changes)
