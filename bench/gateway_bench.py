#!/usr/bin/env python3
"""The mutual-TLS gateway against Debian's stunnel4, on the same certificates and the same echo upstream.

Usage (from the repository root, with ``apt-get install -y stunnel4``)::

    python bench/gateway_bench.py            # full run, about 3 minutes on 2 cores
    python bench/gateway_bench.py --quick    # one short round per case
    python bench/gateway_bench.py --json     # figures as JSON on stdout

What is measured (issue #5, item 7), in one run, in alternating rounds so that machine noise hits
every server alike; the median of the rounds is reported:

* **new mutual-TLS handshakes per second**: client processes (``--clients``, default 3) loop over
  connect, full handshake presenting an otward ``modbus-role`` client certificate, one byte echoed
  through the upstream, close. The byte makes sure the server finished verifying the client
  certificate (in TLS 1.3 the client's handshake ends before the server's checks). The clients do not
  verify the server certificate and never resume sessions, identically for every server;
* **one-connection bulk MB/s**: one client process streams 64 KiB chunks through one connection to
  the echo upstream and reads them back (a non-blocking loop, at most 4 MiB in flight); the figure is
  payload MB/s echoed (each byte crosses the proxy twice);
* **Modbus requests per second over one connection**: the gateway with a role policy in front of a
  pipelining Modbus responder, FC 3 reads of 10 registers that the ``operator`` role is granted, one
  client connection; with one request in flight (the client waits for each answer), with 16 in
  flight at the client and one at a time at the gateway (the default, for devices that take one request
  at a time), and with 16 in flight at both (``--max-in-flight 16``).

Servers: ``stunnel4`` (``verifyChain``, ``requireCert``, TLS 1.2 minimum, the same cipher list,
``options = NO_TICKET`` like the gateway, ``debug = 3``: at its default level 5 stunnel logs each
connection and spends about three times the CPU per handshake), ``otward gateway`` with uvloop and
with the stock asyncio loop (each with ``--audit-file``: one fsynced audit record per connection,
written off the event loop).
The upstreams (echo and Modbus) run in their own process on uvloop. Only loopback addresses are used;
every process and temporary directory is removed on exit. Not part of the test suite; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import select
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGET_HANDSHAKES = 0.85
TARGET_BULK = 0.55
TARGET_MODBUS = 10_000
CHUNK = 64 * 1024
POLICY = """
[[role.operator]]
functions = [1, 2, 3, 4]
addresses = [0, 9999]
"""


# --------------------------------------------------------------------------- upstream process
def _upstreams(echo_port: int, modbus_port: int) -> None:
    """Echo server and pipelining Modbus responder (FC 3 only) in this process, on uvloop."""
    import asyncio

    import uvloop

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

    answers: dict[int, bytes] = {}

    class Modbus(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            buffer = self.buffer + data
            out = []
            offset = 0
            while len(buffer) - offset >= 12:
                length = int.from_bytes(buffer[offset + 4 : offset + 6], "big")
                end = offset + 6 + length
                if len(buffer) < end:
                    break
                count = int.from_bytes(buffer[offset + 10 : offset + 12], "big")
                body = answers.get(count)
                if body is None:
                    pdu = bytes([3, 2 * count]) + bytes(2 * count)
                    body = answers[count] = (
                        (len(pdu) + 1).to_bytes(2, "big") + buffer[offset + 6 : offset + 7] + pdu
                    )
                out.append(buffer[offset : offset + 4] + body)
                offset = end
            self.buffer = buffer[offset:]
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Echo, "127.0.0.1", echo_port, backlog=1024)
        await loop.create_server(Modbus, "127.0.0.1", modbus_port, backlog=1024)
        await asyncio.Event().wait()

    uvloop.run(main())


# --------------------------------------------------------------------------- clients
def _client_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    return context


def _handshakes(
    port: int, cert: str, key: str, start: float, seconds: float, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    context = _client_context(cert, key)
    done = errors = 0
    while time.time() < start:
        time.sleep(0.001)
    end = start + seconds
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"x")
                    if tls.recv(1) == b"x":
                        done += 1
                    else:
                        errors += 1
        except OSError:
            errors += 1
    out.put((done, errors))


def _bulk(port: int, cert: str, key: str, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    context = _client_context(cert, key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    tls = context.wrap_socket(raw)
    tls.sendall(b"warm")
    got = b""
    while len(got) < 4:
        got += tls.recv(4)
    tls.setblocking(False)
    chunk = bytes(CHUNK)
    sent = received = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        now = time.perf_counter()
        sending = now < deadline
        if not sending and received >= sent:
            break
        want_write = sending and sent - received < 4 * 1024 * 1024
        readable, writable, _ = select.select([tls], [tls] if want_write else [], [], 5)
        if not readable and not writable:
            break
        if writable:
            with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                sent += tls.send(chunk)
        if readable:
            while True:
                try:
                    data = tls.recv(256 * 1024)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    break
                if not data:
                    break
                received += len(data)
    elapsed = time.perf_counter() - started
    tls.close()
    out.put((received, elapsed))


def _modbus(port: int, cert: str, key: str, seconds: float, window: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    context = _client_context(cert, key)
    tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frames = [struct.pack(">HHHBBHH", t, 0, 6, 1, 3, 0, 10) for t in range(65536)]
    tid = 0

    def requests(count: int) -> bytes:
        nonlocal tid
        batch = b"".join(frames[(tid + i) & 0xFFFF] for i in range(count))
        tid += count
        return batch

    answered = errors = 0
    buffer = b""
    tls.sendall(requests(window))
    outstanding = window
    started = time.perf_counter()
    deadline = started + seconds
    while outstanding:
        data = tls.recv(65536)
        if not data:
            errors += 1
            break
        buffer += data
        complete = 0
        offset = 0
        while len(buffer) - offset >= 7:
            end = offset + 6 + int.from_bytes(buffer[offset + 4 : offset + 6], "big")
            if len(buffer) < end:
                break
            if buffer[offset + 7] != 3:
                errors += 1
            complete += 1
            offset = end
        buffer = buffer[offset:]
        answered += complete
        outstanding -= complete
        if complete and time.perf_counter() < deadline:
            tls.sendall(requests(complete))
            outstanding += complete
    elapsed = time.perf_counter() - started
    tls.close()
    out.put((answered, errors, elapsed))


def _run_clients(target, args_list: list[tuple]) -> list:  # type: ignore[no-untyped-def, type-arg]
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    processes = [multiprocessing.Process(target=target, args=(*args, queue)) for args in args_list]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return results


# --------------------------------------------------------------------------- servers
def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.contextmanager
def _process(command: list[str], log: Path, port: int | None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if port is not None:
            _wait_port(port, process, log)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _pki(work: Path) -> dict[str, str]:
    """A real otward installation: gateway (tls-server) and client (modbus-role operator) certificates."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from otward.config import load_settings
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize
    from otward.services.pki import Pki

    initialize(work / "data", key_type=KeyType.EC_P256, organization="otward bench")
    pki = Pki.open(load_settings(work / "data"))
    files: dict[str, str] = {}
    try:
        issuing = pki.authorities.get("issuing")
        trust = work / "trust.pem"
        trust.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issuing.chain))
        files["trust"] = str(trust)
        for name, profile, role, sans in (
            ("gateway", "tls-server", None, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            ("client", "modbus-role", "operator", []),
        ):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = x509.CertificateSigningRequestBuilder().subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1" if sans else f"bench-{name}")])
            )
            if sans:
                builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            csr = builder.sign(key, hashes.SHA256())
            issued = pki.issuance.issue(
                csr.public_bytes(serialization.Encoding.PEM), profile=profile, role=role
            )
            (work / f"{name}.pem").write_text(issued.pem)
            key_path = work / f"{name}.key"
            key_path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            key_path.chmod(0o600)
            files[f"{name}_cert"] = str(work / f"{name}.pem")
            files[f"{name}_key"] = str(key_path)
    finally:
        pki.close()
    return files


def _stunnel_command(work: Path, files: dict[str, str], port: int, upstream: int) -> list[str]:
    config = work / "stunnel.conf"
    config.write_text(
        f"""foreground = yes
pid =
output = {work / "stunnel.log"}
debug = 3
options = NO_TICKET
[gateway]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{upstream}
cert = {files["gateway_cert"]}
key = {files["gateway_key"]}
CAfile = {files["trust"]}
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.2
ciphers = ECDHE+AESGCM:ECDHE+CHACHA20
"""
    )
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        raise SystemExit("stunnel4 is not installed: apt-get install -y stunnel4")
    return [stunnel, str(config)]


def _otward_command(
    work: Path,
    files: dict[str, str],
    port: int,
    upstream: int,
    loop: str,
    *,
    modbus: bool = False,
    in_flight: int = 1,
) -> list[str]:
    command = [
        sys.executable, "-m", "otward", "gateway",
        "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{upstream}",
        "--trust", files["trust"], "--cert", files["gateway_cert"], "--key", files["gateway_key"],
        "--loop", loop, "--log-level", "warning",
        "--audit-file", str(work / f"audit-{loop}-{port}.jsonl"),
        "--max-in-flight", str(in_flight),
    ]  # fmt: skip
    if modbus:
        policy = work / "policy.toml"
        policy.write_text(POLICY)
        command += ["--modbus-policy", str(policy)]
    return command


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round per case")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each handshake round")
    parser.add_argument("--clients", type=int, default=3, help="handshake client processes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--upstream-server", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_server:
        _upstreams(*args.upstream_server)
        return
    rounds = 1 if args.quick else args.rounds
    seconds = 2.0 if args.quick else args.seconds
    work = Path(tempfile.mkdtemp(prefix="otward-gateway-bench-"))
    try:
        results = _measure(work, rounds, seconds, args.clients, quiet=args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print(results)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def _measure(work: Path, rounds: int, seconds: float, clients: int, *, quiet: bool) -> dict[str, Any]:
    files = _pki(work)
    echo_port, modbus_port = _free_port(), _free_port()
    servers = {"stunnel4": None, "otward-uvloop": "uvloop", "otward-asyncio": "asyncio"}
    handshakes: dict[str, list[float]] = {name: [] for name in servers}
    handshake_errors: dict[str, int] = dict.fromkeys(servers, 0)
    bulk: dict[str, list[float]] = {name: [] for name in servers}
    handshake_cpu: dict[str, list[float]] = {name: [] for name in servers}  # server CPU ms per handshake
    bulk_cpu: dict[str, list[float]] = {name: [] for name in servers}  # MB echoed per server CPU-second
    modbus: dict[str, list[float]] = {}
    upstream_command = [sys.executable, __file__, "--upstream-server", str(echo_port), str(modbus_port)]
    with _process(upstream_command, work / "upstream.log", echo_port) as upstream:
        _wait_port(modbus_port, upstream, work / "upstream.log")
        for round_number in range(rounds):
            for name, loop in servers.items():
                port = _free_port()
                command = (
                    _stunnel_command(work, files, port, echo_port)
                    if loop is None
                    else _otward_command(work, files, port, echo_port, loop)
                )
                with _process(command, work / f"{name}.log", port) as server:
                    time.sleep(0.3)
                    start = time.time() + 0.5
                    cpu = _cpu_seconds(server.pid)
                    results = _run_clients(
                        _handshakes,
                        [(port, files["client_cert"], files["client_key"], start, seconds)] * clients,
                    )
                    cpu = _cpu_seconds(server.pid) - cpu
                    done = sum(r[0] for r in results)
                    handshake_errors[name] += sum(r[1] for r in results)
                    handshakes[name].append(done / seconds)
                    handshake_cpu[name].append(1000 * cpu / max(done, 1))
                    cpu = _cpu_seconds(server.pid)
                    ((received, elapsed),) = _run_clients(
                        _bulk, [(port, files["client_cert"], files["client_key"], seconds / 2)]
                    )
                    cpu = _cpu_seconds(server.pid) - cpu
                    bulk[name].append(received / elapsed / 1e6)
                    bulk_cpu[name].append(received / 1e6 / max(cpu, 0.01))
                _say(
                    quiet,
                    f"round {round_number + 1}/{rounds} {name}: {handshakes[name][-1]:.0f} handshakes/s "
                    f"({handshake_cpu[name][-1]:.2f} server CPU ms each), {bulk[name][-1]:.0f} MB/s "
                    f"({bulk_cpu[name][-1]:.0f} MB per server CPU-second)",
                )
            for loop in ("uvloop", "asyncio"):
                for in_flight, window in ((1, 1), (1, 16), (16, 16)):
                    key = f"otward-{loop}-client-window-{window}-gateway-in-flight-{in_flight}"
                    port = _free_port()
                    command = _otward_command(
                        work, files, port, modbus_port, loop, modbus=True, in_flight=in_flight
                    )
                    with _process(command, work / f"{key}.log", port):
                        ((answered, errors, elapsed),) = _run_clients(
                            _modbus,
                            [(port, files["client_cert"], files["client_key"], seconds / 2, window)],
                        )
                    if errors:
                        raise RuntimeError(f"{key}: {errors} Modbus answers were not FC 3 reads")
                    modbus.setdefault(key, []).append(answered / elapsed)
                    _say(
                        quiet,
                        f"round {round_number + 1}/{rounds} {key}: {modbus[key][-1]:.0f} Modbus requests/s",
                    )
    median = {name: statistics.median(values) for name, values in handshakes.items()}
    bulk_median = {name: statistics.median(values) for name, values in bulk.items()}
    modbus_median = {name: statistics.median(values) for name, values in modbus.items()}
    best = "otward-uvloop"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": f"{os.cpu_count()} CPU, {platform.python_implementation()} {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}",
        "rounds": rounds,
        "seconds": seconds,
        "clients": clients,
        "handshakes_per_s": median,
        "handshake_rounds": handshakes,
        "handshake_errors": handshake_errors,
        "handshake_server_cpu_ms": {n: statistics.median(v) for n, v in handshake_cpu.items()},
        "bulk_mb_per_s": bulk_median,
        "bulk_mb_per_server_cpu_s": {n: statistics.median(v) for n, v in bulk_cpu.items()},
        "bulk_rounds": bulk,
        "modbus_requests_per_s": modbus_median,
        "modbus_rounds": modbus,
        "ratios": {
            f"{name}/stunnel4": {
                "handshakes": median[name] / median["stunnel4"],
                "bulk": bulk_median[name] / bulk_median["stunnel4"],
            }
            for name in servers
            if name != "stunnel4"
        },
        "targets": {
            "handshakes >= 85% of stunnel4": median[best] / median["stunnel4"] >= TARGET_HANDSHAKES,
            "bulk >= 55% of stunnel4": bulk_median[best] / bulk_median["stunnel4"] >= TARGET_BULK,
            "modbus >= 10,000 requests/s": max(
                rate for name, rate in modbus_median.items() if name.startswith(best)
            )
            >= TARGET_MODBUS,
        },
    }


def _commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    return "unknown"


def _print(results: dict[str, Any]) -> None:
    print(f"gateway benchmark {results['date']}, commit {results['commit']}, {results['machine']}")
    print(f"{results['rounds']} round(s), medians; handshake clients: {results['clients']} processes")
    handshakes = results["handshakes_per_s"]
    bulk = results["bulk_mb_per_s"]
    cpu = results["handshake_server_cpu_ms"]
    bulk_cpu = results["bulk_mb_per_server_cpu_s"]
    print(
        f"{'server':<16}{'handshakes/s':>13}{'ratio':>7}{'CPU ms each':>12}"
        f"{'bulk MB/s':>11}{'ratio':>7}{'MB/CPU-s':>10}"
    )
    for name in handshakes:
        print(
            f"{name:<16}{handshakes[name]:>13.0f}{handshakes[name] / handshakes['stunnel4']:>7.2f}"
            f"{cpu[name]:>12.2f}{bulk[name]:>11.0f}{bulk[name] / bulk['stunnel4']:>7.2f}"
            f"{bulk_cpu[name]:>10.0f}"
        )
    modbus = results["modbus_requests_per_s"]
    for name, rate in modbus.items():
        print(f"Modbus FC 3 over one connection, {name}: {rate:,.0f} requests/s")
    targets = results["targets"]
    for target, met in targets.items():
        print(f"target {target}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
