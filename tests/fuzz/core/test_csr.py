"""PKCS#10 parsing and the CA's checks on hostile requests: only otward errors, never a crash.

Mutations of the signed part are re-signed with the request's key, so they reach the subject,
SAN and extension checks and the issuance rules of every built-in profile, not only the
signature check.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st

from otward.core.csr import load_csr, validate_csr
from otward.core.issuance import IssuanceRequest, build_certificate, plan_certificate
from otward.core.profiles import BUILTIN_PROFILES
from otward.errors import OtwardError
from tests.fuzz.mutate import der_inputs, mutated_inner
from tests.fuzz.objects import csrs
from tests.fuzz.profile import fuzz_settings
from tests.unit.core.conftest import make_ca

pytestmark = pytest.mark.fuzz

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SERIAL = 0x1234_5678_9ABC_DEF0_1234_5678


def _pem(der: bytes) -> bytes:
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(der)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )


@st.composite
def requests(draw: st.DrawFn) -> bytes | str:
    csr = draw(st.sampled_from(csrs()))
    data = draw(
        st.one_of(
            mutated_inner(csr.der, [0], csr.resign),
            mutated_inner(csr.der, [0], csr.resign),
            der_inputs([c.der for c in csrs()]),
        )
    )
    form = draw(st.sampled_from(["der", "der", "pem", "pem-text", "pem-cut"]))
    if form == "pem":
        return _pem(data)
    if form == "pem-text":
        return _pem(data).decode()
    if form == "pem-cut":
        pem = _pem(data)
        return pem[: draw(st.integers(0, len(pem)))]
    return data


ISSUER = None


def _issuer():  # type: ignore[no-untyped-def]
    global ISSUER
    if ISSUER is None:
        ISSUER = make_ca("issuing", make_ca("root", path_length=None))
    return ISSUER


@fuzz_settings()
@given(requests())
def test_hostile_requests_raise_only_otward_errors_up_to_the_signed_certificate(data):
    try:
        checked = validate_csr(load_csr(data))
    except OtwardError:
        return
    ca = _issuer()
    for profile in BUILTIN_PROFILES.values():
        role = "operator" if profile.name == "modbus-role" else None
        try:
            plan = plan_certificate(
                IssuanceRequest(checked=checked, profile=profile, issuer=ca.info, now=NOW, role=role)
            )
        except OtwardError:
            continue
        build_certificate(plan, checked.csr.public_key(), ca.info, SERIAL).sign(ca.key, hashes.SHA256())
