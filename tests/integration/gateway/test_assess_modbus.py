"""``otward assess modbus`` against a real pymodbus server and a real otward gateway in front of it
(issue 15 item 3): plaintext Modbus is high, the gateway's TLS port is reported as protected."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import free_port
from tests.integration.assess.conftest import assess
from tests.integration.gateway.conftest import start_gateway


def test_plaintext_modbus_is_high_and_only_read(modbus_upstream):
    result = assess("modbus", f"127.0.0.1:{modbus_upstream.port}")
    assert result.exit_code == 1
    assert result.checks() == {"modbus.plaintext": "high"}
    assert "otward gateway" in result.document["findings"][0]["recommendation"]
    assert modbus_upstream.requests == [3]  # one read of holding registers, never a write


def test_the_gateway_port_is_protected(gateway_pki, modbus_upstream):
    running = start_gateway(gateway_pki, modbus_upstream.port)
    try:
        result = assess("modbus", f"127.0.0.1:{running.port}")
    finally:
        running.stop()
    assert result.exit_code == 0
    assert result.checks() == {"modbus.tls": "info"}
    assert "client certificate required" in result.evidence("modbus.tls")
    assert modbus_upstream.requests == []  # nothing got through the gateway


def test_targets_with_a_dead_one(modbus_upstream, tmp_path: Path):
    dead = free_port()
    targets = tmp_path / "targets.txt"
    targets.write_text(f"# cell 4\n127.0.0.1:{modbus_upstream.port}\n127.0.0.1:{dead}  # decommissioned?\n")
    result = assess("modbus", "--targets", str(targets), "--timeout", "5")
    assert result.exit_code == 1
    assert result.checks(f"127.0.0.1:{modbus_upstream.port}") == {"modbus.plaintext": "high"}
    assert result.checks(f"127.0.0.1:{dead}") == {"modbus.unreachable": "medium"}


def test_the_default_port_is_502():
    from otward.core.assess.targets import parse_target

    assert parse_target("plc-1", "modbus").label == "plc-1:502"


def test_assess_tls_on_a_plaintext_port_says_so(modbus_upstream):
    result = assess("tls", f"127.0.0.1:{modbus_upstream.port}", "--timeout", "10")
    assert result.exit_code == 0
    assert result.checks() == {"tls.handshake.failed": "medium", "tls.scan.not_testable": "info"}


def test_an_accepted_risk_is_still_reported_but_passes_the_gate(modbus_upstream, tmp_path: Path):
    waivers = tmp_path / "accept.toml"
    waivers.write_text(
        f'[[accept]]\ncheck = "modbus.plaintext"\ntarget = "127.0.0.1:{modbus_upstream.port}"\n'
        'reason = "isolated test cell"\n'
    )
    result = assess("modbus", f"127.0.0.1:{modbus_upstream.port}", "--accept", str(waivers))
    assert result.exit_code == 0
    assert result.document["findings"][0]["accepted"] == "isolated test cell"
