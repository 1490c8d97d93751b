#!/usr/bin/env python3
"""EST enrollments per second over HTTPS, next to the same machine's references, measured in one run.

Usage (from the repository root, after ``pip install -e '.[test]'`` and ``apt-get install -y wrk``)::

    python bench/est_bench.py            # full run, about 3 minutes on 2 cores
    python bench/est_bench.py --quick    # one short run per case, about 30 s
    python bench/est_bench.py --profile  # also py-spy one server worker during a keep-alive run,
                                         # and perf syscall counts of the workers (pip install
                                         # py-spy; perf optional; needs ptrace rights, e.g. root)

What is measured (issue #4, item 8), each beside a reference taken in the same run:

* ``POST /.well-known/est/simpleenroll`` (token in ``Authorization: Bearer``, base64 DER PKCS#10 in,
  base64 PKCS#7 out) against ``otward serve --workers 2``, driven by ``wrk`` (a C client) with a Lua
  script that gives every request its own pre-generated CSR (a distinct device id per request:
  a device that already holds a valid certificate is refused), once with keep-alive and once with
  ``Connection: close`` (a new TCP connection and full TLS handshake per request: wrk does not resume
  TLS sessions). Every answer is checked for 200 and a PKCS#7 media type; anything else is counted
  and reported. Targets: >= 1,000 /s with keep-alive, >= 200 /s with a new connection each;
* the same library work without HTTP or TLS, on one core: ``pki.issuance.issue(csr, profile="device",
  owner="bench")`` (issuance alone) and ``pki.est.enroll(der, token, ...)`` (the whole EST path:
  token check, issuance, device registration, token use, audit, in one durable transaction), also
  from 4 threads (concurrent enrollments share durable commits, as in a server worker);
* HTTP + TLS alone: ``wrk`` against ``GET /healthz`` (no authentication, no database) on the same
  server, with keep-alive and with ``Connection: close``.

Only loopback addresses are used, every run is bounded in time and count, and every process and
temporary directory the script creates is removed on exit (also on Ctrl-C or SIGTERM). This is not
part of the test suite and asserts no timing.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import cryptography
import httpx
from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

# The shared helpers of the benchmarks (bench/ is on sys.path when a script in it runs).
from pki_bench import (
    free_port,
    log_tail,
    one_core,
    running,
    say,
    section,
    version_of,
)

import otward
from otward.config import load_settings
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

LOOPBACK = "127.0.0.1"
OWNER = "bench"
PROFILE = "device"
EST_PATH = "/.well-known/est/simpleenroll"
HEALTH_PATH = "/healthz"
PKCS7 = "application/pkcs7-mime"
SERVER_START_SECONDS = 60.0
SUBPROCESS_TIMEOUT = 600.0
TARGET_KEEP_ALIVE = 1000.0
TARGET_NEW_CONNECTION = 200.0
BENCH_ACTOR = Actor(component="est", identity="bench", source=LOOPBACK)

# --------------------------------------------------------------------------------------------------
# sizes and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    library: int  # enrollments (and issuances) per timed library pass
    repeats: int  # passes / wrk runs per case; the median is reported
    est_seconds: int  # duration of one wrk run against simpleenroll
    health_seconds: int  # duration of one wrk run against /healthz
    warmup_seconds: int  # wrk warm-up against simpleenroll (keep-alive), not reported
    profile_seconds: int


FULL = Sizes(library=1500, repeats=3, est_seconds=12, health_seconds=6, warmup_seconds=3, profile_seconds=15)
QUICK = Sizes(library=300, repeats=1, est_seconds=5, health_seconds=3, warmup_seconds=2, profile_seconds=8)


# --------------------------------------------------------------------------------------------------
# small helpers: CPU time and connections (pinning, ports and processes come from bench/pki_bench.py)
# --------------------------------------------------------------------------------------------------


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on; comm may hold spaces


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (Linux /proc), 0.0 where unavailable."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14 and 15)


def worker_pids(supervisor: int) -> list[int]:
    """The ``otward serve`` worker processes: spawned children of the supervisor."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or int(fields[1]) != supervisor:
            continue
        with contextlib.suppress(OSError):
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return sorted(found)


def connections_per_worker(running_server: RunningServer) -> list[int]:
    """Established connections to the HTTPS port held by each worker (``ss -tnp``), [] if unknown."""
    ss = shutil.which("ss")
    if ss is None:
        return []
    port = running_server.server.https_port
    result = subprocess.run([ss, "-Htnp", "state", "established", f"( sport = :{port} )"], **_QUIET)
    if result.returncode != 0:
        return []
    owners = re.findall(r"pid=(\d+)", result.stdout)
    return [owners.count(str(pid)) for pid in running_server.workers]


def machine_busy_seconds() -> float:
    """CPU seconds spent on the machine by every process, all cores (/proc/stat), 0.0 where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------
# CSRs
# --------------------------------------------------------------------------------------------------


def make_csr_ders(prefix: str, count: int) -> list[bytes]:
    """DER CSRs from fresh P-256 keys, subject CN = ``prefix-N`` (the device id), made before timing."""
    ders = []
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix}-{i:06d}")]))
            .sign(key, hashes.SHA256())
        )
        ders.append(csr.public_bytes(serialization.Encoding.DER))
    return ders


def der_to_pem(der: bytes) -> bytes:
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


class BodyMaker:
    """Writes files of base64 CSR bodies, one per line, each CN used once in the whole run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made = 0
        self.seconds = 0.0
        self.files = 0

    def write(self, count: int) -> Path:
        """A new file of ``count`` bodies whose device ids no earlier file used."""
        start = time.perf_counter()
        self.files += 1
        tag = f"{self.files:02d}"
        path = self.directory / f"bodies-{tag}.txt"
        with path.open("wb") as out:
            for der in make_csr_ders(f"est-{tag}", count):
                out.write(base64.b64encode(der) + b"\n")
        self.made += count
        self.seconds += time.perf_counter() - start
        return path


# --------------------------------------------------------------------------------------------------
# library references
# --------------------------------------------------------------------------------------------------


def open_installation(data_dir: Path, http_port: int) -> None:
    initialize(data_dir, organization="Bench", public_url=f"http://{LOOPBACK}:{http_port}")
    pki = Pki.open(load_settings(data_dir))
    try:
        pki.owners.create(OWNER)
    finally:
        pki.close()


def new_token(data_dir: Path, uses: int) -> tuple[str, str]:
    """A fresh enrollment token for ``bench`` devices: (token id, token text)."""
    pki = Pki.open(load_settings(data_dir))
    try:
        record, token = pki.enrollment_tokens.create(OWNER, uses=min(uses, 100_000), ttl=timedelta(days=1))
        return record.token_id, token
    finally:
        pki.close()


def token_uses(data_dir: Path, token_id: str) -> int:
    pki = Pki.open(load_settings(data_dir))
    try:
        return next(r.uses for r in pki.enrollment_tokens.list(OWNER) if r.token_id == token_id)
    finally:
        pki.close()


def median_rate(passes: int, count: int, run: Callable[[int], None]) -> tuple[float, float]:
    """Median over ``passes`` of operations per second, and of CPU milliseconds per operation."""
    rates, cpu = [], []
    for index in range(passes):
        start, start_cpu = time.perf_counter(), time.process_time()
        run(index)
        rates.append(count / (time.perf_counter() - start))
        cpu.append((time.process_time() - start_cpu) * 1000 / count)
    return statistics.median(rates), statistics.median(cpu)


@dataclass
class LibraryFigures:
    issue: float
    enroll: float
    enroll_threads: float
    issue_cpu_ms: float
    enroll_cpu_ms: float
    enroll_threads_cpu_ms: float
    pinned: str


def step_library(work: Path, sizes: Sizes) -> LibraryFigures:
    section("1. library references, no HTTP and no TLS (SQLite, synchronous=FULL)")
    data = work / "library-data"
    open_installation(data, free_port())
    n, passes = sizes.library, sizes.repeats
    say(f"  generating {3 * passes * n + 100:,} P-256 CSRs (not timed)")
    issue_pems = [der_to_pem(d) for d in make_csr_ders("lib-issue", passes * n + 50)]
    enroll_ders = make_csr_ders("lib-enroll", passes * n + 50)
    threaded_ders = make_csr_ders("lib-threads", passes * n)
    pki = Pki.open(load_settings(data))
    try:
        _, token = pki.enrollment_tokens.create(OWNER, uses=100_000, ttl=timedelta(days=1))
        for pem in issue_pems[-50:]:  # warm-up
            pki.issuance.issue(pem, profile=PROFILE, owner=OWNER)
        for der in enroll_ders[-50:]:
            pki.est.enroll(der, token, label=None, actor=BENCH_ACTOR)

        def issue(index: int) -> None:
            for pem in issue_pems[index * n : (index + 1) * n]:
                pki.issuance.issue(pem, profile=PROFILE, owner=OWNER)

        def enroll(index: int) -> None:
            for der in enroll_ders[index * n : (index + 1) * n]:
                pki.est.enroll(der, token, label=None, actor=BENCH_ACTOR)

        def enroll_threads(index: int) -> None:
            part = threaded_ders[index * n : (index + 1) * n]
            errors: list[BaseException] = []

            def worker(ders: Sequence[bytes]) -> None:
                try:
                    for der in ders:
                        pki.est.enroll(der, token, label=None, actor=BENCH_ACTOR)
                except Exception as exc:  # noqa: BLE001 - reported below, after the threads end
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(part[i::4],)) for i in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise RuntimeError(f"threaded enrollment failed: {errors[0]!r}")

        with one_core() as pinned:
            say(f"  {pinned}; CPU time is this process's (user + system)")
            issue_rate, issue_cpu = median_rate(passes, n, issue)
            say(
                f"  pki.issuance.issue(csr, profile='device', owner='bench'): {issue_rate:6,.0f} /s, "
                f"{issue_cpu:.2f} ms CPU each"
            )
            enroll_rate, enroll_cpu = median_rate(passes, n, enroll)
            say(
                f"  pki.est.enroll(der, token, label=None, actor=...):         {enroll_rate:6,.0f} /s, "
                f"{enroll_cpu:.2f} ms CPU each"
            )
            threads_rate, threads_cpu = median_rate(passes, n, enroll_threads)
            say(
                f"  pki.est.enroll from 4 threads (group commit):               {threads_rate:6,.0f} /s, "
                f"{threads_cpu:.2f} ms CPU each"
            )
        enrolled = pki.stores.devices.get_device(f"lib-enroll-{n - 1:06d}")
        if enrolled is None:
            raise RuntimeError("the library enrollments did not register their devices")
    finally:
        pki.close()
    say(f"  median of {passes} passes of {n:,}; every enrollment registers a device and spends a token use")
    return LibraryFigures(issue_rate, enroll_rate, threads_rate, issue_cpu, enroll_cpu, threads_cpu, pinned)


# --------------------------------------------------------------------------------------------------
# otward server process
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    data_dir: Path
    https_port: int
    http_port: int

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "root.pem"))


@dataclass
class RunningServer:
    server: Server
    process: subprocess.Popen[bytes]
    workers: list[int]


class ServerError(RuntimeError):
    """``otward serve`` did not come up."""


@contextlib.contextmanager
def otward_server(server: Server, *, workers: int, log_path: Path) -> Iterator[RunningServer]:
    command = [sys.executable, "-m", "otward", "serve", "--data", str(server.data_dir)]
    command += ["--port", str(server.https_port), "--http-port", str(server.http_port)]
    command += ["--workers", str(workers)]
    with running(command, log_path) as process:
        deadline = time.monotonic() + SERVER_START_SECONDS
        context = server.ssl_context()
        while True:
            if process.poll() is not None:
                raise ServerError(f"otward serve exited with {process.returncode}:\n{log_tail(log_path)}")
            try:
                response = httpx.get(f"{server.https_url}{HEALTH_PATH}", verify=context, timeout=2.0)
                pids = worker_pids(process.pid)
                if response.status_code == 200 and len(pids) == workers:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"otward serve not healthy after {SERVER_START_SECONDS:.0f} s")
            time.sleep(0.2)
        yield RunningServer(server, process, pids)


def check_one_enrollment(server: Server, der: bytes, token: str) -> str:
    """One enrollment with httpx, the answer parsed: proof the request wrk sends is right."""
    response = httpx.post(
        f"{server.https_url}{EST_PATH}",
        content=base64.b64encode(der),
        headers={"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"},
        verify=server.ssl_context(),
        timeout=10.0,
    )
    if response.status_code != 200:
        raise RuntimeError(f"simpleenroll answered {response.status_code}: {response.text[:300]}")
    certificates = pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(response.content.split())))
    subject = certificates[0].subject.rfc4514_string()
    return f"200 {response.headers.get('content-type')}, {len(certificates)} certificate, subject {subject}"


# --------------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------------

# Every wrk thread loads the script into its own Lua state. setup() runs in the main state before
# the threads start and hands each thread a disjoint slice of the body file; init() builds that
# slice's requests; request() hands them out once each. When a slice runs out the thread stops
# (the run is then reported as short of bodies and repeated with more). response() checks each
# answer: 200 with the expected media type is good, anything else is counted with a sample.
LUA_TEMPLATE = r"""
-- written by bench/est_bench.py
local BODY_FILE = @BODY_FILE@
local PER_THREAD = @PER_THREAD@
local TOKEN = @TOKEN@
local CLOSE = @CLOSE@
local EXPECT = @EXPECT@

local threads = {}
local started = 0

function setup(thread)
  thread:set("slice_first", started * PER_THREAD)
  started = started + 1
  table.insert(threads, thread)
end

function init(args)
  good, bad, spare_answers, closes, exhausted, handed = 0, 0, 0, 0, 0, 0
  statuses = {}
  sample = ""
  if BODY_FILE then
    local headers = {["Content-Type"] = "application/pkcs10", ["Authorization"] = "Bearer " .. TOKEN}
    if CLOSE then headers["Connection"] = "close" end
    queue = {}
    local last = slice_first + PER_THREAD - 1
    local index = 0
    for line in io.lines(BODY_FILE) do
      if index > last then break end
      if index >= slice_first then queue[#queue + 1] = wrk.format("POST", @EST_PATH@, headers, line) end
      index = index + 1
    end
    position = 1
    local spare_headers = {}
    if CLOSE then spare_headers["Connection"] = "close" end
    spare = wrk.format("GET", "/healthz", spare_headers)
  end
end

if BODY_FILE then
  function request()
    local next_request = queue[position]
    if next_request == nil then
      if exhausted == 0 then
        exhausted = 1
        wrk.thread:stop()
      end
      return spare
    end
    position = position + 1
    handed = handed + 1
    return next_request
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local kind, connection = "", ""
  for name, value in pairs(headers) do
    local lower = string.lower(name)
    if lower == "content-type" then
      kind = value
    elseif lower == "connection" then
      connection = string.lower(value)
    end
  end
  if connection == "close" then closes = closes + 1 end
  if status == 200 and string.sub(kind, 1, #EXPECT) == EXPECT then
    good = good + 1
  elseif BODY_FILE and status == 200 and string.sub(kind, 1, 16) == "application/json" then
    spare_answers = spare_answers + 1
  else
    bad = bad + 1
    if sample == "" then sample = status .. " " .. kind .. " " .. string.sub(body or "", 1, 300) end
  end
end

function done(summary, latency, requests)
  local total = {good = 0, bad = 0, spare = 0, closes = 0, exhausted = 0, handed = 0}
  local codes = {}
  for _, thread in ipairs(threads) do
    total.good = total.good + thread:get("good")
    total.bad = total.bad + thread:get("bad")
    total.spare = total.spare + thread:get("spare_answers")
    total.closes = total.closes + thread:get("closes")
    total.exhausted = total.exhausted + thread:get("exhausted")
    total.handed = total.handed + thread:get("handed")
    local text = thread:get("sample")
    if text ~= "" then io.write("ESTBENCH_SAMPLE ", (string.gsub(text, "%c", " ")), "\n") end
    for code, count in pairs(thread:get("statuses")) do codes[code] = (codes[code] or 0) + count end
  end
  for code, count in pairs(codes) do io.write(string.format("ESTBENCH_STATUS %d %d\n", code, count)) end
  local e = summary.errors
  io.write(string.format(
    "ESTBENCH_RESULT requests=%d duration_us=%d good=%d bad=%d spare=%d closes=%d exhausted=%d " ..
    "handed=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%d\n",
    summary.requests, summary.duration, total.good, total.bad, total.spare, total.closes,
    total.exhausted, total.handed, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    encoded = json.dumps(text)
    if "\\u" in encoded:
        raise ValueError(f"not plain ASCII: {text!r}")
    return encoded


def write_lua(
    path: Path, *, bodies: Path | None, per_thread: int, token: str, close: bool, expect: str
) -> Path:
    values = {
        "@BODY_FILE@": _lua_string(str(bodies)) if bodies else "nil",
        "@PER_THREAD@": str(per_thread),
        "@TOKEN@": _lua_string(token),
        "@CLOSE@": "true" if close else "false",
        "@EXPECT@": _lua_string(expect),
        "@EST_PATH@": _lua_string(EST_PATH),
    }
    text = LUA_TEMPLATE
    for key, value in values.items():
        text = text.replace(key, value)
    path.write_text(text)
    return path


@dataclass
class WrkResult:
    requests: int  # completed, as wrk counts them
    seconds: float
    good: int  # 200 with the expected media type
    bad: int  # any other answer
    spare: int  # /healthz answers sent after a thread ran out of bodies (not counted as good)
    closes: int  # answers that carried "Connection: close" (wrk reconnects after each)
    exhausted: int  # threads that ran out of bodies
    handed: int  # EST requests handed to wrk
    socket_errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[int, int]
    samples: list[str]
    connections: int
    accepted: int | None  # TCP connections accepted on the machine during the run (PassiveOpens)
    server_cpu_s: float
    worker_cpu_s: list[float]  # per worker process
    worker_connections: list[int]  # established connections per worker, sampled mid-run (empty: unknown)
    wrk_cpu_s: float
    machine_busy_s: float  # CPU seconds used on the whole machine (every core, every process)
    server_committed: int | None = None  # token uses the server committed during the run

    @property
    def rate(self) -> float:
        return self.good / self.seconds if self.seconds > 0 else 0.0

    @property
    def errors(self) -> int:
        return self.bad + sum(self.socket_errors.values())

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.exhausted == 0

    @property
    def cycle_ms(self) -> float:
        """Mean time per request per connection, connecting included (Little's law: every connection
        is busy all the time); wrk's latency figures start after the TLS handshake."""
        return self.connections * self.seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def server_cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.requests if self.requests else 0.0

    def spread(self) -> str:
        """How the load fell on the workers: CPU (cores) and connections held mid-run, per worker."""
        cores = "/".join(f"{c / self.seconds:.2f}" for c in self.worker_cpu_s)
        held = "/".join(str(n) for n in self.worker_connections) if self.worker_connections else "?"
        return f"per worker: cores {cores}, connections held mid-run {held}"

    def describe(self) -> str:
        text = (
            f"{self.rate:8,.0f} /s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:6.1f} ms  "
            f"({self.good:,} good in {self.seconds:.1f} s; "
            f"server CPU {self.server_cpu_ms_per_request:.2f} ms/req, "
            f"wrk CPU {self.wrk_cpu_s * 1000 / max(self.requests, 1):.2f} ms/req; cores busy: "
            f"server {self.server_cpu_s / self.seconds:.2f}, "
            f"machine {self.machine_busy_s / self.seconds:.2f})"
        )
        text += f"\n      {self.spread()}"
        if self.errors:
            text += f"  ERRORS: {self.bad} bad answers {dict(self.statuses)}, sockets {self.socket_errors}"
        if self.exhausted:
            text += f"  SHORT OF BODIES in {self.exhausted} thread(s)"
        return text


def passive_opens() -> int | None:
    """TCP connections accepted in this network namespace so far (``PassiveOpens`` in /proc/net/snmp):
    counts every listener, so other traffic on the machine adds to the difference."""
    try:
        lines = [
            line.split()
            for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Tcp:")
        ]
    except OSError:
        return None
    if len(lines) < 2 or "PassiveOpens" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("PassiveOpens")])


_RESULT = re.compile(r"^ESTBENCH_RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class WrkShape:
    threads: int
    connections: int


def run_wrk(
    wrk: str,
    running_server: RunningServer,
    script: Path,
    *,
    seconds: int,
    shape: WrkShape,
    close: bool,
    profile: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
) -> WrkResult:
    server = running_server.server
    url = f"{server.https_url}{HEALTH_PATH}"  # the path of a static request; the script sets EST's
    command = [wrk, "-t", str(shape.threads), "-c", str(shape.connections), "-d", f"{seconds}s"]
    command += ["--timeout", "10s", "--latency", "-s", str(script)]
    if close:
        command += ["-H", "Connection: close"]
    command.append(url)
    before_opens = passive_opens()
    before_cpu = [cpu_seconds(pid) for pid in running_server.workers]
    before_children = children_cpu_seconds()
    machine_before = machine_busy_seconds()
    spread: list[int] = []
    sampler = threading.Timer(seconds / 2, lambda: spread.extend(connections_per_worker(running_server)))
    sampler.start()
    try:
        with profile() if profile else contextlib.nullcontext():
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds + 120, check=False
            )
    finally:
        sampler.cancel()
        sampler.join()
    machine_after = machine_busy_seconds()
    wrk_cpu = children_cpu_seconds() - before_children
    worker_cpu = [cpu_seconds(pid) - b for pid, b in zip(running_server.workers, before_cpu, strict=True)]
    after_opens = passive_opens()
    output = result.stdout + result.stderr
    match = _RESULT.search(output)
    if result.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{output[-2000:]}")
    values = {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}
    statuses = {
        int(code): int(count)
        for code, count in re.findall(r"^ESTBENCH_STATUS (\d+) (\d+)$", output, re.MULTILINE)
    }
    return WrkResult(
        requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        good=values["good"],
        bad=values["bad"],
        spare=values["spare"],
        closes=values["closes"],
        exhausted=values["exhausted"],
        handed=values["handed"],
        socket_errors={k: values[k] for k in ("connect", "read", "write", "timeout") if values[k]},
        p50_ms=values["p50_us"] / 1000,
        p90_ms=values["p90_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        max_ms=values["max_us"] / 1000,
        mean_ms=values["mean_us"] / 1000,
        statuses=statuses,
        samples=re.findall(r"^ESTBENCH_SAMPLE (.*)$", output, re.MULTILINE),
        connections=shape.connections,
        accepted=None if before_opens is None or after_opens is None else after_opens - before_opens,
        server_cpu_s=sum(worker_cpu),
        worker_cpu_s=worker_cpu,
        worker_connections=spread,
        wrk_cpu_s=wrk_cpu,
        machine_busy_s=machine_after - machine_before,
    )


def median_result(runs: Sequence[WrkResult]) -> WrkResult:
    """The run with the median rate (its latencies and counts as measured)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------------------------------
# the benchmark steps over HTTPS
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    label: str
    close: bool
    results: list[WrkResult] = field(default_factory=list)

    @property
    def median(self) -> WrkResult | None:
        return median_result(self.results) if self.results else None


class EstRunner:
    """wrk runs against simpleenroll, each with a fresh token and enough fresh CSR bodies."""

    def __init__(
        self, wrk: str, running_server: RunningServer, work: Path, bodies: BodyMaker, shape: WrkShape
    ) -> None:
        self.wrk = wrk
        self.running = running_server
        self.work = work
        self.bodies = bodies
        self.shape = shape
        self.runs = 0
        self.expected_rate = {False: 1000.0, True: 400.0}  # generous first guesses, then measured

    def run(
        self,
        *,
        close: bool,
        seconds: int,
        profile: Callable[[], contextlib.AbstractContextManager[object]] | None = None,
    ) -> WrkResult:
        rate_guess = self.expected_rate[close]
        for attempt in range(3):
            self.runs += 1
            # twice the best rate seen so far, and some: a thread that runs dry makes the run invalid
            per_thread = math.ceil((2.0 * rate_guess * seconds + 200) / self.shape.threads)
            body_file = self.bodies.write(per_thread * self.shape.threads)
            token_id, token = new_token(self.running.server.data_dir, per_thread * self.shape.threads + 100)
            script = write_lua(
                self.work / f"est-{self.bodies.files:02d}.lua",
                bodies=body_file,
                per_thread=per_thread,
                token=token,
                close=close,
                expect=PKCS7,
            )
            result = run_wrk(
                self.wrk,
                self.running,
                script,
                seconds=seconds,
                shape=self.shape,
                close=close,
                profile=profile,
            )
            result.server_committed = token_uses(self.running.server.data_dir, token_id)
            body_file.unlink()
            if not result.exhausted:
                self.expected_rate[close] = max(self.expected_rate[close] * 0.5, result.rate)
                return result
            say(f"  run {self.runs} ran out of bodies (attempt {attempt + 1}); repeating with more")
            rate_guess = max(rate_guess, result.rate) * 2
        return result


def step_https(
    wrk: str, running_server: RunningServer, work: Path, bodies: BodyMaker, sizes: Sizes, shape: WrkShape
) -> tuple[list[Case], list[Case]]:
    section(
        f"2. HTTPS: otward serve --workers {len(running_server.workers)}, "
        f"wrk -t{shape.threads} -c{shape.connections} "
        f"--latency, median of {sizes.repeats} run(s)"
    )
    server = running_server.server
    _, token = new_token(server.data_dir, 10)
    say(f"  check: {check_one_enrollment(server, make_csr_ders('check', 1)[0], token)}")
    health = [Case("GET /healthz, keep-alive", close=False), Case("GET /healthz, new connection each", True)]
    health_script = {
        close: write_lua(
            work / f"health-{'close' if close else 'keep'}.lua",
            bodies=None,
            per_thread=0,
            token="",
            close=close,
            expect="application/json",
        )
        for close in (False, True)
    }
    est = [
        Case("EST simpleenroll, keep-alive", close=False),
        Case("EST simpleenroll, new connection each", close=True),
    ]
    runner = EstRunner(wrk, running_server, work, bodies, shape)
    warm = runner.run(close=False, seconds=sizes.warmup_seconds)
    say(f"  warm-up (simpleenroll, keep-alive, {sizes.warmup_seconds} s, not reported): {warm.describe()}")
    for repeat in range(sizes.repeats):
        for case in health:
            result = run_wrk(
                wrk,
                running_server,
                health_script[case.close],
                seconds=sizes.health_seconds,
                shape=shape,
                close=case.close,
            )
            case.results.append(result)
            say(f"  [{repeat + 1}] {case.label:40} {result.describe()}")
        for case in est:
            result = runner.run(close=case.close, seconds=sizes.est_seconds)
            case.results.append(result)
            say(f"  [{repeat + 1}] {case.label:40} {result.describe()}")
    say(f"  CSR bodies for wrk: {bodies.made:,} made in {bodies.seconds:.1f} s (between runs, not timed)")
    return health, est


def report_connections(cases: Sequence[Case]) -> None:
    """Did wrk reconnect for every request with Connection: close, and keep connections otherwise?"""
    say()
    say("  connection check: answers carrying 'Connection: close' (wrk reconnects after those), and TCP")
    say("  connections accepted on the machine during the run (PassiveOpens; other traffic adds to it):")
    for case in cases:
        for result in case.results:
            accepted = "-" if result.accepted is None else f"{result.accepted:,}"
            say(
                f"    {case.label:40} {result.requests:7,} answers, "
                f"{result.closes:7,} with Connection: close, {accepted} accepted"
            )


def report_errors(cases: Sequence[Case]) -> list[str]:
    problems = []
    for case in cases:
        for index, result in enumerate(case.results, start=1):
            if not result.clean:
                problems.append(f"{case.label} run {index}: {result.describe()}")
                problems.extend(f"    sample answer: {s[:300]}" for s in result.samples[:3])
            if result.server_committed is not None and result.server_committed < result.good:
                problems.append(
                    f"{case.label} run {index}: the server committed {result.server_committed} token uses "
                    f"but wrk saw {result.good} good answers"
                )
    return problems


# --------------------------------------------------------------------------------------------------
# py-spy profile of one worker
# --------------------------------------------------------------------------------------------------


@dataclass
class Profile:
    samples: int
    threads: Counter[str]
    self_time: Counter[str]
    inclusive: Counter[str]
    callers: dict[str, Counter[str]]  # leaf frame -> its three callers, outermost first


def read_raw_profile(path: Path, *, thread: str | None = None) -> Profile:
    """py-spy ``--format raw --threads`` output (``thread;frame;...;frame count`` per line), optionally
    only the threads whose name contains ``thread``."""
    threads: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        name = re.sub(r"^thread \(\d+\): ?|\s*\(?0x[0-9a-f]+\)?", "", frames[0]).strip() or frames[0]
        if thread is not None and thread not in name:
            continue
        frames = frames[1:]
        threads[name] += count
        total += count
        if frames:
            self_time[frames[-1]] += count
            callers.setdefault(frames[-1], Counter())[" < ".join(reversed(frames[-4:-1]))] += count
            for frame in set(frames):
                inclusive[frame] += count
    return Profile(total, threads, self_time, inclusive, callers)


def _short(frame: str) -> str:
    match = re.match(r"^(.*) \((.*):(\d+)\)$", frame)
    if match is None:
        return frame
    function, path, line = match.groups()
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{function} ({path}:{line})"


# Frames whose inclusive share is printed when present (function names as py-spy reports them).
WATCHED = (
    "HttpToolsProtocol.data_received",
    "RequestResponseCycle.send",
    "observe_requests",
    "BaseHTTPMiddleware.__call__",
    "_request_der",
    "run_in_threadpool",
    "guard_failures",
    "EstService.enroll",
    "_device_id",
    "EnrollmentTokens.verify",
    "Owners.get",
    "IssuanceService.profile",
    "IssuanceService.sign",
    "validate_csr",
    "CertificateBuilder.sign",
    "AuditLog.event",
    "SqlDeviceStore.enroll_device",
    "GroupCommit.submit",
    "SqlCertificateStore._write_group",
    "_prepare_enrollment",
    "append",
    "Connection.commit",
    "DefaultDialect.do_commit",
    "DefaultDialect.do_execute",
    "_pkcs7",
    "_issued",
)


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0]


def print_profile(title: str, profile: Profile, top: int) -> list[dict[str, Any]]:
    say(f"  {title}: {profile.samples:,} samples")
    if not profile.samples:
        return []
    rows: list[dict[str, Any]] = []
    say("    by thread:")
    for name, count in profile.threads.most_common():
        say(f"      {100 * count / profile.samples:5.1f} %  {name}")
    say("    watched frames, inclusive (summed over every frame of that function name):")
    for watched in WATCHED:
        count = sum(c for f, c in profile.inclusive.items() if _function(f) == watched)
        if count:
            share = 100 * count / profile.samples
            say(f"      {share:5.1f} %  {watched}")
            rows.append({"profile": title, "kind": "inclusive", "frame": watched, "share_percent": share})
    say(f"    top {top} by self time, with the most frequent callers:")
    for frame, count in profile.self_time.most_common(top):
        share = 100 * count / profile.samples
        caller, _ = profile.callers[frame].most_common(1)[0]
        say(f"      {share:5.1f} %  {frame}")
        say(f"               < {caller}")
        rows.append(
            {"profile": title, "kind": "self", "frame": frame, "caller": caller, "share_percent": share}
        )
    return rows


SYSCALLS = {
    "clock_nanosleep": "sleeps (SQLite's busy handler waiting for the other worker's write lock)",
    "fdatasync": "durable commits (one per group of enrollments)",
    "fcntl": "file-lock calls (SQLite locking)",
    "futex": "futex calls (GIL hand-offs, thread pool and group-commit wake-ups)",
}


def step_profile(
    runner: EstRunner, running_server: RunningServer, sizes: Sizes, work: Path
) -> list[dict[str, Any]]:
    """py-spy on one worker (``--gil``: the thread holding the GIL, which bounds a worker process;
    ``--nonblocking``: the worker is not paused), and ``perf stat`` system-call counts of every worker."""
    pid = running_server.workers[0]
    section(f"3. --profile: py-spy --gil of worker {pid} during a keep-alive run, syscalls of every worker")
    py_spy, perf = shutil.which("py-spy"), shutil.which("perf")
    if py_spy is None:
        say("  ! py-spy not found: pip install py-spy")
        return []
    seconds = max(sizes.profile_seconds - 2, 2)
    rate = 200
    raw, counts = work / "py-spy.txt", work / "perf.txt"
    spy = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads", "--gil", "--nonblocking"]
    spy += ["--rate", str(rate), "--duration", str(seconds), "--output", str(raw)]
    events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
    workers = ",".join(str(p) for p in running_server.workers)
    perf_command = [perf or "perf", "stat", "-x", ",", "-o", str(counts), "-e", events, "-p", workers]

    @contextlib.contextmanager
    def recording() -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            spying = stack.enter_context(running(spy, work / "py-spy.log"))
            counting = stack.enter_context(running(perf_command, work / "perf.log")) if perf else None
            time.sleep(0.3)
            yield
            spying.wait(timeout=60)  # py-spy stops after --duration and writes its file
            if counting is not None:
                counting.send_signal(signal.SIGINT)  # perf stat writes its counts on SIGINT
                counting.wait(timeout=60)

    result = runner.run(close=False, seconds=sizes.profile_seconds, profile=recording)
    say(f"  profiled run (not reported as a figure; 'wrk CPU' includes py-spy and perf): {result.describe()}")
    rows: list[dict[str, Any]] = []
    if counts.exists():
        totals: Counter[str] = Counter()
        for line in counts.read_text().splitlines():
            parts = line.split(",")
            if len(parts) > 2 and parts[0].strip().isdigit():
                totals[parts[2].rsplit("sys_enter_", 1)[-1]] += int(parts[0])
        say(f"  system calls of the {len(running_server.workers)} workers per good enrollment (perf stat):")
        for name, meaning in SYSCALLS.items():
            per = totals[name] / max(result.good, 1)
            say(f"    {per:8.2f}  {name:16} {meaning}")
            rows.append({"profile": "syscalls", "frame": name, "per_enrollment": per})
    elif perf is None:
        say("  (perf not found: no system-call counts)")
    if not raw.exists():
        say(f"  ! py-spy wrote no profile: {log_tail(work / 'py-spy.log', 10)}")
        return rows
    profile = read_raw_profile(raw)
    held = 100 * profile.samples / (seconds * rate)
    say(f"  the GIL of worker {pid} was held in about {held:.0f} % of the {seconds * rate:,} sample times")
    return rows + print_profile(f"worker {pid}, samples of the thread holding the GIL", profile, top=25)


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference <= 0:
        return "-"
    ratio = value / reference
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3f}"


def print_summary(library: LibraryFigures, health: Sequence[Case], est: Sequence[Case]) -> list[str]:
    section("Summary")
    say("ratio = figure / reference (both measured in this run); below 1 means slower than the reference")
    say()
    say(f"  library, one core ({library.pinned}):")
    say(f"    issue(), profile device      {library.issue:6,.0f} /s  {library.issue_cpu_ms:5.2f} ms CPU each")
    enroll_ratio = _ratio(library.enroll, library.issue)
    say(
        f"    est.enroll()                 {library.enroll:6,.0f} /s  "
        f"{library.enroll_cpu_ms:5.2f} ms CPU each   ratio to issue(): {enroll_ratio}"
    )
    say(
        f"    est.enroll(), 4 threads      {library.enroll_threads:6,.0f} /s  "
        f"{library.enroll_threads_cpu_ms:5.2f} ms CPU each   "
        f"ratio to issue(): {_ratio(library.enroll_threads, library.issue)}"
    )
    say()
    header = (
        "figure",
        "/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server CPU ms/req",
        "cores: workers / machine",
        "÷ enroll()",
        "÷ issue()",
        "÷ /healthz",
        "target",
        "met?",
    )
    lines = [header]
    verdicts = []
    lines += [_summary_cells(case, None, library) for case in health]
    for case, reference in zip(est, health, strict=True):
        r = case.median
        if r is None:
            continue
        target = TARGET_NEW_CONNECTION if case.close else TARGET_KEEP_ALIVE
        errors = sum(x.errors for x in case.results)
        met = r.rate >= target and errors == 0
        verdicts.append(
            f"{case.label}: {r.rate:,.0f} /s against >= {target:,.0f} /s: "
            f"{'met' if met else 'NOT met'}{' (ERRORS in the run)' if errors else ''}"
        )
        lines.append(_summary_cells(case, reference, library, target=target, met=met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        say("  " + "  ".join(cells))
        if index == 0:
            say("  " + "  ".join("-" * w for w in widths))
    say()
    say("  Rates, latencies and CPU are those of the median run (by rate); errors are summed over all runs.")
    say("  cores: CPU time of each server worker and of the whole machine (every process) per second of run.")
    say("  p50/p99 are wrk's, from the request write to the complete answer: without connecting and the")
    say("  TLS handshake. With a new connection each, the mean cycle per request, handshake included, is")
    for case in (*health, *est):
        r = case.median
        if r is not None and case.close:
            say(f"    {case.label}: {r.cycle_ms:.1f} ms ({r.connections} connections kept busy)")
    say()
    for verdict in verdicts:
        say(f"  {verdict}")
    return verdicts


def _summary_cells(
    case: Case,
    reference: Case | None,
    library: LibraryFigures,
    *,
    target: float | None = None,
    met: bool | None = None,
) -> tuple[str, ...]:
    r = case.median
    if r is None:
        return (case.label, *("-" * 11))
    h = reference.median if reference else None
    est = reference is not None
    return (
        case.label,
        f"{r.rate:,.0f}",
        f"{r.p50_ms:.1f}",
        f"{r.p99_ms:.1f}",
        str(sum(x.errors for x in case.results)),
        f"{r.server_cpu_ms_per_request:.2f}",
        "+".join(f"{c / r.seconds:.2f}" for c in r.worker_cpu_s) + f" / {r.machine_busy_s / r.seconds:.2f}",
        _ratio(r.rate, library.enroll) if est else "-",
        _ratio(r.rate, library.issue) if est else "-",
        _ratio(r.rate, h.rate if h else None) if est else "-",
        f">= {target:,.0f}" if target else "-",
        "-" if met is None else ("yes" if met else "NO"),
    )


def otward_source() -> str:
    """Where otward was imported from and, inside a git work tree, its commit and local changes."""
    package = Path(otward.__file__).resolve().parent
    git = shutil.which("git")
    if git is None:
        return str(package)
    head = subprocess.run([git, "-C", str(package), "rev-parse", "--short", "HEAD"], **_QUIET)
    if head.returncode != 0:
        return str(package)
    changes = subprocess.run([git, "-C", str(package), "status", "--porcelain", "--", "."], **_QUIET)
    dirty = " with uncommitted changes under src/otward" if changes.stdout.strip() else ""
    return f"{package} (commit {head.stdout.strip()}{dirty})"


_QUIET: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 30, "check": False}


def machine_description(wrk: str) -> dict[str, str]:
    openssl = shutil.which("openssl")
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpus_usable": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else "?",
        "python": platform.python_version(),
        "python_ssl": ssl.OPENSSL_VERSION,
        "cryptography": f"{cryptography.__version__} ({openssl_backend.openssl_version_text()})",
        "openssl": version_of([openssl, "version"]) if openssl else "not found",
        "wrk": version_of([wrk, "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "otward": f"{otward.__version__} from {otward_source()}",
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    say(f"\n  interrupted by {signal.Signals(signum).name}: stopping processes, removing temporary files")
    raise SystemExit(128 + signum)  # unwinds through every finally: processes, temp dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short run per case (about 30 s)")
    parser.add_argument("--workers", type=int, default=2, help="otward serve --workers (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy one server worker during an extra keep-alive run"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (for debugging)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.connections < args.threads or args.workers < 1:
        parser.error("need --workers >= 1, --threads >= 1 and --connections >= --threads")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    shape = WrkShape(args.threads, args.connections)
    wrk = shutil.which("wrk")
    if wrk is None:
        say("est_bench: wrk not found; it is the load generator (a C client). Install it with:")
        say("    apt-get install -y wrk")
        return 2
    for variable in ("OTWARD_CA_PASSPHRASE", "OTWARD_CA_PASSPHRASE_FILE", "OTWARD_DATA", "OTWARD_DB"):
        os.environ.pop(variable, None)  # the benchmark's installations are its own
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    machine = machine_description(wrk)
    say(f"otward EST benchmark ({'quick' if args.quick else 'full'} run): python {' '.join(sys.argv)}")
    for key, value in machine.items():
        say(f"  {key}: {value}")
    details: dict[str, Any] = {
        "machine": machine,
        "sizes": asdict(sizes),
        "wrk": asdict(shape),
        "workers": args.workers,
        "command": " ".join(sys.argv),
    }
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="otward-est-bench-"))
    problems: list[str] = []
    try:
        library = step_library(work, sizes)
        server = Server(work / "server-data", free_port(), free_port())
        open_installation(server.data_dir, server.http_port)
        bodies = BodyMaker(work)
        with otward_server(server, workers=args.workers, log_path=work / "serve.log") as running_server:
            say()
            say(f"  otward serve: supervisor {running_server.process.pid}, workers {running_server.workers}")
            health, est = step_https(wrk, running_server, work, bodies, sizes, shape)
            report_connections((*health, *est))
            profile_rows: list[dict[str, Any]] = []
            if args.profile:
                runner = EstRunner(wrk, running_server, work, bodies, shape)
                runner.expected_rate = {False: est[0].median.rate if est[0].median else 1500.0, True: 600.0}
                profile_rows = step_profile(runner, running_server, sizes, work)
        problems = report_errors((*health, *est))
        verdicts = print_summary(library, health, est)
        details.update(
            library=asdict(library),
            https={c.label: [asdict(r) | {"rate": r.rate} for r in c.results] for c in (*health, *est)},
            verdicts=verdicts,
            profile=profile_rows,
        )
    finally:
        if args.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if problems:
        say()
        say("  !!! ERRORS during the HTTPS runs: the figures above include failed or missing answers !!!")
        for problem in problems:
            say(f"  !!! {problem}")
    else:
        say("  no errors: every wrk answer was 200 with a PKCS#7 (or /healthz JSON) body, no socket errors")
    details["errors"] = problems
    details["elapsed_s"] = time.perf_counter() - started
    say(f"  elapsed: {details['elapsed_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(details, indent=2, default=str) + "\n")
        say(f"  figures written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
