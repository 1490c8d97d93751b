"""``otward assess report``: one self-contained HTML (or Markdown) report from several findings
documents, hostile evidence escaped, accepted risks marked, the gate's exit status."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

from typer.testing import CliRunner

from otward.cli.app import app
from otward.core.assess.findings import Finding, FindingsDocument, Severity, dump_findings

runner = CliRunner()
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOSTILE = 'CN=<script>alert("x")</script><img src=http://evil.example/a.png> & | pipes | here'


def write(path: Path, kind: str, *findings: Finding) -> Path:
    targets = tuple(dict.fromkeys(f.target for f in findings))
    path.write_text(dump_findings(FindingsDocument(kind, NOW, "otward test", targets, findings)))
    return path


def finding(check: str, severity: Severity, target: str, evidence: str, *requirements: str) -> Finding:
    return Finding(check, severity, target, f"title {check}", evidence, f"fix for {check}", requirements)


def inputs(tmp_path: Path) -> list[Path]:
    return [
        write(
            tmp_path / "tls.json",
            "tls",
            finding("tls.protocol.legacy", Severity.HIGH, "plc-1:443", "TLSv1 accepted", "CR 4.3"),
            finding("tls.certificate.untrusted", Severity.HIGH, "hmi:443", HOSTILE, "CR 1.8", "CR 3.1"),
        ),
        write(
            tmp_path / "modbus.json",
            "modbus",
            finding(
                "modbus.plaintext", Severity.HIGH, "10.20.0.7:502", "read 2 registers", "CR 4.1", "NDR 1.13"
            ),
        ),
        write(
            tmp_path / "fw.json",
            "firmware",
            finding("firmware.verified", Severity.INFO, "plc.bin", "stage plc version 7", "CR 3.4"),
        ),
    ]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.extend(attrs)


def test_html_report_has_every_finding_escaped_and_self_contained(tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["assess", "report", *map(str, inputs(tmp_path)), "--out", str(out)])
    assert result.exit_code == 1, result.output  # high findings are open
    html = out.read_text()
    for check in (
        "tls.protocol.legacy",
        "tls.certificate.untrusted",
        "modbus.plaintext",
        "firmware.verified",
    ):
        assert check in html
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "CR 4.1 Information confidentiality" in html
    assert "NDR 1.13 Access via untrusted networks" in html
    assert "fix for modbus.plaintext" in html
    parser = _Tags()
    parser.feed(html)
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert not [a for a in parser.attributes if a[0] in {"src", "href"}]
    assert html.index(">High (3)<") < html.index(">Info (1)<")
    assert "@media print" in html


def test_accepted_risks_are_marked_and_open_the_gate(tmp_path):
    waivers = tmp_path / "accept.toml"
    waivers.write_text(
        '[[accept]]\ncheck = "tls.*"\ntarget = "*"\nreason = "cell network <isolated>"\n\n'
        '[[accept]]\ncheck = "modbus.plaintext"\ntarget = "10.20.0.*"\nreason = "gateway planned Q3"\n'
    )
    out = tmp_path / "report.html"
    result = runner.invoke(
        app, ["assess", "report", *map(str, inputs(tmp_path)), "--out", str(out), "--accept", str(waivers)]
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count('<span class="badge">accepted risk</span>') == 3
    assert "cell network &lt;isolated&gt;" in html
    assert "gateway planned Q3" in html
    assert "PASS" in html


def test_markdown_report_escapes_pipes(tmp_path):
    out = tmp_path / "report.md"
    pipe = write(
        tmp_path / "pipe.json", "tls", finding("tls.x", Severity.LOW, "host|evil:443", "a | b", "CR 4.3")
    )
    result = runner.invoke(
        app, ["assess", "report", *map(str, inputs(tmp_path)), str(pipe), "--out", str(out)]
    )
    assert result.exit_code == 1
    text = out.read_text()
    assert text.startswith("# otward assessment report")
    assert "| host\\|evil:443 | 0 | 0 | 1 | 0 | 0 |" in text
    assert (
        "```text\n" + HOSTILE + "\n```" in text
    )  # evidence verbatim in a code block, where it renders as text
    outside = re.sub(r"```text\n.*?\n```", "", text, flags=re.DOTALL)
    assert "<" not in outside
    for check in (
        "tls.protocol.legacy",
        "tls.certificate.untrusted",
        "modbus.plaintext",
        "firmware.verified",
    ):
        assert check in text


def test_report_to_stdout_and_format_option(tmp_path):
    result = runner.invoke(app, ["assess", "report", str(inputs(tmp_path)[2]), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "## Info (1)" in result.output


def test_a_broken_findings_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "otward-findings", "version": 99}')
    result = runner.invoke(app, ["assess", "report", str(bad), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert "version 99 is not supported" in result.output
    assert not (tmp_path / "r.html").exists()
