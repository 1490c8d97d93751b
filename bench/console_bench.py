"""The web console: what a page costs next to the API answer built from the same query.

With N certificates issued for real (``issue_many``, 10,000 by default), prints the median time of
each console page next to its reference on the same installation and as a ratio:
  * the certificate list, first page and a filtered page (subject part + status), next to
    ``GET /api/v1/certificates`` with the same page size (JSON of the same rows);
  * a certificate's page (every extension decoded), next to ``GET /api/v1/certificates/{serial}``;
  * the dashboard (counts, expiry chart, CRLs, recent events; the self-check cached), next to ``/metrics``;
  * the audit page (first 50 events), next to ``GET /api/v1/audit?limit=50``;
  * a console sign-in (Argon2id, session stored), next to ``POST /api/v1/session`` (Argon2id, token stored).
In-process (FastAPI's test client, one thread): the figures include the ASGI stack but not TLS.

Run:  python bench/console_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.authz import parse_grant
from otward.http.app import create_app
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from otward.services.queries import certificate_filter

PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark's throwaway account
ROLES = ("admin", "pki-officer", "enrollment-officer", "access-manager", "auditor", "metrics")


def _median_ms(n: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _csrs(count: int) -> list[bytes]:
    key = ec.generate_private_key(ec.SECP256R1())  # one key for all: the bench measures pages, not keys
    csrs = []
    for i in range(count):
        name = f"sensor-{i:05d}.plant.example"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        csrs.append(csr.public_bytes(serialization.Encoding.PEM))
    return csrs


def _get(client: TestClient, path: str, headers: dict[str, str] | None = None) -> Callable[[], None]:
    def call() -> None:
        answer = client.get(path, headers=headers)
        if answer.status_code != 200:
            raise AssertionError(f"{path}: {answer.status_code} {answer.text[:200]}")

    return call


def _sign_in(browser: TestClient) -> None:
    """The sign-in form as a browser sends it: its own token, then account and password."""
    form = re.search(r'name="signin_token" value="([^"]+)"', browser.get("/ui/sign-in").text)
    if form is None:
        raise RuntimeError("the sign-in page has no form token")
    answer = browser.post(
        "/ui/sign-in", data={"signin_token": form.group(1), "account": "alice", "password": PASSWORD}
    )
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in failed: {answer.text[:200]}")


def _row(label: str, console_ms: float, reference: str, reference_ms: float) -> None:
    print(
        f"{label:34s} {console_ms:8.1f} ms   {reference:34s} {reference_ms:8.1f} ms"
        f"   ratio {console_ms / reference_ms:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, repeat = (2_000, 15) if args.quick else (10_000, 41)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialize(data)
        pki = Pki.open(load_settings(data))
        try:
            grants = frozenset(parse_grant(r) for r in ROLES)
            pki.accounts.add("alice", grants, password=PASSWORD)
            csrs = _csrs(count)
            for start in range(0, count, 1000):
                pki.issuance.issue_many(csrs[start : start + 1000], profile="tls-server")
            _, token = pki.tokens.create("bench", account="alice")
            bearer = {"Authorization": f"Bearer {token}"}
            app = create_app(pki)
            browser = TestClient(app, base_url="https://testserver", follow_redirects=False)
            api = TestClient(app, base_url="https://testserver")
            _sign_in(browser)
            newest, _total = pki.stores.certificates.list_certificates(
                certificate_filter(pki.clock()), limit=1, offset=0
            )
            serial = f"{newest[0].serial_number:x}"
            print(f"{count} certificates; median of {repeat} requests each, in-process")
            browser.get("/ui/")  # starts the self-check once; later views read its cached result
            time.sleep(2.5)
            pairs = [
                (
                    "certificate list, page 1",
                    "/ui/certificates",
                    "API list, limit 50",
                    "/api/v1/certificates",
                ),
                (
                    "certificate list, filtered",
                    "/ui/certificates?subject=sensor-00&status=valid",
                    "API list, status=valid",
                    "/api/v1/certificates?status=valid",
                ),
                (
                    "certificate page (decoded)",
                    f"/ui/certificates/{serial}",
                    "API certificate",
                    f"/api/v1/certificates/{serial}",
                ),
                ("dashboard", "/ui/", "/metrics", "/metrics"),
                ("audit page, first 50", "/ui/audit", "API audit, limit 50", "/api/v1/audit?limit=50"),
            ]
            for label, path, reference, reference_path in pairs:
                console_ms = _median_ms(repeat, _get(browser, path))
                reference_ms = _median_ms(repeat, _get(api, reference_path, bearer))
                _row(label, console_ms, reference, reference_ms)

            def console_sign_in() -> None:
                _sign_in(TestClient(app, base_url="https://testserver", follow_redirects=False))

            def api_session() -> None:
                answer = api.post("/api/v1/session", json={"account": "alice", "password": PASSWORD})
                if answer.status_code != 201:
                    raise AssertionError(answer.text[:200])

            _row(
                "console sign-in (form + sign-in)",
                _median_ms(9, console_sign_in),
                "POST /api/v1/session",
                _median_ms(9, api_session),
            )
        finally:
            pki.close()


if __name__ == "__main__":
    main()
