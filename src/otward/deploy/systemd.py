"""systemd unit files for otward's three long-running commands, rendered from the templates shipped
in this package: ``otward.service`` (``otward serve``), ``otward-gateway@.service`` and
``otward-edge@.service`` (one instance per gateway or asset), each confined to what it needs (its
own user, a read-only system but for its state, no capabilities beyond binding a port below 1024).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from otward.adapters.fdlimit import RESERVED_FILES
from otward.errors import ConfigError

__all__ = ["UNIT_FILES", "SystemdOptions", "render_units", "write_units"]

UNIT_FILES = ("otward.service", "otward-gateway@.service", "otward-edge@.service")
_GATEWAY_CONNECTIONS = 1000  # otward gateway --max-connections default; two descriptors each
_EDGE_CONNECTIONS = 256  # otward edge serve --max-connections default
_PRIVILEGED_BELOW = 1024


@dataclass(frozen=True)
class SystemdOptions:
    """What the units are rendered with: the command, the account, the data directory and the
    service's address and ports (a port below 1024 keeps CAP_NET_BIND_SERVICE, none other does)."""

    otward: str  # the otward executable (or "/path/python -m otward")
    data_dir: Path = Path("/var/lib/otward")
    user: str = "otward"
    group: str | None = None  # the user's name when None
    host: str = "0.0.0.0"  # noqa: S104 - a service unit listens for the network by default
    port: int = 8443
    http_port: int = 8080
    max_connections: int = 1000  # [server.limits] max_connections: per port


def _check(options: SystemdOptions) -> None:
    for label, name in (("--user", options.user), ("--group", options.group or options.user)):
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name[0] == "-":
            raise ConfigError(f"{label} '{name}' is not a valid account name", rule="deploy-user")
    if not options.data_dir.is_absolute():
        raise ConfigError(f"--data {options.data_dir} must be an absolute path in a unit file")
    if any(c.isspace() or c in "%$\\\"'" for c in str(options.data_dir)):
        raise ConfigError(f"--data {options.data_dir}: use a path without spaces, quotes, % or $")
    for label, port in (("--port", options.port), ("--http-port", options.http_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{label} {port} is not a TCP port")


def render_units(options: SystemdOptions) -> dict[str, str]:
    """The unit files' names and contents."""
    _check(options)
    privileged = min(options.port, options.http_port) < _PRIVILEGED_BELOW
    values = {
        "@OTWARD@": options.otward,
        "@DATA@": str(options.data_dir),
        "@USER@": options.user,
        "@GROUP@": options.group or options.user,
        "@HOST@": shlex.quote(options.host),
        "@PORT@": str(options.port),
        "@HTTP_PORT@": str(options.http_port),
        "@CAPABILITIES@": "CAP_NET_BIND_SERVICE" if privileged else "",
        "@LIMIT_NOFILE@": str(2 * options.max_connections + RESERVED_FILES),
        "@GATEWAY_LIMIT_NOFILE@": str(2 * _GATEWAY_CONNECTIONS + RESERVED_FILES),
        "@EDGE_LIMIT_NOFILE@": str(_EDGE_CONNECTIONS + RESERVED_FILES),
    }
    units = {}
    for name in UNIT_FILES:
        text = resources.files("otward.deploy").joinpath(name).read_text(encoding="utf-8")
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        units[name] = text
    return units


def write_units(options: SystemdOptions, out: Path) -> list[Path]:
    """Write the unit files into ``out`` (created if missing; mode 0644, as systemd expects)."""
    units = render_units(options)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        path = out / name
        aside = out / f".{name}.tmp"
        aside.write_text(text, encoding="utf-8")
        os.chmod(aside, 0o644)
        os.replace(aside, path)
        written.append(path)
    return written
