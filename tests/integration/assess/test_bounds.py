"""What a hostile or silent target cannot do to a scan: make it buffer without bound, or make it open
more connections than ``--concurrency`` (issue 15 item 7)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from pathlib import Path

from otward.adapters.assess.opcua_probe import MAX_RECEIVED_BYTES
from tests.integration.assess.conftest import assess
from tests.integration.gateway.conftest import LoopThread


def test_an_endless_opcua_answer_is_cut_and_reported(tmp_path: Path):
    """The server answers the Hello with a chunk header announcing 2 GiB and streams zeros: the probe
    cuts the connection after MAX_RECEIVED_BYTES instead of buffering it, and reports the target."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    sent = [0]
    cut = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(1024)  # the Hello
            connection.sendall(b"ACKF" + struct.pack("<I", 0x7FFF_FFF0))
            block = bytes(64 * 1024)
            try:
                while sent[0] < 64 * MAX_RECEIVED_BYTES:  # far more than any answer may be
                    connection.sendall(block)
                    sent[0] += len(block)
            except OSError:
                cut.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        result = assess("opcua", f"opc.tcp://127.0.0.1:{port}", "--timeout", "10")
    finally:
        thread.join(timeout=30)
        listener.close()
    assert cut.is_set()
    # what the probe read plus what the kernel's socket buffers took: nowhere near what was offered
    assert sent[0] < 8 * MAX_RECEIVED_BYTES, sent[0]
    assert result.checks() == {"opcua.probe_failed": "medium"}
    assert f"more than {MAX_RECEIVED_BYTES} bytes" in result.evidence("opcua.probe_failed")


class _Silent(asyncio.Protocol):
    """Accepts, never answers; counts the connections that sent something and are still open."""

    active = 0
    most = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.counted = False

    def data_received(self, data: bytes) -> None:
        if not self.counted:
            self.counted = True
            _Silent.active += 1
            _Silent.most = max(_Silent.most, _Silent.active)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            _Silent.active -= 1


def test_concurrency_bounds_the_connections_open_at_once(tmp_path: Path):
    thread = LoopThread()

    async def start() -> list[asyncio.Server]:
        loop = asyncio.get_running_loop()
        return [await loop.create_server(_Silent, "127.0.0.1", 0) for _ in range(6)]

    servers = thread.run(start())
    try:
        targets = tmp_path / "targets.txt"
        targets.write_text("".join(f"127.0.0.1:{s.sockets[0].getsockname()[1]}\n" for s in servers))
        result = assess("modbus", "--targets", str(targets), "--concurrency", "2", "--timeout", "1")
    finally:

        async def stop() -> None:
            for server in servers:
                server.close()
                await server.wait_closed()

        thread.run(stop())
        thread.stop()
    assert set(result.checks().values()) == {"low"}  # modbus.no_answer for each of the six
    assert len(result.document["findings"]) == 6
    assert 1 <= _Silent.most <= 2
