"""``otward access ...`` in-process with Typer's runner, and ``/api/v1/access`` with FastAPI's client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from otward.cli.app import app
from otward.http.app import create_app
from otward.services.pki import Pki

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[3] / "examples" / "chemical-plant.yaml"
runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "d"
    run("init", "--data", str(directory), "--json")
    run("access", "import", str(EXAMPLE), "--data", str(directory))
    return directory


def test_cli_import_is_idempotent_and_explains_with_policies(data: Path):
    d = ("--data", str(data))
    again = json.loads(run("access", "import", str(EXAMPLE), *d, "--json"))
    assert again == {"site": "chemical-plant", "changed": False, "revision": 1, "details": {}}
    night = json.loads(
        run("access", "explain", "emil", "reactor-1", "start", "--at", "2026-12-01T03:00", *d, "--json")
    )
    assert night["decision"] == "allow"
    assert night["policies"] == ["operator-3/reactor-1"]
    assert night["local_time"] == "2026-12-01T03:00:00+01:00"
    assert night["at"] == "2026-12-01T02:00:00+00:00"
    assert '@id("operator-3/reactor-1")' in night["policy_texts"][0]
    # an explicit offset is honoured: 02:00Z is 03:00 in Berlin
    assert "ALLOW" in run("access", "explain", "emil", "reactor-1", "start", "--at", "2026-12-01T02:00Z", *d)
    text = run("access", "explain", "hanna", "erp", "view", "--at", "2026-10-30T10:00", *d)
    assert "DENY" in text
    assert "outside validity dates 2026-11-02..2026-11-27" in text
    assert "bad time" in run("access", "explain", "emil", "erp", "view", "--at", "tomorrow", *d, code=1)


def test_cli_people_grants_and_policies(data: Path):
    d = ("--data", str(data))
    run("access", "person", "disable", "emil", *d)
    assert "person is disabled" in run(
        "access", "explain", "emil", "reactor-1", "start", "--at", "2026-12-01T03:00", *d
    )
    assert json.loads(run("access", "person", "show", "emil", *d, "--json"))["enabled"] is False
    run("access", "person", "enable", "emil", *d)
    run(
        "access",
        "person",
        "add",
        "rob-8",
        "--name",
        "Robot 8",
        "--role",
        "operator",
        "--shift",
        "late-shift",
        "--robot",
        *d,
    )
    people = json.loads(run("access", "person", "list", *d, "--json"))
    robot = next(p for p in people if p["id"] == "rob-8")
    assert {"id": "rob-8", "kind": "robot", "shift": "late-shift"}.items() <= robot.items()
    assert "rob-8" in run("access", "person", "list", *d)
    error = run("access", "person", "add", "kim", "--name", "Kim", "--role", "auditor", *d, code=1)
    assert "role 'auditor' is external" in error
    added = json.loads(
        run(
            "access",
            "grant",
            "add",
            "--role",
            "cfo",
            "--asset",
            "scada-hmi",
            "--function",
            "view",
            "--when",
            "business-hours",
            *d,
            "--json",
        )
    )
    assert added["id"] == "cfo-6"
    assert "cfo-6" in run("access", "grant", "list", "--role", "cfo", *d)
    policies = run("access", "policies", "--asset", "scada-hmi", *d)
    assert '@id("cfo-6/scada-hmi")' in policies
    assert '@id("site/person-disabled")' in policies
    assert "reactor-1" not in policies
    unknown = run(
        "access", "grant", "add", "--role", "cfo", "--asset", "erp", "--function", "fly", *d, code=1
    )
    assert "unknown function 'fly'" in unknown
    run("access", "grant", "remove", "cfo-6", *d)
    assert "not found" in run("access", "grant", "remove", "cfo-6", *d, code=1)
    assert "entity Person in [Role]" in run("access", "schema", *d)


def test_cli_assets_roles_and_schedules(data: Path):
    d = ("--data", str(data))
    at_three = ("--at", "2026-12-01T03:00")
    assert "ALLOW" in run("access", "explain", "emil", "reactor-1", "start", *at_three, *d)
    changed = run("access", "schedule", "update", "night-shift", "--to", "02:00", *d)  # days, start kept
    assert "22:00-02:00 (crosses midnight)" in changed
    assert "DENY" in run("access", "explain", "emil", "reactor-1", "start", *at_three, *d)
    schedules = json.loads(run("access", "schedule", "list", *d, "--json"))
    night = next(s for s in schedules if s["name"] == "night-shift")
    assert (night["from"], night["to"], night["overnight"]) == ("22:00", "02:00", True)
    assert "used by" in run("access", "schedule", "remove", "night-shift", *d, code=1)

    run("access", "asset", "add", "press-7", "--kind", "machine", "--function", "start",
        "--function", "stop", "--inside", "production-hall", *d)  # fmt: skip
    assert "already exists" in run("access", "asset", "add", "press-7", "--kind", "machine",
                                   "--function", "start", *d, code=1)  # fmt: skip
    run("access", "grant", "add", "--role", "operator", "--asset", "press-7", "--function", "stop", *d)
    shown = json.loads(run("access", "asset", "show", "press-7", *d, "--json"))
    assert shown == {"id": "press-7", "kind": "machine", "functions": ["start", "stop"],
                     "inside": "production-hall", "grants": ["operator-7"]}  # fmt: skip
    assert "ALLOW" in run("access", "explain", "emil", "press-7", "stop", "--at", "2026-12-01T23:00", *d)
    refused = run("access", "asset", "update", "press-7", "--function", "start", *d, code=1)
    assert "unknown function 'stop'" in refused
    assert "nothing to change" in run("access", "asset", "update", "press-7", *d, code=1)
    moved = json.loads(run("access", "asset", "update", "press-7", "--no-inside", *d, "--json"))
    assert moved == {"id": "press-7", "kind": "machine", "functions": ["start", "stop"], "inside": None}
    assert "still used by grant operator-7" in run("access", "asset", "remove", "press-7", *d, code=1)
    run("access", "grant", "remove", "operator-7", *d)
    run("access", "asset", "remove", "press-7", *d)
    assert "press-7" not in run("access", "asset", "list", *d)

    run("access", "role", "add", "contractor", "--external", *d)
    assert {"id": "contractor", "external": True} in json.loads(run("access", "role", "list", *d, "--json"))
    assert "role 'contractor' is external" in run("access", "person", "add", "kai", "--name", "Kai", "--role",
                                   "contractor", *d, code=1)  # fmt: skip
    assert "nothing to change" in run("access", "role", "update", "contractor", *d, code=1)
    run("access", "role", "update", "contractor", "--internal", *d)
    run("access", "person", "add", "kai", "--name", "Kai", "--role", "contractor", *d)
    assert "still used by person kai" in run("access", "role", "remove", "contractor", *d, code=1)


def test_cli_import_error_names_the_entry(data: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace('valid: {from: "2026-11-02"', 'valid: {from: "2026-11-32"'))
    output = run("access", "import", str(bad), "--data", str(data), code=1)
    assert "people.hanna.valid.from: bad date '2026-11-32'" in output


# --- HTTP API ----------------------------------------------------------------------------------


@pytest.fixture
def client(pki: Pki, installation: Path) -> Iterator[TestClient]:
    token = (installation / "admin.token").read_text().strip()
    with TestClient(create_app(pki), base_url="https://testserver") as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_api_requires_the_admin_token(client: TestClient):
    response = client.get("/api/v1/access/people", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert client.get("/api/v1/access/people").status_code == 404  # no model imported yet


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59"]
)
def test_api_explain_at_a_time_no_datetime_holds_is_a_client_error(client: TestClient, at: str):
    """Was a 500: the instant overflowed when shown in UTC or in the site's zone."""
    assert client.post("/api/v1/access/import", json={"yaml": EXAMPLE.read_text()}).status_code == 200
    params = {"person": "emil", "asset": "reactor-1", "function": "start", "at": at}
    response = client.get("/api/v1/access/explain", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["rule"] == "access-time"


def test_api_import_people_grants_policies_explain_and_slice(client: TestClient):
    imported = client.post("/api/v1/access/import", json={"yaml": EXAMPLE.read_text()})
    assert imported.status_code == 200, imported.text
    assert imported.json()["changed"] is True
    assert client.post("/api/v1/access/import", json={"yaml": EXAMPLE.read_text()}).json()["changed"] is False
    bad = client.post("/api/v1/access/import", json={"yaml": "site: x\ntimezone: Nowhere/City\n"})
    assert bad.status_code == 400
    assert "unknown IANA time zone" in bad.json()["detail"]

    people = client.get("/api/v1/access/people").json()
    assert len(people) == 10
    new = {"id": "lea", "name": "Lea", "roles": ["quality-control"]}
    created = client.post("/api/v1/access/people", json=new)
    assert created.status_code == 201, created.text
    assert client.post("/api/v1/access/people", json=new).status_code == 409
    updated = client.put("/api/v1/access/people/lea", json={**new, "roles": ["cfo"]})
    assert client.put("/api/v1/access/people/max", json={**new, "id": "max"}).status_code == 404
    assert updated.json()["roles"] == ["cfo"]
    assert client.post("/api/v1/access/people/lea/disable").json()["enabled"] is False
    assert client.post("/api/v1/access/people/lea/enable").json()["enabled"] is True
    assert client.delete("/api/v1/access/people/lea").status_code == 204
    assert client.get("/api/v1/access/people/lea").status_code == 404

    grant = client.post(
        "/api/v1/access/grants", json={"role": "georg", "assets": ["erp"], "functions": ["view"]}
    )
    assert grant.status_code == 400  # no such role
    grant = client.post(
        "/api/v1/access/grants",
        json={"role": "quality-control", "assets": ["erp"], "functions": ["view"], "when": "business-hours"},
    )
    assert grant.status_code == 201, grant.text
    assert grant.json()["id"] == "quality-control-6"
    listed = client.get("/api/v1/access/grants", params={"asset": "erp"}).json()
    assert "quality-control-6" in {g["id"] for g in listed}
    policies = client.get("/api/v1/access/policies", params={"asset": "erp"}).json()
    assert "quality-control-6/erp" in {p["id"] for p in policies}

    explained = client.get(
        "/api/v1/access/explain",
        params={"person": "georg", "asset": "erp", "function": "view", "at": "2026-12-05T10:00"},
    ).json()
    assert explained["decision"] == "deny"  # Saturday
    explained = client.get(
        "/api/v1/access/explain",
        params={"person": "georg", "asset": "erp", "function": "view", "at": "2026-12-04T10:00+01:00"},
    ).json()
    assert (explained["decision"], explained["policies"]) == ("allow", ["quality-control-6/erp"])
    assert client.delete("/api/v1/access/grants/quality-control-6").status_code == 204

    duplicate = client.post("/api/v1/access/people", json={"id": "anna", "name": "A", "roles": ["cfo"]})
    assert duplicate.status_code == 409
    assert duplicate.json()["detail"] == "person 'anna' already exists"

    access_slice = client.get("/api/v1/access/assets/erp/slice").json()
    assert access_slice["asset"] == "erp"
    assert access_slice["timezone"] == "Europe/Berlin"
    assert "entity Asset" in client.get("/api/v1/access/schema").text
    assert client.get("/api/v1/access/assets/nowhere/slice").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/access/people/{person_id}/disable" in paths


def test_api_assets_roles_and_schedules(client: TestClient):
    assert client.post("/api/v1/access/import", json={"yaml": EXAMPLE.read_text()}).status_code == 200
    assets = client.get("/api/v1/access/assets").json()
    assert len(assets) == 14
    assert client.get("/api/v1/access/assets/control-room").json() == {
        "id": "control-room", "kind": "area", "functions": ["enter"], "inside": "production-hall"
    }  # fmt: skip
    press = {"id": "press-7", "kind": "machine", "functions": ["start"], "inside": "production-hall"}
    assert client.post("/api/v1/access/assets", json=press).status_code == 201
    assert client.post("/api/v1/access/assets", json=press).status_code == 409
    assert client.post("/api/v1/access/assets", json={**press, "id": "x", "kind": "robot"}).status_code == 400
    updated = client.put("/api/v1/access/assets/press-7", json={**press, "functions": ["start", "stop"]})
    assert updated.json()["functions"] == ["start", "stop"]
    assert client.put("/api/v1/access/assets/other", json=press).status_code == 400  # id differs from path
    in_use = client.delete("/api/v1/access/assets/reactor-1")
    assert in_use.status_code == 409
    assert "still used by grant" in in_use.json()["detail"]
    assert client.delete("/api/v1/access/assets/press-7").status_code == 204
    assert client.get("/api/v1/access/assets/press-7").status_code == 404

    assert {"id": "auditor", "external": True} in client.get("/api/v1/access/roles").json()
    assert client.post("/api/v1/access/roles", json={"id": "visitor", "external": True}).status_code == 201
    assert client.put("/api/v1/access/roles/visitor", json={"id": "visitor"}).json() == {
        "id": "visitor", "external": False
    }  # fmt: skip
    assert client.delete("/api/v1/access/roles/visitor").status_code == 204
    assert client.delete("/api/v1/access/roles/operator").status_code == 409

    window = {"name": "lunch", "days": ["mon", "fri"], "from": "12:00", "to": "13:00"}
    created = client.post("/api/v1/access/schedules", json=window)
    assert created.status_code == 201, created.text
    assert created.json() == {**window, "overnight": False}
    bad = client.post("/api/v1/access/schedules", json={**window, "name": "x", "to": "25:00"})
    assert bad.status_code == 400
    assert "bad time '25:00'" in bad.json()["detail"]
    moved = client.put("/api/v1/access/schedules/lunch", json={**window, "from": "23:00", "to": "01:00"})
    assert moved.json()["overnight"] is True
    assert "lunch" in {s["name"] for s in client.get("/api/v1/access/schedules").json()}
    assert client.delete("/api/v1/access/schedules/lunch").status_code == 204
    assert client.delete("/api/v1/access/schedules/business-hours").status_code == 409
    types = [
        r["details"].get("change") for r in client.get("/api/v1/audit", params={"limit": 500}).json()["items"]
    ]
    assert {"asset.added", "asset.updated", "asset.removed", "role.added", "schedule.updated"} <= set(types)
