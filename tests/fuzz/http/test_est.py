"""EST enrollment bodies through the real app with a valid enrollment token.

Bodies are valid CSRs (re-signed after mutation, so they reach the checks past the signature) and
hostile ones, sent as base64 with and without line breaks, raw DER, PEM, or cut short, under the
right or a wrong media type. Properties: never a 5xx; a refused request stores no certificate.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from tests.fuzz.mutate import der_inputs, mutated_inner
from tests.fuzz.objects import csrs
from tests.fuzz.profile import fuzz_settings

pytestmark = pytest.mark.fuzz

_TOKEN: dict[str, str] = {}


def _token(service) -> str:  # type: ignore[no-untyped-def]
    if not _TOKEN:
        service.pki.owners.create("acme", allow_server_keygen=True)
        _, _TOKEN["text"] = service.pki.enrollment_tokens.create("acme", uses=100_000, ttl=timedelta(days=1))
    return _TOKEN["text"]


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    csr = draw(st.sampled_from(csrs()))
    der = draw(
        st.one_of(
            mutated_inner(csr.der, [0], csr.resign),
            mutated_inner(csr.der, [0], csr.resign),
            der_inputs([c.der for c in csrs()]),
            st.just(csr.der),
        )
    )
    form = draw(st.sampled_from(["base64", "base64-lines", "der", "pem", "cut-base64", "junk"]))
    if form == "base64":
        body = base64.b64encode(der)
    elif form == "base64-lines":
        body = base64.encodebytes(der).replace(b"\n", draw(st.sampled_from([b"\n", b"\r\n", b" "])))
    elif form == "der":
        body = der
    elif form == "pem":
        armor = b"-----%s CERTIFICATE REQUEST-----\n"
        body = armor % b"BEGIN" + base64.encodebytes(der) + armor % b"END"
    elif form == "cut-base64":
        text = base64.b64encode(der)
        body = text[: draw(st.integers(0, len(text)))]
    else:
        body = draw(st.binary(max_size=256))
    media = draw(
        st.sampled_from(
            ["application/pkcs10"] * 6
            + ["application/pkcs10; charset=x", "application/octet-stream", "text/plain"]
            + ["APPLICATION/PKCS10"]
        )
    )
    return body, media


@fuzz_settings(scale=0.5)
@given(data=st.data())
def test_hostile_enrollment_bodies_never_5xx_and_store_nothing_when_refused(service, data):
    token = _token(service)
    body, media = data.draw(bodies())
    operation = data.draw(st.sampled_from(["simpleenroll", "simpleenroll", "serverkeygen"]))
    before = service.certificate_count()
    response = service.client.post(
        f"/.well-known/est/{operation}",
        content=body,
        headers={"Content-Type": media, "Authorization": f"Bearer {token}"},
    )
    event(f"{operation} {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code != 200:
        assert service.certificate_count() == before, response.text
