"""``otward deploy systemd``: the unit files a plant's IT installs otward with (docs/deploy.md)."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from otward.cli.common import JsonOption, console, handle_errors, print_json
from otward.config import CONFIG_FILE, load_settings
from otward.deploy.systemd import SystemdOptions, write_units
from otward.errors import OtwardError

__all__ = ["app"]

app = typer.Typer(help="Deployment files: systemd units.", no_args_is_help=True)


def _otward_command() -> str:
    """The installed ``otward`` executable, or this interpreter running the module."""
    found = shutil.which("otward")
    if found:
        return str(Path(found).resolve())
    return f"{shlex.quote(sys.executable)} -m otward"


@app.command("systemd")
@handle_errors
def systemd(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the unit files to")],
    data: Annotated[
        Path, typer.Option("--data", help="The service's data directory (its only writable path)")
    ] = Path("/var/lib/otward"),
    user: Annotated[str, typer.Option("--user", help="The dedicated account the services run as")] = "otward",
    group: Annotated[str | None, typer.Option("--group", help="Its group [default: --user]")] = None,
    host: Annotated[str, typer.Option("--host", help="Address otward serve listens on")] = "0.0.0.0",  # noqa: S104
    port: Annotated[int, typer.Option("--port", help="HTTPS API port")] = 8443,
    http_port: Annotated[int, typer.Option("--http-port", help="Plain-HTTP port for CRL and OCSP")] = 8080,
    otward: Annotated[
        str | None,
        typer.Option("--otward", help="Command that runs otward [default: the installed otward]"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write otward.service, otward-gateway@.service and otward-edge@.service, hardened (own user,
    read-only system, no capabilities unless a port is below 1024). LimitNOFILE follows
    [server.limits] of DATA's config.toml when it is readable here."""
    max_connections = 1000
    if (data / CONFIG_FILE).is_file():
        try:
            max_connections = load_settings(data).server.limits.max_connections
        except (OtwardError, OSError) as exc:
            console.print(f"[yellow]{data / CONFIG_FILE} not read ({exc}); LimitNOFILE for the defaults")
    options = SystemdOptions(
        otward=otward or _otward_command(),
        data_dir=data,
        user=user,
        group=group,
        host=host,
        port=port,
        http_port=http_port,
        max_connections=max_connections,
    )
    written = write_units(options, out)
    if as_json:
        print_json({"written": [str(p) for p in written]})
        return
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    console.print(
        "next: useradd --system --home-dir /var/lib/otward --shell /usr/sbin/nologin "
        f"{user}; install -d -o {user} -g {group or user} -m 0700 {data}; copy the units to "
        "/etc/systemd/system; systemctl daemon-reload; systemctl enable --now otward (docs/deploy.md)",
        highlight=False,
    )
