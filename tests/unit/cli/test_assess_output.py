from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from otward.cli.assess import emit_findings
from otward.cli.common import console
from otward.core.assess.findings import Finding, FindingsDocument, Severity

LONG_CHECK = "selfcheck.permissions.responder_key_file"


def test_the_table_shows_a_long_check_id_whole_on_a_narrow_terminal() -> None:
    finding = Finding(
        LONG_CHECK, Severity.HIGH, "otward", "key readable by others", "mode 0644", "chmod 0600", ("CR 1.5",)
    )
    document = FindingsDocument("self", datetime(2026, 12, 7, tzinfo=UTC), "otward", ("otward",), (finding,))
    width = console.width
    console.width = 80
    try:
        with console.capture() as captured, pytest.raises(typer.Exit) as ended:
            emit_findings(document, as_json=False)
    finally:
        console.width = width
    assert ended.value.exit_code == 1
    rows = [line for line in captured.get().splitlines() if line.count("│") > 4]
    folded = "".join(line.split("│")[3].strip() for line in rows)
    assert LONG_CHECK in folded
