"""``otward signer list|rotate``: the service's own signing keys (audit heads and tree heads; edge
bundles and credentials)."""

from __future__ import annotations

from typing import Annotated

import typer
from cryptography import x509

from otward.cli.approvals import gate
from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    handle_errors,
    open_pki,
    print_json,
)
from otward.core.approvals import Operation
from otward.core.revocation import parse_reason
from otward.errors import InvalidRequestError
from otward.services.signers import SIGNERS, SignerInfo

app = typer.Typer(help="Service signers: the audit signer and the edge signer.", no_args_is_help=True)


def _print(info: SignerInfo) -> None:
    item = info.summary()
    state = "[red]revoked[/]" if info.revoked else "valid"
    console.print(
        f"{item['name']:<6} serial {item['serial']}  {item['not_before']:%Y-%m-%d} .. "
        f"{item['not_after']:%Y-%m-%d}  {state}"
    )


@app.command("list")
@handle_errors
def list_signers(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """The current certificate of each signer (signers are made on first use)."""
    with open_pki(data, db) as pki:
        infos = [info for name in SIGNERS if (info := pki.signers.current(name)) is not None]
    if as_json:
        print_json([info.summary() for info in infos])
        return
    if not infos:
        console.print("no signer yet: they are made on first use")
    for info in infos:
        _print(info)


@app.command("rotate")
@handle_errors
def rotate(
    name: Annotated[str, typer.Argument(help=f"Which signer: {', '.join(SIGNERS)}")],
    revoke_previous: Annotated[
        str | None,
        typer.Option(
            "--revoke-previous",
            metavar="REASON",
            help="Also revoke the previous certificate (RFC 5280 reason, e.g. keyCompromise, superseded); "
            "without it, what the previous key signed keeps verifying until it expires",
        ),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a signer a new key and certificate from the issuing CA (audited). The service and the
    gatekeepers pick it up on their own: new bundles are signed by the new edge signer and list the
    previous one, or name it revoked."""
    reason: x509.ReasonFlags | None = parse_reason(revoke_previous) if revoke_previous else None
    with open_pki(data, db) as pki:
        if name not in SIGNERS:  # refused now, not at approval
            raise InvalidRequestError(
                f"no signer '{name}': signers are {', '.join(SIGNERS)}", rule="signer-name"
            )
        if reason is not None and gate(
            pki, Operation.SIGNER_ROTATE_REVOKE, {"name": name, "reason": revoke_previous}, as_json=as_json
        ):
            return
        info = pki.signers.rotate(name, revoke_previous=reason, actor=cli_actor())
    if as_json:
        print_json(info.summary())
        return
    console.print(f"rotated the {name} signer:")
    _print(info)
