"""Targets of a network assessment: one on the command line, or many from a file.

A targets file is either one target a line (``#`` starts a comment) or a CSV exported from an asset
inventory: a header naming a ``host`` (or ``address``, ``ip``, ``hostname``) column and optionally
``port`` and ``name`` (or ``asset``) columns, and for OPC UA a ``url`` column.
"""

from __future__ import annotations

import csv
import ipaddress
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORTS", "MAX_TARGETS", "Target", "parse_target", "parse_targets"]

DEFAULT_PORTS: Final = {"tls": 443, "opcua": 4840, "modbus": 502}
MAX_TARGETS: Final = 100_000
_HOST_COLUMNS: Final = ("host", "address", "ip", "hostname", "ip_address", "ip address")
_NAME_COLUMNS: Final = ("name", "asset", "asset_name", "device")
_HOST: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")


@dataclass(frozen=True)
class Target:
    """One endpoint: ``host`` and ``port``, the OPC UA ``url`` (opcua only) and an inventory ``name``."""

    kind: str
    host: str
    port: int
    name: str | None = None
    url: str | None = None

    @property
    def label(self) -> str:
        """What findings name the target by: the URL for OPC UA, else ``host:port`` (``[v6]:port``)."""
        if self.url is not None:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _host_port(text: str, kind: str, default_port: int | None) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected [IPv6]:PORT")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""  # a bare name, or an IPv6 address without a port
    if ":" in host:
        ipaddress.IPv6Address(host)  # raises ValueError on nonsense
    elif not _HOST.fullmatch(host):
        raise ValueError(f"{text!r} is not HOST[:PORT]")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: port must be 1..65535")
    return host, int(port_text)


def parse_target(text: str, kind: str, name: str | None = None, *, port_required: bool = False) -> Target:
    """One target as given on the command line or a line of a targets file; ValueError if malformed."""
    if kind not in DEFAULT_PORTS:
        raise ValueError(f"unknown assessment kind {kind!r}")
    text = text.strip()
    if kind == "opcua":
        url = text if "://" in text else f"opc.tcp://{text}"
        parts = urlsplit(url)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError(f"{text!r} is not an opc.tcp://HOST[:PORT] URL")
        try:
            port = parts.port or DEFAULT_PORTS["opcua"]
        except ValueError:
            raise ValueError(f"{text!r}: port must be 1..65535") from None
        host = parts.hostname
        netloc = f"[{host}]" if ":" in host else host
        return Target(kind, host, port, name, f"opc.tcp://{netloc}:{port}{parts.path}")
    host, port = _host_port(text, kind, None if port_required else DEFAULT_PORTS[kind])
    return Target(kind, host, port, name)


def parse_targets(text: str, kind: str, source: str = "targets") -> list[Target]:
    """Every target in a targets file (plain or CSV); ValueError naming ``source``, the line and the fault.

    Duplicates are dropped (first wins) so a target is scanned once.
    """
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise ValueError(f"{source}: no targets (one a line, or a CSV with a host column)")
    header = [h.strip().lower() for h in next(csv.reader([lines[0][1]]))]
    targets: list[Target] = []
    if "," in lines[0][1] or header[0] in _HOST_COLUMNS:
        targets = _parse_csv(lines, header, kind, source)
    else:
        for number, line in lines:
            try:
                targets.append(parse_target(line.split("#", 1)[0], kind))
            except ValueError as exc:
                raise ValueError(f"{source} line {number}: {exc}") from None
            if len(targets) > MAX_TARGETS:
                raise ValueError(f"{source}: more than {MAX_TARGETS} targets")
    first: dict[str, Target] = {}
    for target in targets:
        first.setdefault(target.label, target)
    return list(first.values())


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    return next((header.index(n) for n in names if n in header), None)


def _parse_csv(lines: list[tuple[int, str]], header: list[str], kind: str, source: str) -> list[Target]:
    host_at = _column(header, _HOST_COLUMNS)
    url_at = _column(header, ("url", "endpoint")) if kind == "opcua" else None
    if host_at is None and url_at is None:
        raise ValueError(f"{source}: the CSV header has no host/address column ({', '.join(header)})")
    port_at, name_at = _column(header, ("port",)), _column(header, _NAME_COLUMNS)
    targets = []
    for (number, _), row in zip(lines[1:], csv.reader(line for _, line in lines[1:]), strict=True):
        cells = [c.strip() for c in row]

        def cell(index: int | None, cells: list[str] = cells) -> str:
            return cells[index] if index is not None and index < len(cells) else ""

        try:
            name = cell(name_at) or None
            if cell(url_at):
                targets.append(parse_target(cell(url_at), kind, name))
                continue
            host = cell(host_at)
            if not host:
                raise ValueError("empty host")
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"  # a bare IPv6 address in its own column
            port = cell(port_at)
            targets.append(parse_target(f"{host}:{port}" if port else host, kind, name))
        except ValueError as exc:
            raise ValueError(f"{source} line {number}: {exc}") from None
        if len(targets) > MAX_TARGETS:
            raise ValueError(f"{source}: more than {MAX_TARGETS} targets")
    if not targets:
        raise ValueError(f"{source}: the CSV has a header but no targets")
    return targets
