"""The authorization matrix (issue 13 item 3): every route of the API, discovered from the app, by
every kind of credential, and the outcome each cell must have.

An outcome is ``OK`` (the credential got the request past authentication and authorization: any
answer but 401, 403, 429 or a 5xx; what the route then says about an empty body or an unknown name is
not the matrix's business), ``401`` or ``403``. A route of the app without an entry in :data:`ROUTES`
fails the test, so a new route must say who may call it.

The token rows run in-process against the real application (the real token, scope, edge-token and
enrollment-token checks; each request from its own source address, since failed authentication is
limited per source). Client certificates exist only in a TLS handshake, so the device-certificate
row, and the no-credential and admin rows again, run against a real ``otward serve`` over TLS
(``[server] trusted_proxies`` lets each request name its own source in X-Forwarded-For).

The gatekeeper's local API (``otward edge serve``) has no bearer tokens: the holder's credential
and its signature over a nonce are the proof, so its matrix has credentials as rows.
"""

from __future__ import annotations

import base64
import itertools
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.authz import Scope, parse_grant
from otward.core.keys import KeyType
from otward.http.app import create_api, create_app
from otward.http.status import STATUS_PREFIXES
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import (
    Clock,
    RunningServer,
    build_csr,
    free_port,
    make_key,
    self_signed,
    start_server,
    stop_server,
    write_key,
)

pytestmark = pytest.mark.integration

OK = "ok"


@dataclass(frozen=True)
class Rule:
    """Who may call a route. ``kind``: public, api (an API token whose scope covers ``area`` and
    ``write``), gatekeeper (the asset's edge token, or an API token covering the access area),
    est-token (an enrollment or renewal token), est-cert (a device certificate)."""

    kind: str
    area: str = ""
    write: bool = False


PUBLIC = Rule("public")
# The web console: its own session cookie, never an API credential; each of its routes is checked by
# tests/integration/console/test_route_matrix.py (here every credential is sent to sign in: "ok").
CONSOLE = Rule("console")
EST_TOKEN = Rule("est-token")
EST_CERT = Rule("est-cert")


def api(area: str, *, write: bool = False) -> Rule:
    return Rule("api", area, write)


def approver(*, write: bool) -> Rule:
    """Four-eyes approval: any token covering the PKI or the accounts area (read to list, write to
    decide); each request is then decided on its own operation's permission (test_approvals.py)."""
    return Rule("approver", "pki|admin", write)


def gatekeeper(*, write: bool) -> Rule:
    return Rule("gatekeeper", "access", write)


# Every route of the HTTPS application. Public: the API's documentation, health, the EST CA
# certificates and CSR attributes, a CA's chain, the transparency log, CRLs/OCSP/CA certificates
# (the status app), a device's challenge and attestation answer (the signature is the proof).
ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/static"): PUBLIC,
    ("GET", "/ui"): CONSOLE,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/metrics"): api("metrics"),
    ("GET", "/ocsp"): PUBLIC,
    ("GET", "/crl/"): PUBLIC,
    ("GET", "/ca/"): PUBLIC,
    ("POST", "/api/v1/certificates"): api("pki", write=True),
    ("GET", "/api/v1/certificates"): api("pki"),
    ("GET", "/api/v1/certificates/{serial}"): api("pki"),
    ("POST", "/api/v1/certificates/{serial}/revoke"): api("pki", write=True),
    ("GET", "/api/v1/cas"): api("pki"),
    ("GET", "/api/v1/cas/{name}"): api("pki"),
    ("GET", "/api/v1/cas/{name}/chain"): PUBLIC,
    ("GET", "/api/v1/signers"): api("pki"),
    ("POST", "/api/v1/signers/{name}/rotate"): api("pki", write=True),
    ("GET", "/api/v1/approvals"): approver(write=False),
    ("POST", "/api/v1/approvals/{request_id}/approve"): approver(write=True),
    ("POST", "/api/v1/approvals/{request_id}/reject"): approver(write=True),
    ("GET", "/api/v1/devices"): api("enrollment"),
    ("GET", "/api/v1/devices/{device_id}"): api("enrollment"),
    ("POST", "/api/v1/devices/{device_id}/disable"): api("enrollment", write=True),
    ("POST", "/api/v1/devices/{device_id}/enable"): api("enrollment", write=True),
    ("POST", "/api/v1/devices/{device_id}/revoke"): api("enrollment", write=True),
    ("POST", "/api/v1/devices/{device_id}/reset"): api("enrollment", write=True),
    ("POST", "/api/v1/devices/{device_id}/challenge"): PUBLIC,
    ("POST", "/api/v1/devices/{device_id}/attest"): PUBLIC,
    ("GET", "/api/v1/access/people"): api("access"),
    ("POST", "/api/v1/access/people"): api("access", write=True),
    ("GET", "/api/v1/access/people/{person_id}"): api("access"),
    ("PUT", "/api/v1/access/people/{person_id}"): api("access", write=True),
    ("DELETE", "/api/v1/access/people/{person_id}"): api("access", write=True),
    ("POST", "/api/v1/access/people/{person_id}/disable"): api("access", write=True),
    ("POST", "/api/v1/access/people/{person_id}/enable"): api("access", write=True),
    ("GET", "/api/v1/access/grants"): api("access"),
    ("POST", "/api/v1/access/grants"): api("access", write=True),
    ("DELETE", "/api/v1/access/grants/{grant_id}"): api("access", write=True),
    ("POST", "/api/v1/access/import"): api("access", write=True),
    ("GET", "/api/v1/access/policies"): api("access"),
    ("GET", "/api/v1/access/schema"): api("access"),
    ("GET", "/api/v1/access/explain"): api("access"),
    ("GET", "/api/v1/access/assets/{asset_id}/slice"): api("access"),
    ("GET", "/api/v1/access/assets"): api("access"),
    ("POST", "/api/v1/access/assets"): api("access", write=True),
    ("GET", "/api/v1/access/assets/{asset_id}"): api("access"),
    ("PUT", "/api/v1/access/assets/{asset_id}"): api("access", write=True),
    ("DELETE", "/api/v1/access/assets/{asset_id}"): api("access", write=True),
    ("GET", "/api/v1/access/roles"): api("access"),
    ("POST", "/api/v1/access/roles"): api("access", write=True),
    ("PUT", "/api/v1/access/roles/{role_id}"): api("access", write=True),
    ("DELETE", "/api/v1/access/roles/{role_id}"): api("access", write=True),
    ("GET", "/api/v1/access/schedules"): api("access"),
    ("POST", "/api/v1/access/schedules"): api("access", write=True),
    ("PUT", "/api/v1/access/schedules/{name}"): api("access", write=True),
    ("DELETE", "/api/v1/access/schedules/{name}"): api("access", write=True),
    ("GET", "/api/v1/edge/assets/{asset}/bundle"): gatekeeper(write=False),
    ("POST", "/api/v1/edge/assets/{asset}/trail"): gatekeeper(write=True),
    ("GET", "/api/v1/edge/assets/{asset}/trail"): api("access"),  # the pushed trail is the admin's
    ("POST", "/api/v1/edge/assets/{asset}/bundles"): api("access", write=True),
    ("POST", "/api/v1/edge/credentials"): api("access", write=True),
    ("GET", "/api/v1/edge/credentials"): api("access"),
    ("POST", "/api/v1/edge/credentials/{credential_id}/revoke"): api("access", write=True),
    ("POST", "/api/v1/session"): PUBLIC,  # the password (and TOTP code) is the proof
    ("GET", "/api/v1/accounts"): api("admin"),
    ("GET", "/api/v1/audit"): api("audit"),
    ("GET", "/api/v1/audit/verify"): api("audit"),
    ("GET", "/api/v1/transparency/sth"): PUBLIC,
    ("GET", "/api/v1/transparency/sth/{tree_size}"): PUBLIC,
    ("GET", "/api/v1/transparency/proof/{serial}"): PUBLIC,
    ("GET", "/api/v1/transparency/consistency"): PUBLIC,
    ("GET", "/api/v1/transparency/signer"): PUBLIC,
    ("GET", "/.well-known/est/cacerts"): PUBLIC,
    ("GET", "/.well-known/est/{label}/cacerts"): PUBLIC,
    ("GET", "/.well-known/est/csrattrs"): PUBLIC,
    ("GET", "/.well-known/est/{label}/csrattrs"): PUBLIC,
    ("POST", "/.well-known/est/simpleenroll"): EST_TOKEN,
    ("POST", "/.well-known/est/{label}/simpleenroll"): EST_TOKEN,
    ("POST", "/.well-known/est/serverkeygen"): EST_TOKEN,
    ("POST", "/.well-known/est/{label}/serverkeygen"): EST_TOKEN,
    ("POST", "/.well-known/est/simplereenroll"): EST_CERT,
    ("POST", "/.well-known/est/{label}/simplereenroll"): EST_CERT,
}

# What each token scope may do, spelled out here apart from otward.core.authz (the code under test).
SCOPES: dict[str, Callable[[str, bool], bool]] = {
    "admin": lambda area, write: True,
    "read": lambda area, write: not write,
    "metrics": lambda area, write: area == "metrics" and not write,
    "enroll-admin": lambda area, write: area == "enrollment",
    "access-admin": lambda area, write: area == "access",
}
# What each role may do through a token of its account (scope admin: the roles decide), spelled out
# here apart from otward.core.authz's ROLE_PERMISSIONS; docs/administration.md has the same table.
ROLES: dict[str, Callable[[str, bool], bool]] = {
    "role:admin": lambda area, write: area == "admin",
    "role:pki-officer": lambda area, write: area == "pki",
    "role:enrollment-officer": lambda area, write: area == "enrollment",
    "role:access-manager": lambda area, write: area == "access",
    "role:auditor": lambda area, write: not write,
    "role:metrics": lambda area, write: area == "metrics" and not write,
}
# Officers limited to one owner: the device's own owner (acme) reaches the routes of one device, the
# other owner's does not, and neither reaches the list of every owner's devices.
OWNER_LIMITED = {"role:enrollment-officer:acme": True, "role:enrollment-officer:line-9": False}
# Credentials that are no API token at all (or no longer one).
NOT_A_TOKEN = (
    "none",
    "malformed",
    "wrong-scheme",
    "wrong",
    "revoked",
    "expired",
    "enrollment",
    "renewal",
    "edge-own",
    "edge-other",
    "device-cert",
)
TOKEN_ROWS = (*NOT_A_TOKEN[:-1], *SCOPES, *ROLES, *OWNER_LIMITED)  # the device certificate: TLS, its own test

PKCS10 = {"Content-Type": "application/pkcs10"}
OWNER, DEVICE, ASSET, OTHER_ASSET = "acme", "plc-1", "reactor-1", "reactor-2"
PATH_VALUES = {
    "serial": "1f",
    "name": "issuing",
    "label": "issuing",
    "device_id": DEVICE,
    "asset": ASSET,
    "asset_id": ASSET,
    "person_id": "anna",
    "role_id": "operator",
    "grant_id": "operator-1",
    "credential_id": "0" * 32,
    "tree_size": "1",
    "request_id": "1",
}


def expected(rule: Rule, credential: str, path: str = "") -> str | int:
    """The outcome of ``credential`` on a route of ``rule`` (at ``path``)."""
    if rule.kind in ("public", "console"):
        return OK
    if rule.kind == "est-token":
        return OK if credential in ("enrollment", "enrollment-basic", "renewal") else 401
    if rule.kind == "est-cert":
        return OK if credential == "device-cert" else 401
    if rule.kind == "gatekeeper" and credential == "edge-own":
        return OK
    areas = rule.area.split("|")
    if credential in SCOPES:
        return OK if any(SCOPES[credential](a, rule.write) for a in areas) else 403
    if credential in ROLES:
        return OK if any(ROLES[credential](a, rule.write) for a in areas) else 403
    if credential in OWNER_LIMITED:
        own = OWNER_LIMITED[credential] and "{device_id}" in path
        return OK if rule.area == "enrollment" and own else 403
    return 401


def discovered_routes(pki: Pki) -> set[tuple[str, str]]:
    """(method, path) of every route of the HTTPS application: FastAPI's, found by walking the app
    (included routers too), and the status app's prefixes, which ``create_app`` routes before it."""
    found = set()
    for context in iter_route_contexts(create_api(pki).routes):
        route = context.original_route
        for method in getattr(route, "methods", None) or {"GET"}:  # a Mount serves GET
            if method != "HEAD":
                found.add((method, route.path))  # type: ignore[attr-defined]
    found |= {("GET", prefix) for prefix in STATUS_PREFIXES}
    return found


def test_every_route_of_the_app_has_an_entry(sqlite_pki):
    routes = discovered_routes(sqlite_pki)
    assert not routes - ROUTES.keys(), f"routes without an entry in ROUTES: {sorted(routes - ROUTES.keys())}"
    assert not ROUTES.keys() - routes, f"entries for routes the app lacks: {sorted(ROUTES.keys() - routes)}"


@dataclass
class Plant:
    """One installation with a credential of every kind (single-use ones made on demand)."""

    pki: Pki
    headers: dict[str, dict[str, str]]
    renewal: Callable[[], str]
    device: Callable[[str], tuple[Path, Path]]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_plant(pki: Pki, clock: Clock, directory: Path) -> Plant:
    pki.owners.create(OWNER, allow_server_keygen=True)
    _, enrollment = pki.enrollment_tokens.create(OWNER, uses=100_000, ttl=timedelta(days=1))
    serials = itertools.count(1)

    def device(device_id: str) -> tuple[Path, Path]:
        """A device registered the way devices are (EST with a token): its certificate and key files."""
        key = make_key()
        csr = x509.load_pem_x509_csr(build_csr(key, cn=device_id)).public_bytes(serialization.Encoding.DER)
        issued = pki.est.enroll(csr, enrollment, label=None, actor=Actor(component="est", identity="est"))
        stem = directory / f"{device_id}-{next(serials)}"
        certificate = stem.with_suffix(".pem")
        certificate.write_text(issued.pem + "".join(issued.chain_pem[:-1]))
        return certificate, write_key(stem.with_suffix(".key"), key)

    device(DEVICE)

    def renewal() -> str:  # single use: a fresh one for every request
        return pki.enrollment_tokens.create_renewal(
            OWNER, DEVICE, "device", ttl=timedelta(minutes=5), actor=Actor(component="test", identity="t")
        )[1]

    revoked, revoked_token = pki.tokens.create("revoked", scope=Scope.ADMIN)
    pki.tokens.revoke(revoked.token_id)
    clock.advance(timedelta(hours=-2))
    _, expired_token = pki.tokens.create("expired", scope=Scope.ADMIN, ttl=timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    _, edge_own = pki.edge.create_token(ASSET)
    _, edge_other = pki.edge.create_token(OTHER_ASSET)
    wrong = "otw_" + "0" * 16 + "_" + "A" * 43
    headers: dict[str, dict[str, str]] = {
        "none": {},
        "malformed": {"Authorization": "Bearer otw_!!"},
        "wrong-scheme": {"Authorization": "Digest username=admin"},
        "wrong": _bearer(wrong),
        "revoked": _bearer(revoked_token),
        "expired": _bearer(expired_token),
        "enrollment": _bearer(enrollment),
        "enrollment-basic": {
            "Authorization": "Basic " + base64.b64encode(f"x:{enrollment}".encode()).decode()
        },
        "edge-own": _bearer(edge_own),
        "edge-other": _bearer(edge_other),
    }
    for scope in Scope:
        headers[scope.value] = _bearer(pki.tokens.create(f"matrix-{scope.value}", scope=scope)[1])
    for n, row in enumerate((*ROLES, *OWNER_LIMITED)):
        account = f"matrix-{n}"
        pki.accounts.add(account, frozenset({parse_grant(row.removeprefix("role:"))}))
        headers[row] = _bearer(pki.tokens.create(account, scope=Scope.ADMIN, account=account)[1])
    return Plant(pki, headers, renewal, device)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    directory = tmp_path_factory.mktemp("matrix")
    initialize(directory / "data", key_type=KeyType.EC_P256, organization="ACME Chemicals")
    clock = Clock()
    pki = Pki.open(load_settings(directory / "data"), clock=clock)
    yield make_plant(pki, clock, directory)
    pki.close()


def request_for(method: str, path: str, cn: str = DEVICE) -> tuple[str, dict[str, object], dict[str, str]]:
    """The URL, body and headers of a request to a route: path names filled in, a device's CSR
    for EST."""
    url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    if path.startswith(STATUS_PREFIXES):
        url += "issuing.crl" if path == "/crl/" else "issuing.pem" if path == "/ca/" else ""
    if path.startswith("/.well-known/est/") and method == "POST":
        csr = x509.load_pem_x509_csr(build_csr(make_key(), cn=cn))
        body = base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))
        return url, {"content": body}, PKCS10
    return url, ({"json": {}} if method in ("POST", "PUT") else {}), {}


def outcome(status: int) -> str | int:
    assert status != 429, "rate limited: the matrix must not hit the per-source limits"
    assert status < 500, f"server error {status}"
    return status if status in (401, 403) else OK


_SOURCES = (f"10.{a}.{b}.1" for a, b in itertools.product(range(1, 250), range(1, 250)))


def test_every_token_credential_on_every_route(plant):
    app = create_app(plant.pki)
    wrong: list[str] = []
    for (method, path), rule in sorted(ROUTES.items()):
        url, body, extra = request_for(method, path)
        for credential in (*TOKEN_ROWS, "enrollment-basic"):
            headers = _bearer(plant.renewal()) if credential == "renewal" else plant.headers[credential]
            client = TestClient(app, base_url="https://testserver", client=(next(_SOURCES), 1))
            answer = client.request(method, url, headers={**headers, **extra}, **body)  # type: ignore[arg-type]
            got = outcome(answer.status_code)
            if got != expected(rule, credential, path):
                wrong.append(f"{method} {path} [{credential}]: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Plant]]:
    """A real ``otward serve`` believing X-Forwarded-For from loopback, and the plant's credentials
    (made through a second handle on the same database)."""
    directory = tmp_path_factory.mktemp("matrix-tls")
    data = directory / "data"
    initialize(data, organization="ACME Chemicals", public_url=f"http://127.0.0.1:{free_port()}")
    config = data / "config.toml"
    config.write_text(
        config.read_text().replace('# trusted_proxies = ["10.0.0.5"]', 'trusted_proxies = ["127.0.0.1"]')
    )
    clock = Clock()
    pki = Pki.open(load_settings(data), clock=clock)
    try:
        plant = make_plant(pki, clock, directory)
        server = start_server(data)
        try:
            yield server, plant
        finally:
            stop_server(server)
    finally:
        pki.close()


def test_a_device_certificate_and_no_credential_over_tls_on_every_route(served):
    """The device certificate opens the re-enrollment routes and nothing else; over real TLS the
    no-credential and admin rows hold as they do in-process."""
    server, plant = served
    devices = (f"plc-tls-{n}" for n in itertools.count(1))

    def as_device(device_id: str) -> httpx.Client:
        """A client presenting a new device's certificate: re-enrollment retires the certificate
        it used (a second one with it is refused 403, as it must be)."""
        context = ssl.create_default_context(cafile=str(server.root_pem))
        context.load_cert_chain(*(str(f) for f in plant.device(device_id)))
        return httpx.Client(base_url=server.https_url, verify=context)

    wrong: list[str] = []
    with httpx.Client(base_url=server.https_url, verify=server.ssl_context()) as anonymous:
        for (method, path), rule in sorted(ROUTES.items()):
            for credential in ("device-cert", "none", "admin"):
                device_id = next(devices) if credential == "device-cert" else DEVICE
                url, body, extra = request_for(method, path, cn=device_id)
                headers = {**plant.headers.get(credential, {}), **extra, "X-Forwarded-For": next(_SOURCES)}
                if credential == "device-cert":
                    with as_device(device_id) as device:
                        answer = device.request(method, url, headers=headers, **body)  # type: ignore[arg-type]
                else:
                    answer = anonymous.request(method, url, headers=headers, **body)  # type: ignore[arg-type]
                got = outcome(answer.status_code)
                if got != expected(rule, credential):
                    wrong.append(f"{method} {path} [{credential}]: {answer.status_code} {answer.text[:120]}")
    assert not wrong, "\n".join(wrong)


def test_a_certificate_of_no_otward_ca_ends_the_handshake(served, tmp_path):
    server, _ = served
    key = make_key()
    certificate = tmp_path / "stranger.pem"
    certificate.write_bytes(self_signed(key, DEVICE).public_bytes(serialization.Encoding.PEM))
    context = ssl.create_default_context(cafile=str(server.root_pem))
    context.load_cert_chain(str(certificate), str(write_key(tmp_path / "stranger.key", key)))
    with pytest.raises(httpx.HTTPError), httpx.Client(base_url=server.https_url, verify=context) as client:
        client.post(
            "/.well-known/est/simplereenroll", content=b"", headers={"Content-Type": "application/pkcs10"}
        )
