"""pip-audit over the installed dependency set (issue 13 item 5): fails on a known vulnerability
that has a fixed release.

The advisories come from an OSV API. The suite sends nothing beyond loopback (and the project's
machines reach no advisory service: api.osv.dev is not among the package registries they reach),
so the audit runs against a local OSV source named by ``OTWARD_OSV_URL`` (an http(s) URL on
loopback, e.g. an osv.dev mirror), and is skipped, saying so, without one: a pass is never made
up. On a machine with network access run ``pip-audit`` by hand (docs/security.md). The second test
proves the harness: a stub OSV source on loopback that knows one advisory makes the audit fail.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from urllib.parse import urlsplit

import pytest

OSV_URL_ENV = "OTWARD_OSV_URL"


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def audit(osv_url: str) -> list[dict[str, object]]:
    """pip-audit of this interpreter's environment against the OSV API at ``osv_url``: each
    installed distribution with the advisories found for it (pip-audit's JSON)."""
    if not _loopback(osv_url):
        pytest.fail(f"{OSV_URL_ENV}={osv_url}: the test suite talks only to loopback addresses")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip_audit",
            "--vulnerability-service",
            "osv",
            "--osv-url",
            osv_url,
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--skip-editable",  # otward itself, not a published release
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    # exit 1 means "vulnerabilities found": the JSON says which
    assert result.returncode in (0, 1), result.stderr[-5000:]
    dependencies: list[dict[str, object]] = json.loads(result.stdout)["dependencies"]
    return dependencies


def fixable(dependencies: list[dict[str, object]]) -> list[str]:
    """``name version: id (fixed in ...)`` for every advisory with a fixed release."""
    found = []
    for dependency in dependencies:
        for vuln in dependency.get("vulns", []):  # type: ignore[attr-defined]
            if vuln["fix_versions"]:
                fixed = ", ".join(vuln["fix_versions"])
                found.append(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
    return found


def test_no_installed_dependency_has_a_known_vulnerability_with_a_fix():
    osv_url = os.environ.get(OSV_URL_ENV)
    if not osv_url:
        pytest.skip(
            f"no local vulnerability advisory source: set {OSV_URL_ENV} to an OSV API on loopback"
            " (the suite sends nothing beyond loopback, so neither pypi.org's advisories nor"
            " api.osv.dev are asked); on a networked machine run `pip-audit` by hand"
        )
    dependencies = audit(osv_url)
    assert len(dependencies) > 20  # the whole environment was audited, not an empty list
    assert not fixable(dependencies)


@pytest.fixture
def osv_stub() -> Iterator[tuple[str, str]]:
    """An OSV API on loopback knowing one advisory, against the installed PyYAML: (url, version)."""
    version = metadata.version("PyYAML")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer: dict[str, object] = {}
            if query["package"]["name"] == "pyyaml" and query["version"] == version:
                answer = {
                    "vulns": [
                        {
                            "id": "OTWARD-TEST-1",
                            "summary": "a made-up advisory",
                            "affected": [
                                {
                                    "package": {"name": "pyyaml", "ecosystem": "PyPI"},
                                    "ranges": [
                                        {
                                            "type": "ECOSYSTEM",
                                            "events": [{"introduced": "0"}, {"fixed": "999.0"}],
                                        }
                                    ],
                                }
                            ],
                        }
                    ]
                }
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/query", version
    finally:
        server.shutdown()
        server.server_close()


def test_an_advisory_with_a_fix_fails_the_audit(osv_stub):
    url, version = osv_stub
    assert fixable(audit(url)) == [f"pyyaml {version}: OTWARD-TEST-1 (fixed in 999.0)"]
