#!/usr/bin/env python3
"""``otward assess tls --targets`` against N local TLS servers, beside ``openssl s_client`` run once per
target (what a shell loop over an inventory does).

Usage (from the repository root)::

    python bench/assess_bench.py            # 32 servers, 3 rounds
    python bench/assess_bench.py --quick    # 8 servers, 1 round
    python bench/assess_bench.py --json

The servers run in their own process (one thread per connection, Python ``ssl``, otward's listener
policy: TLS 1.2+, ECDHE + AEAD, a P-256 certificate from a throwaway CA, no client certificates) on
loopback ports. Measured, median of the rounds:

* **otward assess**: the whole scan of every server (versions, suite enumeration, client-certificate
  probe, chain checks) with ``--concurrency`` 1 and 16, in this process (the service the CLI calls; the
  CLI's start-up is left out): targets per second and TLS handshakes per second (counted by the servers);
* **openssl s_client**: one process and one handshake per server, sequentially (``-brief``, stdin
  closed): targets per second. It does a small part of the work, so compare handshakes per second.

Not part of the test suite; asserts nothing. Only loopback addresses; everything is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))


def _serve(cert: str, key: str, count: int, ports: Any, handshakes: Any, stop: Any) -> None:
    from otward.adapters.tls import restrict_server_context

    context = restrict_server_context(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.load_cert_chain(cert, key)
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=128) for _ in range(count)]
    for listener in listeners:
        ports.append(listener.getsockname()[1])

    def one(connection: socket.socket) -> None:
        with connection:
            connection.settimeout(10)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    with handshakes.get_lock():
                        handshakes.value += 1
                    tls.sendall(b"ok\n")
                    while tls.recv(1024):
                        pass
            except (ssl.SSLError, OSError):
                with handshakes.get_lock():
                    handshakes.value += 1  # a refused offer is a handshake too

    def accept(listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=one, args=(connection,), daemon=True).start()

    threads = [threading.Thread(target=accept, args=(listener,), daemon=True) for listener in listeners]
    for thread in threads:
        thread.start()
    stop.wait()


def _assess(ports: list[int], trust: Path, concurrency: int) -> float:
    """The scan in this process (``assess_targets``, what the CLI runs after parsing its options; the
    CLI's own start-up, about 1.5 s of imports, is left out)."""
    from otward.core.assess.targets import parse_target
    from otward.services.assess import assess_targets, load_trust

    targets = [parse_target(f"127.0.0.1:{p}", "tls") for p in ports]
    anchors = load_trust(trust)
    started = time.perf_counter()
    document = assess_targets(
        "tls", targets, trust=anchors, concurrency=concurrency, now=datetime.now(UTC), tool="bench"
    )
    elapsed = time.perf_counter() - started
    if len(document.targets) != len(ports) or any(f.check.endswith("unreachable") for f in document.findings):
        raise SystemExit("a server did not answer: the figures would be wrong")
    return elapsed


def _s_client(ports: list[int], trust: Path) -> float:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("openssl is not installed")
    started = time.perf_counter()
    for port in ports:
        subprocess.run(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", "-CAfile", str(trust)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            timeout=30,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    count, rounds = (8, 1) if args.quick else (32, 3)
    from tests.assess_certs import TestCa

    with tempfile.TemporaryDirectory(prefix="assess-bench-") as name:
        directory = Path(name)
        ca = TestCa()
        cert, key = ca.leaf().write(directory, "server")
        trust = ca.pem(directory)
        manager = multiprocessing.Manager()
        ports = manager.list()
        handshakes = multiprocessing.Value("l", 0)
        stop = multiprocessing.Event()
        server = multiprocessing.Process(
            target=_serve, args=(str(cert), str(key), count, ports, handshakes, stop), daemon=True
        )
        server.start()
        while len(ports) < count:
            time.sleep(0.05)
        listening = list(ports)
        figures: dict[str, list[float]] = {}
        try:
            for _ in range(rounds):
                for concurrency in (1, 16):
                    before = handshakes.value
                    elapsed = _assess(listening, trust, concurrency)
                    done = handshakes.value - before
                    figures.setdefault(f"assess c={concurrency} targets/s", []).append(count / elapsed)
                    figures.setdefault(f"assess c={concurrency} handshakes/s", []).append(done / elapsed)
                    figures.setdefault("assess handshakes per target", []).append(done / count)
                before = handshakes.value
                elapsed = _s_client(listening, trust)
                figures.setdefault("s_client targets/s", []).append(count / elapsed)
                figures.setdefault("s_client handshakes/s", []).append((handshakes.value - before) / elapsed)
        finally:
            stop.set()
            server.join(timeout=10)
            manager.shutdown()
    medians = {k: round(statistics.median(v), 1) for k, v in figures.items()}
    medians["ratio assess c=16 / s_client (handshakes/s)"] = round(
        medians["assess c=16 handshakes/s"] / medians["s_client handshakes/s"], 2
    )
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "servers": count,
        "rounds": rounds,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "figures": medians,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{count} servers, {rounds} round(s), {report['machine']}")
    for name, value in medians.items():
        print(f"  {name:45s} {value:>10}")


if __name__ == "__main__":
    main()
