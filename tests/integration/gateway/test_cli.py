"""``otward gateway`` on the command line: clear errors and exit code 1 for bad configuration."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import free_port
from tests.integration.gateway.conftest import GatewayPki

pytestmark = pytest.mark.integration


def run_gateway(
    gateway_pki: GatewayPki, *extra: str, listen: str | None = None
) -> subprocess.CompletedProcess[str]:
    listen = listen or f"127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "otward", "gateway", "--listen", listen, "--upstream", "127.0.0.1:1",
        "--trust", str(gateway_pki.trust), "--cert", str(gateway_pki.server.certificate),
        "--key", str(gateway_pki.server.key), *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_bad_policy_is_named(gateway_pki, tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text("[[role.operator]]\nfunctions = [3]\naddresses = [10, 5]\n")
    result = run_gateway(gateway_pki, "--modbus-policy", str(policy))
    assert result.returncode == 1
    assert "role.operator[0].addresses: [10, 5] is not a range within 0..65535" in result.stderr


def test_a_policy_file_that_never_ends_is_refused_without_being_read_whole(gateway_pki):
    result = run_gateway(gateway_pki, "--modbus-policy", "/dev/zero")
    assert result.returncode == 1
    assert "--modbus-policy /dev/zero is larger than 1 MiB" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_a_clear_error(gateway_pki):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_gateway(gateway_pki, listen=f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"--listen 127.0.0.1:{port}: cannot listen" in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--allow-identity", "x", "--modbus-policy", "{policy}"), "--allow-identity applies to tunnel mode"),
        (("--loop", "trio"), "--loop 'trio'"),
        (("--crl-stale", "maybe"), "Invalid value for '--crl-stale'"),
        (("--max-connections-per-source", "0"), "Invalid value for '--max-connections-per-source'"),
    ],
    ids=["identity-with-policy", "loop", "stale", "per-source"],
)
def test_usage_errors(gateway_pki, tmp_path, extra, message):
    policy = tmp_path / "policy.toml"
    policy.write_text("[[role.operator]]\nfunctions = [3]\naddresses = [0, 5]\n")
    result = run_gateway(gateway_pki, *(e.format(policy=policy) for e in extra))
    assert result.returncode != 0
    assert message in result.stderr


def test_the_per_source_limit_is_an_option(gateway_pki):
    port = free_port()
    command = [
        sys.executable, "-m", "otward", "gateway", "--listen", f"127.0.0.1:{port}",
        "--upstream", "127.0.0.1:1", "--trust", str(gateway_pki.trust),
        "--cert", str(gateway_pki.server.certificate), "--key", str(gateway_pki.server.key),
        "--max-connections-per-source", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    output = ""
    try:
        while "otward gateway" not in output:  # printed once it listens; EOF if it failed to start
            line = process.stderr.readline()
            assert line, output
            output += line
        with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
                try:
                    assert second.recv(1) == b""  # closed at accept: the first holds the only slot
                except ConnectionResetError:
                    pass
            held.settimeout(0.5)
            with pytest.raises(TimeoutError):
                held.recv(1)  # still in its handshake
    finally:
        process.terminate()
        output += process.communicate(timeout=30)[1]
    assert "per-source limit 1 reached" in output
