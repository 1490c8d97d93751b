"""The running service against its own OpenAPI document (issue 13 item 2), with schemathesis.

A real ``otward serve`` on loopback; schemathesis reads ``/openapi.json`` from it over TLS verified
against the installation's root, generates requests for every operation (examples, boundary
"coverage" cases and random ones, valid and invalid) and checks each answer: never a 5xx, only
documented status codes, bodies, media types and headers as documented, schema-invalid requests
refused with a 4xx, ``Allow`` on a 405. The default suite makes a bounded number of requests per
operation; ``python -m pytest -m fuzz`` many more (docs/testing.md).

Two runs, because failed authentication is limited per source (10 a minute, then 429 for every
request from it): the API with an admin token, and EST without credentials (the challenge round,
not counted) so that no request of the first run is refused for the second's failures.

Left out: ``positive_data_acceptance`` (a schema-valid request must succeed), because what makes a
request acceptable is often more than a schema can say (a CSR that parses and is signed, tree sizes
in order, a revocation reason from a list that depends on the CA); ``ignored_auth`` and
``missing_required_header`` send requests without the token, which the rate limit answers 429
after ten, so they are covered by the authorization matrix instead (test_authorization_matrix.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer, start_server, stop_server

pytestmark = pytest.mark.integration

DEFAULT_EXAMPLES = 10
FUZZ_EXAMPLES = 500
FUZZ_TIMEOUT = 3600  # seconds: the -m fuzz run makes some 50,000 requests
EXCLUDED_CHECKS = "positive_data_acceptance,ignored_auth,missing_required_header"
EST = "^/\\.well-known/est/"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_server(tmp_path_factory.mktemp("conformance") / "data")
    yield server
    stop_server(server)


def schemathesis(server: RunningServer, *options: str, examples: int, tmp_path: Path) -> None:
    """Run the schemathesis CLI against ``server``; fail with its report unless every check passed."""
    binary = shutil.which("st") or str(Path(sys.executable).with_name("st"))
    if not Path(binary).exists():
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    command = [
        binary,
        "run",
        f"{server.https_url}/openapi.json",
        "--tls-verify",
        str(server.root_pem),
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--generation-with-security-parameters",
        "false",
        "--max-examples",
        str(examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        os.environ.get("OTWARD_SCHEMATHESIS_SEED", "13"),
        # One worker: with threads, CPython 3.11's ast.parse (Hypothesis describing a filter)
        # fails now and then with "AST constructor recursion depth mismatch".
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        *options,
    ]
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=FUZZ_TIMEOUT,
        check=False,
        cwd=tmp_path,
        env=environment,
    )
    report = result.stdout + result.stderr
    failures = report.find("=== FAILURES ===")
    assert result.returncode == 0, report[failures:] if failures >= 0 else report[-20000:]
    assert "Tested:" in report, report[-5000:]


def examples(request: pytest.FixtureRequest) -> int:
    """Requests per operation and phase: :data:`DEFAULT_EXAMPLES`, or :data:`FUZZ_EXAMPLES` when the
    run's ``-m`` expression selects ``fuzz`` (``OTWARD_SCHEMATHESIS_EXAMPLES`` overrides both)."""
    expression = request.config.getoption("markexpr", "").replace(" ", "")
    fuzz = "fuzz" in expression and "notfuzz" not in expression
    default = FUZZ_EXAMPLES if fuzz else DEFAULT_EXAMPLES
    return int(os.environ.get("OTWARD_SCHEMATHESIS_EXAMPLES", default))


@pytest.mark.fuzz
@pytest.mark.timeout(FUZZ_TIMEOUT)
def test_the_api_answers_as_its_openapi_document_says(running, request, tmp_path):
    schemathesis(
        running,
        "--header",
        f"Authorization: Bearer {running.token}",
        "--exclude-path-regex",
        EST,
        examples=examples(request),
        tmp_path=tmp_path,
    )


@pytest.mark.fuzz
@pytest.mark.timeout(FUZZ_TIMEOUT)
def test_est_answers_as_the_openapi_document_says(running, request, tmp_path):
    schemathesis(running, "--include-path-regex", EST, examples=examples(request), tmp_path=tmp_path)
