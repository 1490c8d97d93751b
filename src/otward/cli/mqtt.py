"""``otward mqtt-config``: a Mosquitto mutual-TLS listener and ACL for otward devices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    err_console,
    handle_errors,
    open_pki,
    print_json,
)
from otward.services.channels import Channels, MosquittoResult, reload_mosquitto

__all__ = ["mqtt_config"]


def _report(result: MosquittoResult, reloaded: int | None, as_json: bool, *, refreshed: bool) -> None:
    info: dict[str, Any] = {
        "directory": str(result.directory),
        "config": str(result.files["config"]),
        "device_cas": list(result.device_cas),
        "withdrawn_cas": list(result.withdrawn_cas),
        "devices": [{"owner": d.owner, "device_id": d.device_id} for d in result.devices],
        "conflicts": list(result.conflicts),
        "broker_serial": result.broker_serial,
        "broker_reissued": result.broker_reissued,
        "reloaded_pid": reloaded,
    }
    if as_json:
        print_json(info)
        return
    if refreshed:  # the listener configuration and the broker's key were left as they were
        console.print(
            f"refreshed the CRL, CA and ACL files in [bold]{escape(info['directory'])}[/]", highlight=False
        )
    else:
        console.print(
            f"wrote [bold]{escape(info['config'])}[/] and its files in {escape(info['directory'])}",
            highlight=False,
        )
    console.print(f"  device CAs: {', '.join(result.device_cas)}", highlight=False)
    console.print(
        f"  ACL: {len(result.devices)} device(s), each on otward/<owner>/<device>/#", highlight=False
    )
    if result.broker_serial:
        state = "issued" if result.broker_reissued else "kept"
        console.print(f"  broker certificate {result.broker_serial} ({state})", highlight=False)
    for name in result.withdrawn_cas:
        err_console.print(f"[yellow]warning:[/] CA '{name}' is revoked: left out of the CA file and ACL")
    for device_id in result.conflicts:
        err_console.print(
            f"[yellow]warning:[/] device id '{device_id}' is held by two owners: left out of the ACL"
        )
    if reloaded is not None:
        console.print(f"  sent SIGHUP to Mosquitto (pid {reloaded})", highlight=False)
    elif result.broker_serial is None:
        console.print("  reload Mosquitto (SIGHUP, or --reload-pid) for it to read the new files")


@handle_errors
def mqtt_config(
    out: Annotated[Path, typer.Option("--out", help="Directory for the Mosquitto files")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Listener port")] = 8883,
    host: Annotated[str, typer.Option("--host", help="Listener address")] = "127.0.0.1",
    ca: Annotated[
        list[str] | None,
        typer.Option(
            "--ca", help="CA whose device certificates are accepted (repeatable; default: every owner's CA)"
        ),
    ] = None,
    server_name: Annotated[
        list[str] | None,
        typer.Option("--server-name", help="DNS name or IP in the broker certificate (default: --host)"),
    ] = None,
    server_ca: Annotated[
        str, typer.Option("--server-ca", help="CA that issues the broker certificate")
    ] = "issuing",
    file_owner: Annotated[
        str | None,
        typer.Option("--file-owner", help="User owning the files and key (e.g. mosquitto; needs root)"),
    ] = None,
    renew: Annotated[
        bool, typer.Option("--renew", help="Issue a new broker key and certificate now")
    ] = False,
    refresh_crl: Annotated[
        bool,
        typer.Option("--refresh-crl", help="Only rewrite the CRL, CA and ACL files of an existing --out"),
    ] = False,
    reload_pid: Annotated[
        int | None, typer.Option("--reload-pid", help="Send SIGHUP to this Mosquitto process afterwards")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a Mosquitto listener (mutual TLS, CRL, ACL per device) or refresh its CRL and ACL."""
    with open_pki(data, db) as pki:
        channels = Channels.for_pki(pki)
        if refresh_crl:
            result = channels.refresh_mosquitto(out)
        else:
            result = channels.write_mosquitto(
                out,
                port=port,
                host=host,
                device_cas=ca or (),
                server_names=server_name or (),
                server_ca=server_ca,
                renew=renew,
                file_owner=file_owner,
                actor=cli_actor(),
            )
    if reload_pid is not None:
        reload_mosquitto(reload_pid)
    _report(result, reload_pid, as_json, refreshed=refresh_crl)
