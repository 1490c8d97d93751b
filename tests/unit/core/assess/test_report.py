from __future__ import annotations

from datetime import UTC, date, datetime

from otward.core.assess.findings import Finding, FindingsDocument, Severity
from otward.core.assess.report import build_report, escape_markdown, render_markdown
from otward.core.assess.waivers import Waiver

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def finding(check, severity, target, evidence="seen", requirements=("CR 4.3",)) -> Finding:
    return Finding(check, severity, target, f"title of {check}", evidence, f"fix {check}", requirements)


def documents() -> list[FindingsDocument]:
    tls = FindingsDocument(
        "tls",
        NOW,
        "otward test",
        ("plc-1:443", "hmi:443"),
        (
            finding("tls.protocol.legacy", Severity.HIGH, "plc-1:443", requirements=("CR 4.3", "CR 3.1")),
            finding("tls.client_auth.absent", Severity.MEDIUM, "hmi:443", requirements=("CR 1.2",)),
        ),
    )
    firmware = FindingsDocument(
        "firmware",
        NOW,
        "otward test",
        ("kernel.bin",),
        (
            finding(
                "firmware.version.rollback", Severity.HIGH, "kernel.bin", requirements=("CR 3.14", "CR 3.4")
            ),
        ),
    )
    return [tls, firmware]


def test_report_groups_by_severity_and_summarises():
    report = build_report(documents(), ["tls.json", "fw.json"], generated_at=NOW, tool="otward test")
    assert [(s.value, [f.check for f in fs]) for s, fs in report.groups] == [
        ("high", ["firmware.version.rollback", "tls.protocol.legacy"]),
        ("medium", ["tls.client_auth.absent"]),
    ]
    assert [(c.severity.value, c.open, c.accepted) for c in report.severities] == [
        ("high", 2, 0),
        ("medium", 1, 0),
        ("low", 0, 0),
        ("info", 0, 0),
    ]
    assert [(t.target, t.open) for t in report.targets] == [
        ("plc-1:443", (1, 0, 0, 0)),
        ("hmi:443", (0, 1, 0, 0)),
        ("kernel.bin", (1, 0, 0, 0)),
    ]
    assert [(r.number, r.title, r.open, r.checks) for r in report.requirements] == [
        (
            "CR 1.2",
            "Software process and device identification and authentication",
            1,
            ("tls.client_auth.absent",),
        ),
        ("CR 3.1", "Communication integrity", 1, ("tls.protocol.legacy",)),
        ("CR 3.4", "Software and information integrity", 1, ("firmware.version.rollback",)),
        ("CR 3.14", "Integrity of the boot process", 1, ("firmware.version.rollback",)),
        ("CR 4.3", "Use of cryptography", 1, ("tls.protocol.legacy",)),
    ]
    assert report.blocking == 2


def test_waivers_mark_findings_accepted_and_open_the_gate():
    waivers = [
        Waiver("tls.protocol.legacy", "plc-*", "vendor firmware 3.2 due in March"),
        Waiver("firmware.*", "*", "lab bench only"),
    ]
    report = build_report(
        documents(), ["a"], generated_at=NOW, tool="t", waivers=waivers, today=date(2026, 12, 7)
    )
    assert report.blocking == 0
    accepted = {f.check: f.accepted for f in report.document.findings if f.accepted}
    assert accepted == {
        "tls.protocol.legacy": "vendor firmware 3.2 due in March",
        "firmware.version.rollback": "lab bench only",
    }
    assert report.severities[0].accepted == 2
    lapsed = [Waiver("tls.protocol.legacy", "*", "old", until=date(2026, 1, 1))]
    assert build_report(documents(), ["a"], generated_at=NOW, tool="t", waivers=lapsed).blocking == 2


def test_markdown_contains_every_finding_and_escapes():
    hostile = FindingsDocument(
        "tls",
        NOW,
        "t",
        ("a|b",),
        (finding("tls.x", Severity.LOW, "a|b", evidence="subject CN=<script>alert(1)</script> | ```` x"),),
    )
    text = render_markdown(build_report([*documents(), hostile], ["x"], generated_at=NOW, tool="t"))
    for check in ("tls.protocol.legacy", "tls.client_auth.absent", "firmware.version.rollback", "tls.x"):
        assert escape_markdown(check) in text
    assert "| a\\|b |" in text  # the per-target row: the pipe does not split the cell
    assert "<script>" in text.split("`````text\n", 1)[1]  # verbatim only inside the longer fence
    assert "<script>" not in text.split("`````text\n", 1)[0]
    assert "**Gate: FAIL**" in text
    assert "CR 3.14 Integrity of the boot process" in text


def test_escape_markdown():
    assert escape_markdown("a|b") == "a\\|b"
    assert escape_markdown("<b>&") == "&lt;b&gt;&amp;"
    assert escape_markdown("*x* [l](u) `c` \\") == "\\*x\\* \\[l\\](u) \\`c\\` \\\\"
    assert escape_markdown("two\nlines") == "two lines"


def test_empty_report():
    report = build_report([], [], generated_at=NOW, tool="t")
    assert report.groups == ()
    assert "No findings." in render_markdown(report)
    assert report.blocking == 0
