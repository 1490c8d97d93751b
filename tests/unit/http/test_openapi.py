"""The OpenAPI document says what the service answers (issue 13 item 2): refusals as problem+json,
no FastAPI 422 validation error (otward answers those 400), EST media types, parameter grammars."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from otward.config import load_settings
from otward.core.keys import KeyType
from otward.http.app import create_api, create_app
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from otward.web.problems import PROBLEM_JSON


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    data = tmp_path_factory.mktemp("openapi") / "data"
    initialize(data, key_type=KeyType.EC_P256, organization="ACME Chemicals")
    instance = Pki.open(load_settings(data))
    yield instance
    instance.close()


@pytest.fixture(scope="module")
def document(pki: Pki) -> dict:  # type: ignore[type-arg]
    return create_api(pki).openapi()


def operations(document: dict) -> Iterator[tuple[str, str, dict]]:  # type: ignore[type-arg]
    for path, items in document["paths"].items():
        for method, operation in items.items():
            yield method, path, operation


def test_no_operation_documents_fastapis_validation_error(document):
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert not [(m, p) for m, p, o in operations(document) if "422" in o["responses"] and m == "get"]


def test_every_refusal_is_a_problem_document(document):
    problem = {"$ref": "#/components/schemas/Problem"}
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail"]
    for method, path, operation in operations(document):
        refusals = {s: r for s, r in operation["responses"].items() if s.startswith("4")}
        for status, response in refusals.items():
            assert response["content"][PROBLEM_JSON]["schema"] == problem, (method, path, status)


@pytest.mark.parametrize(
    ("method", "path", "statuses"),
    [
        ("get", "/api/v1/certificates", {"400", "401", "403", "429"}),
        ("get", "/api/v1/certificates/{serial}", {"400", "401", "403", "404", "429"}),
        ("post", "/api/v1/certificates", {"400", "401", "403", "409", "413", "422", "429"}),
        ("delete", "/api/v1/access/people/{person_id}", {"400", "401", "403", "404", "409", "422", "429"}),
        ("get", "/api/v1/access/people", {"401", "403", "404", "429"}),  # no model yet: 404
        ("post", "/api/v1/devices/{device_id}/challenge", {"400", "404", "409", "413", "422", "429"}),
        ("post", "/.well-known/est/simpleenroll", {"400", "401", "403", "404", "409", "413", "422", "429"}),
        ("get", "/.well-known/est/cacerts", set()),
        ("get", "/healthz", set()),
    ],
)
def test_the_refusals_a_route_can_give_are_documented(document, method, path, statuses):
    documented = {s for s in document["paths"][path][method]["responses"] if s.startswith("4")}
    assert documented == statuses


def test_est_answers_name_their_media_types_and_errors_may_be_text(document):
    est = document["paths"]["/.well-known/est/simpleenroll"]["post"]
    assert set(est["responses"]["200"]["content"]) == {"application/pkcs7-mime"}
    assert set(est["requestBody"]["content"]) == {"application/pkcs10"}
    assert set(est["responses"]["401"]["content"]) == {"text/plain", PROBLEM_JSON}
    keygen = document["paths"]["/.well-known/est/serverkeygen"]["post"]
    assert set(keygen["responses"]["200"]["content"]) == {"multipart/mixed"}


def test_path_identifiers_and_enumerations_carry_their_grammar(document):
    device = document["paths"]["/api/v1/devices/{device_id}"]["get"]["parameters"][0]
    pattern = device["schema"]["pattern"]
    assert re.fullmatch(pattern, "plc-1")
    assert not re.fullmatch(pattern, "-plc")
    assert not re.fullmatch(pattern, "a/b")
    listing = {p["name"]: p["schema"] for p in document["paths"]["/api/v1/certificates"]["get"]["parameters"]}
    assert listing["status"]["enum"] == ["valid", "expired", "revoked"]
    assert re.fullmatch(listing["expiring_within"]["pattern"], "30d")
    assert not re.fullmatch(listing["expiring_within"]["pattern"], "")


def test_a_405_lists_every_method_of_the_resource_in_allow(pki):
    """schemathesis found 405 answers without Allow (RFC 9110 requires it): the problem handler
    dropped the router's headers, and the router names only the one route it matched."""
    client = TestClient(create_app(pki), base_url="https://testserver")
    answer = client.request("PATCH", "/api/v1/certificates")
    assert answer.status_code == 405
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}
    person = client.request("PATCH", "/api/v1/access/people/anna")
    assert set(person.headers["allow"].split(", ")) == {"GET", "PUT", "DELETE"}


def test_the_served_document_is_the_rewritten_one(pki):
    client = TestClient(create_app(pki), base_url="https://testserver")
    served = client.get("/openapi.json").json()
    assert "Problem" in served["components"]["schemas"]
