"""Use cases of ``otward assess tls|opcua|modbus``: probe targets concurrently, judge what was seen,
one findings document.

Each target is scanned by one worker thread holding at most one connection at a time, so
``concurrency`` bounds the connections open at once. A target that does not answer becomes a
``<kind>.unreachable`` finding; a probe that fails in any other way becomes ``<kind>.probe_failed``:
one broken device never ends the run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from otward.adapters.assess.modbus_probe import probe_modbus
from otward.adapters.assess.opcua_probe import ProbeFailedError, probe_opcua
from otward.adapters.assess.tls_probe import (
    ClientIdentity,
    TargetUnreachableError,
    probe_tls,
    self_signed_client_identity,
)
from otward.core.assess.certificates import CertificateExpectations
from otward.core.assess.findings import Finding, FindingsDocument, Severity
from otward.core.assess.modbus import assess_modbus
from otward.core.assess.opcua import assess_opcua
from otward.core.assess.targets import Target
from otward.core.assess.tls import assess_tls, unreachable_finding
from otward.errors import ConfigError

__all__ = ["DEFAULT_CONCURRENCY", "DEFAULT_TIMEOUT", "MAX_TRUST_BYTES", "assess_targets", "load_trust"]

DEFAULT_CONCURRENCY: Final = 16
DEFAULT_TIMEOUT: Final = 30.0
MAX_TRUST_BYTES: Final = 4 * 1024 * 1024
_REQUIREMENTS: Final = {
    "tls": ("CR 3.1", "CR 4.1"),
    "opcua": ("CR 3.1", "CR 4.1"),
    "modbus": ("CR 4.1", "NDR 1.13"),
}


def load_trust(path: Path | None) -> tuple[x509.Certificate, ...]:
    """The trust anchors: the PEM certificates in ``path``, or without it the system's CA bundle (none
    when there is no bundle: every chain is then reported as leading to an unknown root)."""
    if path is None:
        paths = ssl.get_default_verify_paths()
        candidate = paths.cafile or paths.openssl_cafile
        if not candidate or not Path(candidate).is_file():
            return ()
        path = Path(candidate)
        option = "system CA bundle"
    else:
        option = "--trust"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_TRUST_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}", rule="file") from None
    if len(data) > MAX_TRUST_BYTES:
        raise ConfigError(f"{option} {path} is larger than {MAX_TRUST_BYTES} bytes", rule="file")
    try:
        with warnings.catch_warnings():
            # a system bundle holds old roots with a serial cryptography frowns upon (negative, zero)
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise ConfigError(f"{option} {path}: not PEM certificates ({exc})", rule="trust") from None
    return certificates


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def assess_targets(
    kind: str,
    targets: Sequence[Target],
    *,
    trust: tuple[x509.Certificate, ...] = (),
    server_name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    now: datetime,
    tool: str,
    on_done: Callable[[Target], None] | None = None,
) -> FindingsDocument:
    """Scan ``targets`` (all of one ``kind``: tls, opcua or modbus) and return one findings document."""
    if kind not in _REQUIREMENTS:
        raise ConfigError(f"unknown assessment kind {kind!r}")
    if concurrency < 1 or timeout <= 0:
        raise ConfigError("--concurrency must be at least 1 and --timeout positive")
    findings: list[Finding] = []
    with self_signed_client_identity() as identity:

        def scan(target: Target) -> list[Finding]:
            return _scan_one(kind, target, trust, server_name, timeout, now, identity)

        with ThreadPoolExecutor(max_workers=min(concurrency, max(len(targets), 1))) as pool:
            futures = {pool.submit(scan, t): t for t in targets}
            for future in as_completed(futures):
                findings.extend(future.result())
                if on_done is not None:
                    on_done(futures[future])
    return FindingsDocument(kind, now, tool, tuple(t.label for t in targets), tuple(findings))


def _scan_one(
    kind: str,
    target: Target,
    trust: tuple[x509.Certificate, ...],
    server_name: str | None,
    timeout: float,
    now: datetime,
    identity: ClientIdentity,
) -> list[Finding]:
    label, note = target.label, target.name
    name = server_name or target.host
    try:
        if kind == "tls":
            observation = probe_tls(
                target.host,
                target.port,
                target=label,
                server_name=None if _is_ip(name) else name,
                budget_seconds=timeout,
                identity=identity,
                note=note,
            )
            return assess_tls(observation, CertificateExpectations(trust=trust, server_name=name), now=now)
        if kind == "opcua":
            seen = asyncio.run(
                probe_opcua(target.url or target.label, target=label, timeout=timeout, note=note)
            )
            return assess_opcua(seen, trust, name, now=now)
        return assess_modbus(probe_modbus(target.host, target.port, target=label, timeout=timeout, note=note))
    except TargetUnreachableError as exc:
        reason = f"{note}: {exc.message}" if note else exc.message
        return [unreachable_finding(kind, label, reason, _REQUIREMENTS[kind])]
    except ProbeFailedError as exc:
        return [_probe_failed(kind, label, exc.message)]
    except Exception as exc:  # noqa: BLE001 - one target's failure must not end a scan of thousands
        return [_probe_failed(kind, label, f"{type(exc).__name__}: {exc}")]


def _probe_failed(kind: str, label: str, reason: str) -> Finding:
    return Finding(
        check=f"{kind}.probe_failed",
        severity=Severity.MEDIUM,
        target=label,
        title="Target answered, but could not be assessed",
        evidence=reason,
        recommendation="Check that the port serves the protocol assessed; assess it again.",
        requirements=_REQUIREMENTS[kind],
    )
