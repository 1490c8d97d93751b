"""The agent's EST and device-API client on hostile answers from its server.

The server is replaced by an httpx transport that answers with a fuzzed status, media type,
Retry-After and body: PKCS#7 certs-only answers built valid and then mutated (base64, with and
without line breaks), problem+json and JSON answers mangled, nested deeply or of the wrong types.
Every call ends in a value or an otward error (EstError for refusals), never another exception.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from functools import cache

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import event, given
from hypothesis import strategies as st

from otward.agent.client import EstClient
from otward.core.attestation import ChallengePurpose
from otward.errors import OtwardError
from tests.fuzz.mutate import der_inputs
from tests.fuzz.objects import fixed_ca, keys
from tests.fuzz.profile import CRYPTOGRAPHY_WARNINGS, fuzz_settings

pytestmark = [pytest.mark.fuzz, *CRYPTOGRAPHY_WARNINGS]

SERVER = "https://127.0.0.1:8443"


@cache
def _enrollment() -> tuple[x509.CertificateSigningRequest, bytes]:
    """The CSR the agent sends and a valid PKCS#7 answer to it (the certificate and its CA)."""
    key = keys()["p256"]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc-1")]))
        .sign(key, hashes.SHA256())
    )
    ca = fixed_ca()
    now = datetime(2026, 12, 7, tzinfo=UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(0x1234_5678_9ABC_DEF0)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .sign(ca.key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    return csr, pkcs7.serialize_certificates([leaf, ca.certificate], Encoding.DER)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _json_body(draw: st.DrawFn) -> bytes:
    valid = {
        "challenge_id": "c-1",
        "nonce": base64.urlsafe_b64encode(b"n" * 32).decode().rstrip("="),
        "purpose": "attest",
        "expires_at": "2026-12-07T12:00:00+00:00",
        "device_id": "plc-1",
        "result": "genuine",
        "serial": "1234",
        "renewal_token": "otwe_x",
        "type": "about:blank",
        "title": "Forbidden",
        "detail": "refused",
        "rule": "enroll-token",
    }
    kind = draw(st.sampled_from(["valid", "field", "any", "deep", "text"]))
    if kind == "valid":
        return json.dumps(valid).encode()
    if kind == "field":
        key = draw(st.sampled_from(sorted(valid)))
        mangled = dict(valid)
        if draw(st.booleans()):
            del mangled[key]
        else:
            mangled[key] = draw(json_values)
        return json.dumps(mangled).encode()
    if kind == "any":
        return json.dumps(draw(json_values)).encode()
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1_000, 100_000]))
        opener = draw(st.sampled_from(["[", '{"detail":']))
        closer = "]" if opener == "[" else "}"
        return (opener * depth + "1" + closer * depth).encode()
    return draw(st.binary(max_size=64))


@st.composite
def _pkcs7_body(draw: st.DrawFn) -> bytes:
    der = draw(der_inputs(_enrollment()[1]))
    text = base64.b64encode(der)
    form = draw(st.sampled_from(["base64", "lines", "cut", "raw"]))
    if form == "lines":
        return base64.encodebytes(der)
    if form == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if form == "raw":
        return der
    return text


@st.composite
def answers(draw: st.DrawFn) -> httpx.Response:
    status = draw(st.sampled_from([200, 200, 200, 201, 204, 400, 401, 403, 409, 429, 500, 503]))
    media = draw(
        st.sampled_from(
            [
                "application/pkcs7-mime",
                "application/pkcs7-mime; smime-type=certs-only",
                "application/problem+json",
                "application/json",
                "text/plain",
                "",
            ]
        )
    )
    body = draw(st.one_of(_pkcs7_body(), _json_body()))
    headers = {"content-type": media} if media else {}
    if draw(st.booleans()):
        headers["retry-after"] = draw(
            st.sampled_from(["5", "-1", "1e9", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "x"])
            | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
        )
    return httpx.Response(status, headers=headers, content=body)


@st.composite
def certificate_answers(draw: st.DrawFn) -> httpx.Response:
    """200 with the right media type and a (mutated) PKCS#7 body: what gets past the status check."""
    media = draw(st.sampled_from(["application/pkcs7-mime", "application/pkcs7-mime; smime-type=certs-only"]))
    return httpx.Response(200, headers={"content-type": media}, content=draw(_pkcs7_body()))


@fuzz_settings()
@given(
    answer=answers() | certificate_answers(),
    call=st.sampled_from(["cacerts", "enroll", "challenge", "attest"]),
)
def test_hostile_answers_end_in_a_value_or_an_otward_error(answer, call):
    csr, _ = _enrollment()
    ca_pem = fixed_ca().certificate.public_bytes(Encoding.PEM)
    transport = httpx.MockTransport(lambda request: answer)
    with EstClient(SERVER, ca_pem, transport=transport) as client:
        try:
            if call == "cacerts":
                client.cacerts()
            elif call == "enroll":
                client.simple_enroll(csr, "otwe_token")
            elif call == "challenge":
                client.challenge("plc-1", ChallengePurpose.ATTEST)
            else:
                client.attest("plc-1", "c-1", b"signature")
        except OtwardError as exc:
            event(f"{call}: {type(exc).__name__}")
        else:
            event(f"{call}: accepted")
