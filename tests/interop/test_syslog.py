"""Audit forwarding to a real syslog collector over TLS: rsyslogd with its gtls driver (RFC 5425)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from otward.adapters.syslog import SyslogTlsForwarder, client_context
from otward.errors import BackendError
from tests.conftest import build_csr, free_port, make_key

pytestmark = [pytest.mark.interop, pytest.mark.integration]

RSYSLOGD = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)


def _collector_files(pki, directory: Path) -> tuple[Path, Path, Path]:
    """A TLS server certificate for the collector, issued by otward itself."""
    key = make_key()
    issued = pki.issuance.issue(build_csr(key, cn="127.0.0.1", ips=("127.0.0.1",)), profile="tls-server")
    chain = directory / "collector.pem"
    chain.write_text(issued.pem + issued.chain_pem[0])
    key_file = directory / "collector.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    root = directory / "root.pem"
    root.write_text(issued.chain_pem[-1])
    return chain, key_file, root


def _start_rsyslogd(
    directory: Path, port: int, chain: Path, key: Path, root: Path
) -> subprocess.Popen[bytes]:
    work = directory / "work"
    work.mkdir()
    config = directory / "rsyslog.conf"
    config.write_text(
        f'global(workDirectory="{work}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{root}"\n'
        f'       DefaultNetstreamDriverCertFile="{chain}" DefaultNetstreamDriverKeyFile="{key}")\n'
        'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
        f'input(type="imtcp" port="{port}" address="127.0.0.1")\n'
        'template(name="raw" type="string" string="%rawmsg%\\n")\n'
        f'*.* action(type="omfile" file="{directory / "received.log"}" template="raw")\n'
    )
    with (directory / "rsyslogd.err").open("wb") as errors:
        process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with __import__("socket").create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"rsyslogd did not start: {(directory / 'rsyslogd.err').read_text()}")


@pytest.mark.skipif(
    RSYSLOGD is None, reason="rsyslogd not installed (Debian packages rsyslog, rsyslog-gnutls)"
)
def test_trail_reaches_rsyslog_over_tls_and_waits_while_it_is_away(sqlite_pki, tmp_path):
    pki = sqlite_pki
    chain, key, root = _collector_files(pki, tmp_path)
    port = free_port()
    forwarder = SyslogTlsForwarder(
        pki.stores.audit, host="127.0.0.1", port=port, context=client_context(str(root)), clock=pki.clock
    )
    # collector away: nothing is lost, the cursor does not move
    with pytest.raises(BackendError, match="unreachable"):
        forwarder.forward()
    assert pki.stores.audit.forward_cursor("syslog") == 0
    collector = _start_rsyslogd(tmp_path, port, chain, key, root)
    try:
        sent = forwarder.forward()
        total = pki.stores.audit.audit_head()[0]
        assert sent == total
        for i in range(3):
            pki.issuance.issue(build_csr(make_key(), cn=f"late-{i}"), profile="tls-client")
        assert forwarder.forward() == 3
        assert forwarder.forward() == 0
        forwarder.close()
        received = tmp_path / "received.log"
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = received.read_text().splitlines() if received.exists() else []
            if len(lines) >= total + 3:
                break
            time.sleep(0.2)
    finally:
        collector.terminate()
        collector.wait(timeout=10)
    assert len(lines) == total + 3
    sequences = [int(re.search(r' seq="(\d+)"', line).group(1)) for line in lines]
    assert sequences == list(range(1, total + 4))
    assert all(line.startswith("<") and ">1 " in line[:6] for line in lines)
    assert pki.stores.audit.forward_cursor("syslog") == total + 3
