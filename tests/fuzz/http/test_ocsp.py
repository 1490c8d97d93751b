"""The OCSP responder through the real app: hostile DER by POST and hostile GET paths.

Every answer is 200 with a parseable OCSP response (malformedRequest, unauthorized or a signed
status); never a 5xx.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.core.test_ocsp import valid_requests
from tests.fuzz.mutate import der_inputs
from tests.fuzz.profile import fuzz_settings

pytestmark = pytest.mark.fuzz

_VALID: list[bytes] = []


def _valid(service) -> list[bytes]:  # type: ignore[no-untyped-def]
    if not _VALID:
        issuing = service.pki.authorities.certificate_chain("issuing")[0]
        _VALID.extend(valid_requests(issuing))
    return _VALID


def _check(response) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code == 200:
        assert response.headers["content-type"] == "application/ocsp-response"
        ocsp.load_der_ocsp_response(response.content)


@fuzz_settings()
@given(data=st.data())
def test_hostile_post_bodies_get_an_ocsp_answer(service, data):
    body = data.draw(der_inputs(_valid(service)))
    _check(service.client.post("/ocsp", content=body, headers={"content-type": "application/ocsp-request"}))


@st.composite
def _paths(draw: st.DrawFn, valid: list[bytes]) -> str:
    der = draw(der_inputs(valid))
    text = base64.b64encode(der).decode()
    form = draw(st.sampled_from(["quoted", "urlsafe", "raw", "cut", "junk", "prefix"]))
    if form == "quoted":
        return "/ocsp/" + quote(text, safe="")
    if form == "urlsafe":
        return "/ocsp/" + base64.urlsafe_b64encode(der).decode().rstrip("=")
    if form == "raw":
        return "/ocsp/" + text
    if form == "cut":
        return "/ocsp/" + quote(text[: draw(st.integers(0, len(text)))], safe="")
    if form == "prefix":
        return draw(st.sampled_from(["/ocsp/", "/ocsp//", "/%6Fcsp/", "/ocsp/%2F", "/ocsp/%"])) + quote(text)
    return "/ocsp/" + quote(draw(st.text(max_size=64)), safe=draw(st.sampled_from(["", "/", "%/+="])))


@fuzz_settings()
@given(data=st.data())
def test_hostile_get_paths_get_an_ocsp_answer_or_a_client_error(service, data):
    path = data.draw(_paths(_valid(service)))
    _check(service.client.get(path))
