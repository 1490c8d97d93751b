"""``otward audit list|verify|export|sign``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from otward.adapters.audit_file import check_file
from otward.cli.common import (
    Column,
    DataOption,
    DbOption,
    ForceOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    output_file,
    print_json,
    print_listing,
    warn,
)
from otward.core.audit import TrailStatus, format_time
from otward.core.syslog import to_syslog
from otward.services.audit import to_jsonl
from otward.services.pki import load_trust_anchors
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
    items = [{"sequence": r.sequence, **r.event.to_dict(), "hash": r.hash.hex()} for r in records]
    columns: dict[str, Column] = {"seq": "sequence"}
    columns["time (UTC)"] = lambda row: row["time"][:19].replace("T", " ")
    columns |= {"component": "component", "type": "type", "subject": "subject", "outcome": "outcome"}
    columns["actor"] = lambda row: row.get("details", {}).get("actor")
    columns["reason"] = lambda row: row.get("reason")
    print_listing(
        items,
        columns,
        as_json=as_json,
        summary=count_line(len(items), total, "event"),
        json_value={"items": items, "total": total, "limit": limit, "offset": offset},
    )


@app.command("verify")
@handle_errors
def verify(
    trust: Annotated[
        Path | None,
        typer.Option(
            "--trust",
            help="Root certificate(s), PEM, that the head signer must chain to [default: DATA/root.pem]",
            show_default=False,
        ),
    ] = None,
    max_unsigned_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-unsigned-seconds",
            min=0,
            help="How long records may stay unsigned [default: audit.max_unsigned_seconds, 300]",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Check a gateway's or gatekeeper's trail file (--audit-file, STATE/trail.jsonl) instead"
            " of the installation's trail: its hash chain, read only",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the trail against its signed heads; exit 1 and name the first bad record if it was
    tampered with, is cut short, or has records unsigned for too long. With --file, check the hash
    chain of a gateway's or gatekeeper's trail file."""
    if file is not None:
        _verify_file(file, as_json)
        return
    anchors = load_trust_anchors(trust) if trust is not None else None
    limit = timedelta(seconds=max_unsigned_seconds) if max_unsigned_seconds is not None else None
    with open_pki(data, db) as pki:
        report = pki.audit.verify(trust=anchors, max_unsigned=limit)
    check = report.check
    if as_json:
        print_json(report.summary())
    elif check.status is TrailStatus.INTACT:
        signed = f", newest head {format_time(check.signed_at)}" if check.signed_at else ""
        console.print(f"audit trail intact: {check.records} records, {check.heads} signed heads{signed}")
    elif check.status is TrailStatus.UNSIGNED_TAIL:
        age = check.unsigned_for.total_seconds() if check.unsigned_for is not None else 0.0
        console.print(
            f"[yellow]audit trail intact up to record {check.signed_sequence}[/]; {check.unsigned} newer "
            f"records not signed yet (unsigned for {age:.0f} s, allowed "
            f"{report.max_unsigned.total_seconds():.0f} s)"
        )
    else:
        where = f" at record {check.first_bad_sequence}" if check.first_bad_sequence is not None else ""
        console.print(f"[bold red]audit trail broken[/]{where}: {check.problem}")
    if not check.ok:
        raise typer.Exit(1)


def _verify_file(path: Path, as_json: bool) -> None:
    found = check_file(path)
    check = found.check
    if as_json:
        print_json({"file": str(path), **found.summary()})
    elif check.ok:
        console.print(
            f"trail file intact: {check.records} records, hash chain only (no signed heads: push it to"
            " the central server, where the gatekeeper's and gateway's trails are kept, for more)",
            highlight=False,
        )
        if found.torn_tail:
            warn("the last line was cut off by a crash while it was written; its writer drops it")
    else:
        where = f" at record {check.first_bad_sequence}" if check.first_bad_sequence is not None else ""
        console.print(f"[bold red]trail file broken[/]{where}: {escape(check.problem or '')}")
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
def sign(
    accept_rollback: Annotated[
        bool,
        typer.Option(
            "--accept-rollback",
            help="Sign although the trail no longer reaches the last head this installation signed "
            "(after restoring a backup); recorded as an integrity.failed event",
        ),
    ] = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign the current chain head now (the service does this on its own schedule and on shutdown)."""
    with open_pki(data, db) as pki:
        head = pki.audit.sign_head(force=True, accept_rollback=cli_actor() if accept_rollback else None)
    result = {"sequence": head.sequence, "hash": head.hash.hex()} if head else None
    if as_json:
        print_json(result)
    else:
        console.print(f"signed head at record {head.sequence}" if head else "the audit trail is empty")
