"""TLS context, policy file, identity and CLI parsing of the gateway."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward import gateway as gateway_package
from otward.cli.common import parse_host_port
from otward.core.extensions import MODBUS_ROLE_OID, modbus_role_extension
from otward.errors import ConfigError
from otward.gateway.identity import peer_identity
from otward.gateway.proxy import load_policy
from otward.gateway.tls import TLS12_CIPHERS, load_trusted_certificates, server_context
from tests.conftest import write_key


def test_exports_exist():
    assert all(hasattr(gateway_package, name) for name in gateway_package.__all__)


def _self_signed(tmp_path, *extensions: x509.ExtensionType | x509.UnrecognizedExtension, cn="plc-1"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    (tmp_path / "c.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    write_key(tmp_path / "k.pem", key)
    return certificate


def test_server_context_is_mutual_tls_12_plus_aead_only(tmp_path):
    _self_signed(tmp_path, x509.BasicConstraints(ca=True, path_length=None))
    context = server_context(tmp_path / "c.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.options & ssl.OP_NO_TICKET
    names = [c["name"] for c in context.get_ciphers()]
    assert names
    for cipher in context.get_ciphers():
        assert cipher["aead"], cipher["name"]
        if cipher["protocol"] == "TLSv1.2":
            assert cipher["name"].startswith("ECDHE-")
    assert TLS12_CIPHERS == "ECDHE+AESGCM:ECDHE+CHACHA20"


def test_unusable_files_are_config_errors(tmp_path):
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ConfigError, match="not a readable PEM certificate file"):
        load_trusted_certificates(tmp_path / "empty.pem")
    with pytest.raises(ConfigError, match="--trust"):
        load_trusted_certificates(tmp_path / "missing.pem")
    _self_signed(tmp_path)
    with pytest.raises(ConfigError, match="--cert"):
        server_context(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "k.pem")


def test_a_key_others_can_read_is_refused(tmp_path):
    _self_signed(tmp_path, x509.BasicConstraints(ca=True, path_length=None))
    (tmp_path / "k.pem").chmod(0o644)
    with pytest.raises(ConfigError, match=r"readable by group or others \(mode 0644\); run chmod 600"):
        server_context(tmp_path / "c.pem", tmp_path / "c.pem", tmp_path / "k.pem")


def test_policy_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "policy.toml"
    path.write_text("[[role.operator]]\nfunctions = [1, 200]\naddresses = [0, 10]\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(path) in info.value.message
    assert "role.operator[0].functions: 200 is not a function code in 1..127" in info.value.message
    path.write_text("[[role.operator]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_identity_and_role_come_from_the_der(tmp_path):
    certificate = _self_signed(
        tmp_path,
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:example:plc-1")]),
        modbus_role_extension("operator"),
    )
    peer = peer_identity(certificate.public_bytes(serialization.Encoding.DER), [])
    assert (peer.common_name, peer.uris, peer.role, peer.role_error) == (
        "plc-1",
        ("urn:example:plc-1",),
        "operator",
        None,
    )
    assert peer.matches(frozenset({"urn:example:plc-1"}))
    assert peer.matches(frozenset({"plc-1"}))
    assert not peer.matches(frozenset({"plc-2"}))


def test_a_role_written_as_raw_bytes_is_refused(tmp_path):
    certificate = _self_signed(tmp_path, x509.UnrecognizedExtension(MODBUS_ROLE_OID, b"engineer"))
    peer = peer_identity(certificate.public_bytes(serialization.Encoding.DER), [])
    assert peer.role is None
    assert peer.role_error is not None
    assert "UTF8String" in peer.role_error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:802", ("127.0.0.1", 802)),
        ("[::1]:8802", ("::1", 8802)),
        ("plc.local:502", ("plc.local", 502)),
    ],
)
def test_host_port(text, expected):
    assert parse_host_port(text, "--listen") == expected


@pytest.mark.parametrize("text", ["802", ":802", "host:", "host:0", "host:65536", "host:x"])
def test_bad_host_port(text):
    with pytest.raises(ConfigError, match="--upstream"):
        parse_host_port(text, "--upstream")


def test_without_a_trail_file_audit_events_go_to_the_log(caplog):
    """A gateway started without --audit-file is still audited: one JSON line per event."""
    import json
    import logging

    from otward.core.audit import EventType, Outcome
    from otward.gateway.audit import AuditWriter

    writer = AuditWriter(None)
    with caplog.at_level(logging.INFO, logger="otward.gateway.audit"):
        writer.emit(
            EventType.GATEWAY_DENIED,
            "hmi-1",
            Outcome.FAILURE,
            reason="function 6 not granted to role operator",
            source="127.0.0.1:40000",
            details={"role": "operator", "function": "6", "addresses": "10-10"},
        )
    writer.close()
    [record] = [r for r in caplog.records if r.name == "otward.gateway.audit"]
    event = json.loads(record.getMessage())
    assert event["type"] == "gateway.denied"
    assert event["subject"] == "hmi-1"
    assert event["details"]["role"] == "operator"


@pytest.mark.parametrize(
    "text",
    ["x = " + "[" * 2000 + "]" * 2000, "x = " + "{ a = " * 2000 + "1" + " }" * 2000],
    ids=["arrays", "inline-tables"],
)
def test_a_policy_nested_too_deeply_is_a_config_error(tmp_path, text):
    """Found by tests/fuzz/gateway/test_policy.py: tomllib raised RecursionError."""
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="nested too deeply") as info:
        load_policy(path)
    assert str(path) in str(info.value)
