"""``otward log sth|proof|consistency``: the issuance transparency log."""

from __future__ import annotations

import base64
from typing import Annotated

import typer

from otward.cli.common import DataOption, DbOption, JsonOption, console, handle_errors, open_pki, print_json
from otward.core.audit import format_time
from otward.core.records import format_serial, parse_serial
from otward.errors import InvalidRequestError

app = typer.Typer(help="The issuance transparency log (RFC 9162 style Merkle tree).", no_args_is_help=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@app.command("sth")
@handle_errors
def sth(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Print the current signed tree head (signing a new one if the log grew)."""
    with open_pki(data, db) as pki:
        head = pki.transparency.tree_head()
    out = {
        "tree_size": head.tree_size,
        "timestamp": format_time(head.timestamp),
        "root_hash": _b64(head.root_hash),
        "signature": _b64(head.signature),
        "signer_serial": format_serial(head.signer_serial),
    }
    if as_json:
        print_json(out)
    else:
        for key, value in out.items():
            console.print(f"[bold]{key:>13}[/]  {value}", highlight=False)


@app.command("proof")
@handle_errors
def proof(
    serial: Annotated[str, typer.Argument(help="Certificate serial (hex)")],
    tree_size: Annotated[
        int | None, typer.Option("--tree-size", min=1, help="Prove against this size")
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the inclusion proof (audit path) of a certificate."""
    try:
        serial_number = parse_serial(serial)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), rule="serial") from None
    with open_pki(data, db) as pki:
        result = pki.transparency.inclusion(serial_number, tree_size)
    path = [_b64(p) for p in result.audit_path]
    if as_json:
        print_json(
            {
                "serial": result.serial,
                "leaf_index": result.leaf_index,
                "tree_size": result.tree_size,
                "leaf_hash": _b64(result.leaf_hash),
                "audit_path": path,
            }
        )
    else:
        console.print(f"certificate {result.serial}: leaf {result.leaf_index} of {result.tree_size}")
        for node in path:
            console.print(f"  {node}", highlight=False)


@app.command("consistency")
@handle_errors
def consistency(
    old_size: Annotated[int, typer.Argument(help="Size of the older tree")],
    new_size: Annotated[int, typer.Argument(help="Size of the newer tree")],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the proof that the older tree is a prefix of the newer one."""
    with open_pki(data, db) as pki:
        nodes = pki.transparency.consistency(old_size, new_size)
    if as_json:
        print_json({"first": old_size, "second": new_size, "consistency": [_b64(n) for n in nodes]})
    else:
        console.print(f"consistency {old_size} -> {new_size}:")
        for node in nodes:
            console.print(f"  {_b64(node)}", highlight=False)
