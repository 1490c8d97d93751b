"""``otward audit list|verify|export|sign``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from otward.cli.common import (
    DataOption,
    DbOption,
    ForceOption,
    JsonOption,
    check_output,
    console,
    handle_errors,
    open_pki,
    output_file,
    print_json,
)
from otward.core.audit import format_time
from otward.services.audit import to_jsonl, to_syslog
from otward.services.queries import audit_filter

app = typer.Typer(help="The tamper-evident audit trail: list, verify, export.", no_args_is_help=True)


@app.command("list")
@handle_errors
def list_(
    since: Annotated[
        str | None, typer.Option("--since", help="RFC 3339 time or a duration ago, e.g. 24h")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="RFC 3339 time or a duration ago")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Event type, e.g. cert.issued")] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="Subject, e.g. a serial or token:<id>")
    ] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="success or failure")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100000)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List events in chain order."""
    with open_pki(data, db) as pki:
        query = audit_filter(
            pki.clock(), since=since, until=until, type=type_, subject=subject, outcome=outcome
        )
        records, total = pki.stores.audit.list_audit(query, limit=limit, offset=offset)
    if as_json:
        items = [{"sequence": r.sequence, **r.event.to_dict(), "hash": r.hash.hex()} for r in records]
        print_json({"items": items, "total": total, "limit": limit, "offset": offset})
        return
    table = Table(
        "seq",
        "time (UTC)",
        "component",
        "type",
        "subject",
        "outcome",
        "actor",
        "reason",
        title=f"{len(records)} of {total}",
    )
    for r in records:
        e = r.event
        table.add_row(
            str(r.sequence),
            format_time(e.time)[:19].replace("T", " "),
            e.component,
            e.type.value,
            e.subject,
            e.outcome.value,
            e.details.get("actor", ""),
            e.reason or "",
        )
    console.print(table)


@app.command("verify")
@handle_errors
def verify(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Walk the hash chain and the signed heads; exit 1 and name the first bad record if tampered."""
    with open_pki(data, db) as pki:
        report = pki.audit.verify()
    check = report.check
    if as_json:
        print_json(
            {
                "ok": check.ok,
                "records": check.records,
                "signed_heads": check.heads,
                "head_sequence": report.head_sequence,
                "first_bad_sequence": check.first_bad_sequence,
                "problem": check.problem,
            }
        )
    elif check.ok:
        console.print(f"audit trail intact: {check.records} records, {check.heads} signed heads")
    else:
        console.print(
            f"[bold red]audit trail broken[/] at record {check.first_bad_sequence}: {check.problem}"
        )
    if not check.ok:
        raise typer.Exit(1)


@app.command("export")
@handle_errors
def export(
    format_: Annotated[str, typer.Option("--format", help="jsonl or syslog (RFC 5424)")] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here (mode 0600) instead of stdout")
    ] = None,
    force: ForceOption = False,
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Export the whole trail as JSON Lines or RFC 5424 syslog messages (one per line).

    The trail names people, devices and addresses: --out creates the file readable by its owner
    only, and replaces an existing one only with --force."""
    if format_ not in ("jsonl", "syslog"):
        raise typer.BadParameter("--format must be jsonl or syslog")
    if out is not None:
        check_output(out, "--out", force=force)
    with open_pki(data, db) as pki:
        records = pki.stores.audit.iter_audit()
        lines = to_jsonl(records) if format_ == "jsonl" else (to_syslog(r) + "\n" for r in records)
        if out is None:
            for line in lines:
                typer.echo(line, nl=False)
        else:
            with output_file(out, private=True) as handle:
                handle.writelines(lines)


@app.command("sign")
@handle_errors
def sign(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Sign the current chain head now (the service also does this every minute and on shutdown)."""
    with open_pki(data, db) as pki:
        head = pki.audit.sign_head(force=True)
    result = {"sequence": head.sequence, "hash": head.hash.hex()} if head else None
    if as_json:
        print_json(result)
    else:
        console.print(f"signed head at record {head.sequence}" if head else "the audit trail is empty")
