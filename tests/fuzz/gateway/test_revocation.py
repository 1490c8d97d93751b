"""The gateway's CRL handling on hostile CRLs: parse, verify, index, fetch and cache.

CRLs are mutated inside their signed part and re-signed by the trusted CA, so the damage reaches
what the gateway reads after the signature check (the CRL number, the dates, the entries). Each
input goes through :func:`load_crl`, :meth:`RevocationChecker.refresh` (over an httpx transport
that serves it) and :meth:`RevocationChecker.load_cache` (from the cache file): ParseError or
PolicyViolationError from the first, reported problems from the others, never an exception.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from otward.errors import ParseError, PolicyViolationError
from otward.gateway.revocation import RevocationChecker, _cache_name, chain_keys, load_crl
from tests.fuzz.mutate import der_inputs, mutated_inner
from tests.fuzz.objects import crls, fixed_ca, resign_crl
from tests.fuzz.profile import CRYPTOGRAPHY_WARNINGS, fuzz_settings

pytestmark = [pytest.mark.fuzz, *CRYPTOGRAPHY_WARNINGS]

URL = "http://127.0.0.1:9/crl/issuing.crl"
NOW = datetime(2026, 12, 8, tzinfo=UTC)


@st.composite
def hostile_crls(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(crls()))
    der = draw(
        st.one_of(
            mutated_inner(base, [0], resign_crl), mutated_inner(base, [0], resign_crl), der_inputs(crls())
        )
    )
    if draw(st.integers(0, 5)) == 0:
        return b"-----BEGIN X509 CRL-----\n" + base64.encodebytes(der) + b"-----END X509 CRL-----\n"
    return der


@fuzz_settings()
@given(hostile_crls())
def test_hostile_crls_are_refused_or_indexed_never_an_exception(data):
    trusted = [fixed_ca().certificate]
    try:
        index = load_crl(data, trusted)
    except (ParseError, PolicyViolationError) as exc:
        event(f"load_crl: {exc.rule}")
    else:
        event("load_crl: accepted")
        checker = RevocationChecker(trusted, [URL], clock=lambda: NOW)
        checker.install(index)
        checker.check(chain_keys(fixed_ca().certificate, trusted))

    checker = RevocationChecker(trusted, [URL], clock=lambda: NOW)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=data))

    async def refresh() -> list[str]:
        async with httpx.AsyncClient(transport=transport) as client:
            return await checker.refresh(client)

    asyncio.run(refresh())
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / _cache_name(URL)).write_bytes(data)
        RevocationChecker(trusted, [URL], cache_dir=Path(directory)).load_cache()
