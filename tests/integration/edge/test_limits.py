"""A real ``otward edge serve`` under a connection flood (issue 13 item 4), on loopback only.

Silent, slowloris and oversized-header connections from other loopback addresses, more than the
gatekeeper's total: a reader on 127.0.0.1 still completes its challenge and answer, the server
closes every flood connection, and its memory (VmRSS) stays within a generous bound.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from otward.cli.app import app
from otward.core import b64url
from otward.core.edge.formats import answer_message
from otward.core.keys import sign_data
from tests.conftest import free_port

pytestmark = pytest.mark.integration

PLANT = Path(__file__).parents[3] / "examples" / "chemical-plant.yaml"
RSS_BOUND = 64 * 1024 * 1024
WAIT = 30.0


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def gatekeeper(tmp_path: Path) -> Iterator[tuple[str, str, ec.EllipticCurvePrivateKey, int]]:
    """(URL, Carla's credential, her holder key, pid) of a running gatekeeper for reactor-1."""
    site = tmp_path / "site"
    _cli("init", "--data", str(site), "--json")
    _cli("access", "import", str(PLANT), "--data", str(site))
    bundle = tmp_path / "reactor-1.bundle"
    _cli("access", "bundle", "--asset", "reactor-1", "--out", str(bundle), "--data", str(site), "--json")
    key = ec.generate_private_key(ec.SECP256R1())
    public = tmp_path / "carla.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    credential = tmp_path / "carla.jwt"
    _cli(
        "access", "credential", "issue", "carla", "--public-key", str(public), "--out", str(credential),
        "--data", str(site), "--json",
    )  # fmt: skip
    port = free_port()
    command = [
        sys.executable, "-m", "otward", "edge", "serve", "--asset", "reactor-1", "--bundle", str(bundle),
        "--state", str(tmp_path / "state"), "--listen", f"127.0.0.1:{port}", "--data", str(site),
        "--max-connections", "60", "--max-connections-per-source", "20", "--request-timeout", "1",
        "--idle-timeout", "1", "--trail-sync", "batch",
    ]  # fmt: skip
    log = (tmp_path / "edge.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            assert process.poll() is None, (tmp_path / "edge.log").read_text()
            assert time.monotonic() < deadline, "gatekeeper did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url, credential.read_text().strip(), key, process.pid
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _reader_decides(url: str, credential: str, key: ec.EllipticCurvePrivateKey) -> None:
    """The reader's exchange: a challenge, the holder's signature, a decision."""
    with httpx.Client(base_url=url, timeout=WAIT) as reader:
        challenge = reader.post("/v1/challenge", json={"credential": credential, "function": "start"})
        assert challenge.status_code == 201, challenge.text
        issued = challenge.json()
        nonce = b64url.decode(issued["nonce"], "nonce")
        signature = sign_data(key, answer_message(issued["asset"], issued["function"], nonce))
        answer = reader.post(
            "/v1/answer", json={"nonce": issued["nonce"], "signature": b64url.encode(signature)}
        )
        assert answer.status_code == 200, answer.text
        verdict = json.loads(answer.text)
        assert verdict["person"] == "carla"  # the proof held, whatever the shift plan decides
        assert verdict["decision"] in ("allow", "deny")


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_a_flood_leaves_the_gatekeeper_to_its_reader(gatekeeper):
    url, credential, key, pid = gatekeeper
    port = int(url.rsplit(":", 1)[1])
    _reader_decides(url, credential, key)
    before = _rss(pid)
    flood: list[socket.socket] = []

    def connect(source: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        flood.append(sock)
        sock.settimeout(WAIT)
        sock.bind((source, 0))
        with contextlib.suppress(ConnectionResetError):  # refused at accept before connect returned
            sock.connect(("127.0.0.1", port))
        return sock

    try:
        for _ in range(40):  # silent: 20 admitted, 20 reset at accept
            connect("127.0.0.2")
        for n in range(60):  # slowloris from three more addresses: past the total of 60
            with contextlib.suppress(OSError):
                connect(f"127.0.0.{3 + n // 20}").sendall(b"POST /v1/challenge HTTP/1.1\r\nHost: x\r\n")
        big = [connect("127.0.0.6") for _ in range(20)]
        for sock in big:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(16):
            for sock in big:
                with contextlib.suppress(OSError):
                    sock.sendall(b"a" * 64 * 1024)
        _reader_decides(url, credential, key)  # while the flood is held
        after = _rss(pid)
        assert sum(_closed_by_server(sock) for sock in flood) == len(flood)
    finally:
        for sock in flood:
            sock.close()
    _reader_decides(url, credential, key)
    assert after - before < RSS_BOUND, (before, after)
