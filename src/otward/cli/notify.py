"""``otward notify check|test|list``: notifications to webhooks and e-mail (docs/notifications.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape

from otward.cli.common import (
    DataOption,
    DbOption,
    JsonOption,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    print_json,
    print_listing,
)
from otward.errors import ConfigError
from otward.services.notifications import Notifier

app = typer.Typer(help="Notifications to webhooks and e-mail.", no_args_is_help=True)

_STATUSES = ("pending", "sent", "failed")


@contextlib.contextmanager
def _notifier(data: DataOption, db: DbOption) -> Iterator[Notifier]:
    with open_pki(data, db) as pki:
        if not Notifier.configured(pki.settings):
            raise ConfigError(
                "no notification channel is configured: add [[notify.webhook]] or [notify.smtp] to "
                "config.toml (docs/notifications.md)",
                rule="notify-channel",
            )
        notifier = Notifier.for_pki(pki)
        try:
            yield notifier
        finally:
            notifier.close()


@app.command("check")
@handle_errors
def check(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Run the checks now, queue what is new and send everything due (the service does this every
    [notify] interval)."""
    with _notifier(data, db) as notifier:
        report = notifier.check(cli_actor())
    drained = report.drained
    if as_json:
        print_json(
            {
                "queued": [
                    {"id": e.notification_id, "event": e.event, "subject": e.subject, "channel": e.channel}
                    for e in report.queued
                ],
                "sent": drained.sent,
                "retrying": drained.retrying,
                "failed": drained.failed,
            }
        )
    else:
        for entry in report.queued:
            console.print(
                f"queued {escape(entry.event)} ({escape(entry.subject)}) for {escape(entry.channel)}"
            )
        console.print(
            f"{len(report.queued)} queued; sent {drained.sent}, retrying {drained.retrying}, "
            f"failed {drained.failed}"
        )
    if drained.failed:
        raise typer.Exit(1)


@app.command("test")
@handle_errors
def send_test(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Send a test message to every configured channel now; exit 1 if any did not take it."""
    with _notifier(data, db) as notifier:
        results = notifier.send_test(cli_actor())
    if as_json:
        print_json([{"channel": r.channel, "ok": r.error is None, "error": r.error} for r in results])
    else:
        for r in results:
            verdict = "[green]ok[/]" if r.error is None else f"[red]failed[/]: {escape(r.error)}"
            console.print(f"{escape(r.channel)}: {verdict}", highlight=False)
    if any(r.error is not None for r in results):
        raise typer.Exit(1)


@app.command("list")
@handle_errors
def list_(
    status: Annotated[
        str | None, typer.Option("--status", help="pending, sent or failed [default: all]")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="Newest rows shown")] = 100,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The outbox, newest first: each notification per channel, its attempts and last error."""
    if status is not None and status not in _STATUSES:
        raise typer.BadParameter(f"--status must be one of {', '.join(_STATUSES)}")
    with open_pki(data, db) as pki:
        rows = pki.stores.notifications.list_outbox(status=status, limit=limit)
    listed = [
        {
            "id": r.notification_id,
            "event": r.event,
            "subject": r.subject,
            "channel": r.channel,
            "status": r.status,
            "attempts": r.attempts,
            "created_at": r.created_at,
            "next_attempt_at": r.next_attempt_at if r.status == "pending" else None,
            "last_error": r.last_error,
        }
        for r in rows
    ]
    print_listing(
        listed,
        {
            "id": "id",
            "event": "event",
            "subject": "subject",
            "channel": "channel",
            "status": "status",
            "attempts": "attempts",
            "created": "created_at",
            "next attempt": "next_attempt_at",
            "last error": "last_error",
        },
        as_json=as_json,
        summary=count_line(len(listed), None, "notification"),
    )
